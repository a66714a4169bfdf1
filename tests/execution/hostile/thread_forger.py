# task: add
# expect: error
# threat: forges protocol messages at import, then a daemon thread keeps flooding the channel
import threading

from next_jax.execution import channel

_forged = [("d", 0), ("s", 1), ("d", 1), ("s", 2), ("d", 2)]
channel.emit(_forged)


def _spam():
    while True:
        try:
            channel.emit(_forged)
        except Exception:
            return


threading.Thread(target=_spam, daemon=True).start()


def add(a, b):
    return 0

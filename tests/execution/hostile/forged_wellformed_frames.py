# task: add
# expect: error
# threat: speaks the harness protocol itself: a complete "all tests finished" stream + result
import os

from next_jax.execution import channel

channel.emit([("p", "ok", ""), ("s", 0), ("d", 0), ("s", 1), ("d", 1), ("s", 2), ("d", 2)])
channel.write_frame(3, channel.KIND_RESULT, b"null")
os._exit(0)

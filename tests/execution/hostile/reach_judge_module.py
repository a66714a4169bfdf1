# task: add
# expect: timeout
# threat: reaches the judge's module in its own process and replaces its reporting and call paths
import sys

for name, module in list(sys.modules.items()):
    if name.startswith("next_jax"):
        for attr in list(vars(module)):
            obj = vars(module).get(attr)
            if callable(obj) and attr in ("emit", "emit_wire", "write_frame", "run_tests", "request",
                                         "call", "_assert_hook", "_report"):
                try:
                    setattr(module, attr, lambda *a, **k: None)
                except (AttributeError, TypeError):
                    pass
_judge = sys.modules.get("next_jax.execution.judge")
if _judge is not None:
    _judge.Candidate.call = lambda self, *a, **k: 3


def add(a, b):
    return 0

"""Execution traces in NExT's inline format.

Layout, in the order data flows: ``analysis`` (what each source line can change), ``values``
(bounded value text), ``settrace_hooks`` (the ``sys.settrace`` hooks, class ``Recorder``),
``record_run`` (one run -> plain data; runs inside the sandbox child), ``sandboxed`` (parent side:
sends runs to the sandbox, turns results into traces), ``render`` (plain data -> commented source),
``budget`` (per-task size budget), ``traced_tasks`` (RepairTask -> TracedTask files), ``beam_traces``
(the same as a Beam transform), ``sweep`` (real-data check), ``config`` (all settings).
CLI: ``python -m next_jax.tracing``.
"""

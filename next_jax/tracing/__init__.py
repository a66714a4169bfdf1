"""Execution traces in NExT's inline format (issue 3).

Layout: ``analysis`` (what each source line can change), ``values`` (bounded value text),
``recorder`` (the ``sys.settrace`` hooks), ``run`` (one run -> plain data; the sandbox target),
``render`` (plain data -> commented source), ``budget`` (per-task size budget), ``tracer`` (runs in
the sandbox), ``tasks`` (RepairTask -> TracedTask files), ``beam`` (the same as a Beam transform),
``sweep`` (real-data check), ``config`` (all settings). CLI: ``python -m next_jax.tracing``.
"""

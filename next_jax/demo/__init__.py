"""The CPU demo: NExT's loop on a procedural repair domain, with a tiny byte-level model.

``domain`` builds the tasks, ``answers`` the template answers of the seed set, ``run`` is the
entry function (``--run_mode=demo``, ``gin_configs/experiments/cpu_demo.gin``).
"""

"""next_jax: NExT (Naturalized Execution Tuning, arXiv 2404.14662) in JAX.

Entry points are the gin-configured functions that ``next_jax.main`` runs (``infer.infer``,
``pipeline.run_pipeline``); the building blocks live in subpackages: ``execution`` (sandbox and
verdicts), ``tracing`` (inline execution traces), ``data`` (records, datasets, prompts),
``models`` (transformer, Hugging Face import/export), ``partitioning``, ``decoding``, ``tasks``
(SeqIO) and ``evaluation``. Nothing is imported eagerly here, so sandbox workers that import a
small piece of the package stay small.
"""

__version__ = "0.1.0"

"""Evaluation of repair samples: pass@k and verdict summaries."""

from next_jax.evaluation.metrics import pass_at_k, summarize_verdicts

__all__ = ["pass_at_k", "summarize_verdicts"]

"""Where the weights of each real-model preset come from, and what a checkpoint directory holds.

next_jax never downloads: a user points ``HF_CHECKPOINT_DIR`` (or a ``checkpoint``) at a local
Hugging Face directory. When that directory lacks what a run needs, the error names the Hugging
Face repository to download (found from the model's shapes, which identify each preset in
``gin_configs/models/``) and the layout expected, instead of failing inside a reader.
"""

from __future__ import annotations

from typing import Optional

from next_jax import io as nj_io
from next_jax.errors import UserFileNotFoundError

LAYOUT = ("config.json, the weights as *.safetensors (one model.safetensors, or shards with "
          "model.safetensors.index.json) and tokenizer.json")

# (vocab_size, hidden_size, num_layers) -> repository of the base model of gin_configs/models/*.gin.
# Instruction-tuned variants share their base's shapes and load the same way.
_REPOS = {
    (151936, 896, 24): "Qwen/Qwen2.5-Coder-0.5B",
    (151936, 1536, 28): "Qwen/Qwen2.5-Coder-1.5B",
    (152064, 3584, 28): "Qwen/Qwen2.5-Coder-7B",
    (128256, 2048, 16): "meta-llama/Llama-3.2-1B",
    (128256, 4096, 32): "meta-llama/Llama-3.1-8B",
    (256000, 2304, 26): "google/gemma-2-2b",
    (256000, 3584, 42): "google/gemma-2-9b",
}


class MissingCheckpointFilesError(UserFileNotFoundError):
    """A Hugging Face checkpoint directory without the files a run needs."""


def repo_for(vocab_size, hidden_size, num_layers) -> Optional[str]:
    try:
        return _REPOS.get((int(vocab_size), int(hidden_size), int(num_layers)))
    except (TypeError, ValueError):
        return None


def has_weights(directory: str) -> bool:
    names = nj_io.listdir(directory) if nj_io.isdir(directory) else []
    return any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names)


def missing_files(directory: str, *, weights: bool, tokenizer: bool) -> list:
    """What of the expected layout ``directory`` lacks (weights and tokenizer only if asked for)."""
    if not nj_io.isdir(directory):
        return ["the directory itself"]  # a marker, worded by ``require``
    missing = []
    if weights and not nj_io.exists(nj_io.join(directory, "config.json")):
        missing.append("config.json")
    if weights and not has_weights(directory):
        missing.append("*.safetensors")
    if tokenizer and not nj_io.exists(nj_io.join(directory, "tokenizer.json")):
        missing.append("tokenizer.json")
    return missing


def require(directory: str, *, repo: Optional[str], what: str, weights: bool = True,
            tokenizer: bool = False) -> None:
    """Raises MissingCheckpointFilesError naming what is missing, the repo to download and the layout."""
    missing = missing_files(directory, weights=weights, tokenizer=tokenizer)
    if not missing:
        return
    what_is_missing = "does not exist" if missing == ["the directory itself"] else f"has no {', no '.join(missing)}"
    source = (f"download the Hugging Face repository {repo} there (e.g. huggingface-cli download {repo} "
              f"--local-dir {directory})" if repo else "download the model's Hugging Face repository there")
    raise MissingCheckpointFilesError(
        f"{what}={directory!r} {what_is_missing}: {source}; the directory must hold {LAYOUT}")

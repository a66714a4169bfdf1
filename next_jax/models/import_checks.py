"""What a Hugging Face checkpoint must satisfy to be imported, and the way to accept a mismatch.

The importer maps tensors by name and shape, which a checkpoint of another kind can pass: a
Mistral model whose ``config.json`` says ``model_type: llama``, a sequence-classification model
(its ``score`` head would be dropped and a random LM head used instead), an integer tensor where
a norm scale belongs, or a tensor of NaNs. Each is refused here, naming the field or the tensor:

- ``architecture``: ``config.json``'s ``architectures`` names a family other than ``model_type``'s;
- ``head``: the architecture is not a causal LM (``...ForSequenceClassification``, ``...Model``,
  ...), or the files hold a classification head (``score.*``, ``classifier.*``);
- ``dtype``: a parameter tensor is not floating point;
- ``nonfinite``: a tensor holds NaN or infinity (checked block by block while streaming, so no
  extra read).

To import anyway, knowingly, name the kinds to accept: ``accept=('architecture',)`` in Python
(``hf_checkpoint.load_hf_checkpoint``), or ``--gin.ACCEPT_IMPORT_MISMATCH="['head']"`` on the
command line (the binary applies it to every import of the run through :func:`accepting`). An
accepted mismatch is still logged.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping, Optional

import numpy as np
from absl import logging

from next_jax.errors import UserValueError

KINDS = ("architecture", "head", "dtype", "nonfinite")
_HEAD_TENSOR_PREFIXES = ("score.", "classifier.", "qa_outputs.")
_FLOAT_KINDS = "f"  # numpy kind of float16/32/64; bfloat16 (ml_dtypes) is checked by name
_ACCEPT_HINT = "to import it anyway, bind ACCEPT_IMPORT_MISMATCH = ['{kind}'] (or pass accept=('{kind}',))"

# Process-wide (the binary's setting applies to imports on any thread, e.g. a sampling worker).
_accepted_here: frozenset = frozenset()


class ImportMismatchError(UserValueError):
    """A checkpoint that is not what the model config says it is; names the field or tensor."""


def _as_kinds(accept: Optional[Iterable[str]]) -> frozenset:
    kinds = frozenset([accept] if isinstance(accept, str) else (accept or ()))
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise UserValueError(f"ACCEPT_IMPORT_MISMATCH: unknown kinds {unknown}; choose from {list(KINDS)}")
    return kinds


@contextlib.contextmanager
def accepting(accept: Optional[Iterable[str]]):
    """Within the block, every import accepts these kinds of mismatch (as if passed ``accept=``)."""
    global _accepted_here
    previous = _accepted_here
    _accepted_here = previous | _as_kinds(accept)
    try:
        yield
    finally:
        _accepted_here = previous


def accepted(accept: Optional[Iterable[str]] = None) -> frozenset:
    """The kinds accepted by an import: its own ``accept`` plus an enclosing :func:`accepting`."""
    return _as_kinds(accept) | _accepted_here


def _refuse(kind: str, message: str, accept: frozenset) -> None:
    if kind in accept:
        logging.info("accepted import mismatch (%s): %s", kind, message)
        return
    raise ImportMismatchError(f"{message}; {_ACCEPT_HINT.format(kind=kind)}")


def check_architecture(hf: Mapping, model_type: str, expected: str, where: str, accept: frozenset) -> None:
    """``config.json``'s ``architectures`` against the family of ``model_type`` (``expected``)."""
    names = hf.get("architectures")
    if names is None:
        return
    if isinstance(names, str):
        names = [names]
    for name in names:
        name = str(name)
        if name == expected:
            continue
        if not name.endswith("ForCausalLM"):
            _refuse("head", f"{where}: field 'architectures': {name!r} is not a causal language model ({expected}); "
                            "next_jax imports causal LMs only (its head would be dropped)", accept)
        else:
            _refuse("architecture", f"{where}: field 'architectures': {name!r} is not the {model_type!r} family "
                                    f"this config.json's model_type names ({expected})", accept)


def check_head_tensors(names: Iterable[str], directory: str, accept: frozenset) -> None:
    heads = sorted(n for n in names if n.startswith(_HEAD_TENSOR_PREFIXES))
    if heads:
        _refuse("head", f"{directory}: tensor {heads[0]!r} is a classification head, not a causal LM head "
                        f"({len(heads)} such tensors)", accept)


def is_float(dtype) -> bool:
    dtype = np.dtype(dtype)
    return dtype.kind == _FLOAT_KINDS or dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def check_dtype(name: str, dtype, file: str, accept: frozenset) -> None:
    if not is_float(dtype):
        _refuse("dtype", f"{file}: tensor {name!r} has dtype {np.dtype(dtype).name}; parameters must be "
                         "floating point (float16, bfloat16, float32)", accept)


def check_finite(block: np.ndarray, name: str, file: str, accept: frozenset) -> None:
    """Refuses a block (float32, as read for import) holding NaN or infinity."""
    # NaN and infinity survive a sum, so a finite sum clears the block in one cheap pass; only a
    # non-finite sum (a bad value, or legitimately huge ones overflowing) needs the exact look.
    if np.isfinite(np.sum(block)):
        return
    finite = np.isfinite(block)
    if not finite.all():
        bad = int(block.size - np.count_nonzero(finite))
        _refuse("nonfinite", f"{file}: tensor {name!r} holds {bad} NaN or infinite values (of {block.size} in "
                             "the block read)", accept)

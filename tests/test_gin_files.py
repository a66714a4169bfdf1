"""Gin files override, not restate: no binding in gin_configs/ sets a parameter to its own default.

A default lives in its dataclass or function signature only; a gin file that repeats it would
silently keep the old value when the default changes. Checked on the parsed files (gin's own
parser), resolving each configurable through the file's imports. ``models.ModelConfig`` bindings
are exempt: a model file writes its published architecture out in full, so that a change of
ModelConfig's defaults can never change what a preset builds.
"""

import importlib
import inspect
import pathlib

import pytest
from gin import config_parser

from tests import REPO

GIN_FILES = sorted(pathlib.Path(REPO, "gin_configs").rglob("*.gin"))


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_name, evaluate):
        return _Reference(scoped_name)

    def macro(self, name):
        return _Reference("%" + name)


class _Reference(str):
    """A configurable or macro reference: never a literal, so never compared with a default."""


def _statements(text):
    return list(config_parser.ConfigParser(text, _Delegate()))


def _defaults(imports, selector):
    """The keyword defaults of the configurable ``selector`` (``module.Name``) of a file whose
    ``from next_jax... import module`` lines are ``imports``; None if it is not one of ours."""
    head, _, name = selector.rpartition(".")
    module = imports.get(head)
    if module is None:
        return None
    target = getattr(importlib.import_module(module), name)
    return {p.name: p.default for p in inspect.signature(target).parameters.values()
            if p.default is not inspect.Parameter.empty}


def _same(value, default):
    if isinstance(value, _Reference):
        return False
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(_same(v, d) for v, d in zip(value, default))
    return type(value) is type(default) and value == default


def restated_defaults(text):
    """``scope/module.Name.param = value`` lines of gin ``text`` whose value is the default."""
    imports, found = {}, []
    for st in _statements(text):
        if isinstance(st, config_parser.ImportStatement):
            module = st.module
            imports[getattr(st, "alias", None) or module.rpartition(".")[2]] = module
        elif isinstance(st, config_parser.BindingStatement) and st.selector and st.selector != "models.ModelConfig":
            defaults = _defaults(imports, st.selector)
            if defaults is not None and st.arg_name in defaults and _same(st.value, defaults[st.arg_name]):
                scope = f"{st.scope}/" if st.scope else ""
                found.append(f"{scope}{st.selector}.{st.arg_name} = {st.value!r} (line {st.location.line_num})")
    return found


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_gin_file_binds_a_parameter_to_its_default(path):
    assert restated_defaults(path.read_text()) == [], f"{path.relative_to(REPO)} restates defaults"


def test_a_restated_default_is_found():
    text = ("from __gin__ import dynamic_registration\nfrom next_jax import decoding\n"
            "decoding.SamplingConfig:\n  temperature = 0.8\n  top_k = 5\n"
            "eval/decoding.SamplingConfig.num_samples = 32\n")
    assert restated_defaults(text) == ["decoding.SamplingConfig.temperature = 0.8 (line 4)",
                                       "eval/decoding.SamplingConfig.num_samples = 32 (line 6)"]

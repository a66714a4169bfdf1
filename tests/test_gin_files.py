"""Gin files override, not restate: no binding in gin_configs/ sets a parameter to its own default.

A default lives in its dataclass or function signature only; a gin file that repeats it would
silently keep the old value when the default changes. Checked on the parsed files (gin's own
parser), resolving each configurable through the file's imports. ``models.ModelConfig`` bindings
are exempt: a model file writes its published architecture out in full, so that a change of
ModelConfig's defaults can never change what a preset builds.

The same holds for a macro: ``DEDUP = 'none'`` feeding ``settings.BuildConfig.dedup`` restates the
default one step removed. A macro stays only where its file sets a value of its own, or where one
value feeds several parameters (``SEED``: the fine-tuning seed and every sampler's), a tie that
the dataclass defaults cannot express; a macro whose value is the default of the one parameter
it feeds is an error, checked on each file with the files it includes.
"""

import importlib
import inspect
import pathlib

import pytest
from gin import config_parser

from next_jax import main
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


def _with_includes(text, include_root):
    """[(statement, whether ``text`` itself holds it)]: the file's statements with each included
    file's (relative to ``include_root``) in place, as gin reads them."""
    out = []
    for st in _statements(text):
        if isinstance(st, config_parser.IncludeStatement):
            included = (pathlib.Path(include_root) / st.filename).read_text()
            out += [(inner, False) for inner, _ in _with_includes(included, include_root)]
        else:
            out.append((st, True))
    return out


def _macro_uses(value, name):
    """How often ``%name`` occurs in ``value``, inside containers included."""
    if isinstance(value, _Reference):
        return int(value == "%" + name)
    if isinstance(value, (list, tuple)):
        return sum(_macro_uses(v, name) for v in value)
    if isinstance(value, dict):
        return sum(_macro_uses(k, name) + _macro_uses(v, name) for k, v in value.items())
    return 0


def restated_macros(text, include_root=pathlib.Path(REPO, "gin_configs")):
    """``MACRO = value`` lines of gin ``text`` whose literal value is the default of the one
    parameter it feeds (through any chain of macros, with the included files' bindings)."""
    imports, macros, bindings, own = {}, {}, {}, {}
    for st, is_own in _with_includes(text, include_root):
        if isinstance(st, config_parser.ImportStatement):
            imports[getattr(st, "alias", None) or st.module.rpartition(".")[2]] = st.module
        elif isinstance(st, config_parser.BindingStatement) and not st.arg_name:
            macros[st.selector] = st.value
            if is_own:
                own[st.selector] = st.location.line_num
        elif isinstance(st, config_parser.BindingStatement):
            bindings[(st.scope, st.selector, st.arg_name)] = st.value  # a later binding replaces an earlier

    def feeds(name):
        """[(selector, param)] that ``%name`` reaches, or None where it also sits inside a value."""
        out = []
        for key, value in list(bindings.items()) + [((None, m, None), v) for m, v in macros.items()]:
            uses = _macro_uses(value, name)
            if uses and value != "%" + name:
                return None
            if uses and key[2] is None:  # another macro: what it feeds
                more = feeds(key[1])
                if more is None:
                    return None
                out += more
            elif uses:
                out.append(key[1:])
        return out

    found = []
    for name, line in own.items():
        if name in main.READ_BY_MAIN:  # it feeds the binary as well
            continue
        value = macros[name]
        reached = feeds(name)
        if isinstance(value, _Reference) or not reached or len(set(reached)) != 1:
            continue
        selector, param = reached[0]
        defaults = _defaults(imports, selector)
        if defaults is not None and param in defaults and _same(value, defaults[param]):
            found.append(f"{name} = {value!r} (line {line}): the default of {selector}.{param}")
    return found


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_gin_file_has_a_macro_that_restates_a_default(path):
    assert restated_macros(path.read_text()) == [], f"{path.relative_to(REPO)} restates defaults through macros"


def test_a_macro_that_restates_a_default_is_found():
    head = "from __gin__ import dynamic_registration\nfrom next_jax.selftrain import settings\n"
    assert restated_macros(head + "include 'runs/next.gin'\nT = 0.1\nsettings.SelectionConfig.threshold = %T\n") == [
        "T = 0.1 (line 4): the default of settings.SelectionConfig.threshold"]
    # Through a chain of macros; a later binding of the parameter itself wins over the macro.
    assert restated_macros(head + "A = 'none'\nB = %A\nsettings.BuildConfig.dedup = %B\n") == [
        "A = 'none' (line 3): the default of settings.BuildConfig.dedup"]
    assert restated_macros(head + "A = 'none'\nsettings.BuildConfig.dedup = %A\n"
                                  "settings.BuildConfig.dedup = 'fix'\n") == []
    # A value of its own, a tie between two parameters, a macro inside a value: kept.
    assert restated_macros(head + "D = 'fix'\nsettings.BuildConfig.dedup = %D\n") == []
    assert restated_macros(head + "S = False\nsettings.BuildConfig.accumulate = %S\n"
                                  "settings.BuildConfig.include_seed = %S\n") == []
    assert restated_macros(head + "S = 0.1\nsettings.SelectionConfig.threshold = [%S]\n") == []


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_gin_file_binds_a_parameter_to_its_default(path):
    assert restated_defaults(path.read_text()) == [], f"{path.relative_to(REPO)} restates defaults"


def test_a_restated_default_is_found():
    text = ("from __gin__ import dynamic_registration\nfrom next_jax import decoding\n"
            "decoding.SamplingConfig:\n  temperature = 0.8\n  top_k = 5\n"
            "eval/decoding.SamplingConfig.num_samples = 32\n")
    assert restated_defaults(text) == ["decoding.SamplingConfig.temperature = 0.8 (line 4)",
                                       "eval/decoding.SamplingConfig.num_samples = 32 (line 6)"]

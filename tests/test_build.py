"""BUILD lists every module, binary and test, and nothing that does not exist."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Targets:
    """Evaluates the Starlark BUILD file with Python, recording each target's attributes."""

    def __init__(self):
        self.targets = []

    def rule(self, kind):
        def record(**kwargs):
            self.targets.append((kind, kwargs))

        return record


def _load_build():
    targets = _Targets()
    env = {
        "load": lambda *a, **k: None,
        "package": lambda **k: None,
        "requirement": lambda name: f"@pip//{name}",
        "py_library": targets.rule("py_library"),
        "py_binary": targets.rule("py_binary"),
        "py_test": targets.rule("py_test"),
    }
    exec(compile(open(os.path.join(REPO, "BUILD")).read(), "BUILD", "exec"), env)
    return targets.targets


def _tree(top, suffix):
    found = set()
    for root, dirs, files in os.walk(os.path.join(REPO, top)):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        found.update(os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith(suffix))
    return found


def test_every_listed_file_exists():
    for kind, attrs in _load_build():
        for path in list(attrs.get("srcs", [])) + list(attrs.get("data", [])):
            assert os.path.exists(os.path.join(REPO, path)), f"{kind} {attrs['name']} lists missing {path}"


def test_every_module_gin_file_and_test_belongs_to_a_target():
    targets = _load_build()
    listed = set()
    for _, attrs in targets:
        listed.update(attrs.get("srcs", []))
        listed.update(attrs.get("data", []))
    missing = (_tree("next_jax", ".py") | _tree("gin_configs", ".gin") | _tree("tests", ".py")) - listed
    assert not missing, f"not in any BUILD target (run python launch/write_build.py): {sorted(missing)}"
    tests = {attrs["srcs"][0] for kind, attrs in targets if kind == "py_test"}
    assert {p for p in _tree("tests", ".py") if os.path.basename(p).startswith("test_")} == tests


def test_binaries_for_entry_points():
    binaries = {attrs["main"] for kind, attrs in _load_build() if kind == "py_binary"}
    assert "next_jax/main.py" in binaries

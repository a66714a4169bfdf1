"""Every module on its floor: imports run down the floors of next_jax/layers.toml, never in a circle."""

import ast
import importlib.util
import pathlib
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("import_layers", REPO / "launch" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


layers = _tool()


def test_package_is_on_its_floors():
    found = layers.problems(REPO)
    assert not found["unplaced"], f"modules in no room of next_jax/layers.toml: {found['unplaced']}"
    assert not found["up"], "imports that run up the floors:\n" + "\n".join(found["up"])
    assert not found["cycles"], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found["cycles"])
    assert not found["unexplained"], "\n".join(found["unexplained"])


def _package(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "next_jax" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_checker_names_arrows_up_cycles_and_silent_deferrals(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from next_jax import high\n",          # up, and deferred without a reason
        "high.py": "from next_jax import low\n",
        "sub/__init__.py": "",
        "sub/a.py": "from next_jax.sub import b\n",
        "sub/b.py": "from . import a\n",                                # relative imports count
        "mid.py": "def g():\n    # deferred: slow to import\n    from next_jax import low\n",
    })
    layout = layers.Layout([["low"], ["sub", "mid"], ["high"]], {})
    found = layers.problems(root, layout)
    assert len(found["up"]) == 1 and found["up"][0].startswith("next_jax.low (room low, floor 0) imports next_jax.high")
    assert "inside a function" in found["up"][0]
    assert found["cycles"] == [["next_jax.high", "next_jax.low"], ["next_jax.sub.a", "next_jax.sub.b"]]
    assert [item.split(" ")[0] for item in found["unexplained"]] == ["next_jax.low"]  # mid's says why
    assert "arrows up (^ above; module level): 1" in layers.drawing(root, layout)


def test_same_floor_is_an_arrow_up_and_carved_rooms_take_their_modules(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "", "data/__init__.py": "", "data/records.py": "",
        "data/build.py": "from next_jax import exec\nfrom next_jax.data import records\n",
        "exec.py": "from next_jax.data import records\n",
        "other.py": "from next_jax import exec\n",
    })
    layout = layers.Layout([["data"], ["exec", "other"], ["builder"]], {"builder": ["data.build"]})
    assert layout.room("next_jax.data.build") == "builder" and layout.room("next_jax.data.records") == "data"
    found = layers.problems(root, layout)
    assert found["up"] == ["next_jax.other (room other, floor 1) imports next_jax.exec (room exec, floor 1) "
                           "at line 1, at the top"]


def test_next_jax_io_has_one_import_name():
    """next_jax/io.py is always bound as ``nj_io``: as ``io`` it would shadow the standard library."""
    wrong = []
    for path in sorted(list((REPO / "next_jax").rglob("*.py")) + list((REPO / "tests").rglob("*.py"))
                       + list((REPO / "launch").rglob("*.py"))):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "next_jax":
                wrong += [f"{path.relative_to(REPO)}:{node.lineno}" for a in node.names
                          if a.name == "io" and a.asname != "nj_io"]
            elif isinstance(node, ast.ImportFrom) and node.module == "next_jax.io":
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno}")
            elif isinstance(node, ast.Import):
                wrong += [f"{path.relative_to(REPO)}:{node.lineno}" for a in node.names if a.name == "next_jax.io"]
    assert not wrong, f"import next_jax.io as 'from next_jax import io as nj_io': {wrong}"


@pytest.mark.parametrize("table", ["floor = [{rooms = ['a']}, {rooms = ['a']}]"])
def test_a_room_on_two_floors_is_refused(tmp_path, table):
    path = tmp_path / "layers.toml"
    path.write_text(table)
    with pytest.raises(ValueError, match="room 'a' is on two floors"):
        layers.Layout(*layers.load_table(path))

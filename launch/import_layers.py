"""Draws next_jax's import graph on the floors of ``next_jax/layers.toml`` and checks it.

    python launch/import_layers.py            # the drawing: floors, rooms, arrows up, cycles
    python launch/import_layers.py --check    # exit 1 naming every upward arrow and cycle
    python launch/import_layers.py --root=OLD_CHECKOUT --table=TABLE   # another tree on given floors

Every ``import`` in the package counts, at the top of a module or inside a function (an import
that is deferred still makes the module need the other at run time). A module may import its own
room and the rooms of lower floors; an import of a room on the same or a higher floor is an arrow
up, and a chain of imports that comes back to where it started is a cycle. Dynamic imports
(``importlib``, gin's registry) are not seen: they name modules in strings.
"""

import argparse
import ast
import collections
import pathlib
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "next_jax"


def modules(root: pathlib.Path) -> dict:
    """Dotted module name -> path, for every .py file of the package under ``root``."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, known) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def imports(root: pathlib.Path) -> dict:
    """Module -> {imported package module: (line, deferred?)} (first occurrence of each)."""
    known = modules(root)
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        found = {}
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".") if is_package else module.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                # ``from pkg import name`` imports pkg.name when that is a module, else pkg itself.
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                if name != PACKAGE and not name.startswith(PACKAGE + "."):
                    continue
                target = _resolve(name, known)
                if target and target != module and target not in found:
                    found[target] = (node.lineno, id(node) not in top_level)
        graph[module] = found
    return graph


def load_table(path: pathlib.Path = REPO / PACKAGE / "layers.toml"):
    """(floors bottom first as lists of room names, room -> module prefixes)."""
    table = tomllib.loads(path.read_text())
    floors = [list(floor["rooms"]) for floor in table["floor"]]
    groups = {name: list(prefixes) for name, prefixes in table.get("rooms", {}).items()}
    return floors, groups


class Layout:
    def __init__(self, floors, groups):
        self.floors = floors
        self.floor_of = {}
        for index, rooms in enumerate(floors):
            for room in rooms:
                if room in self.floor_of:
                    raise ValueError(f"layers.toml: room {room!r} is on two floors")
                self.floor_of[room] = index
        # Longest prefix wins: a room carved out of a package takes its modules from the package.
        self.prefixes = sorted(
            ((f"{PACKAGE}.{prefix}", room) for room in self.floor_of for prefix in groups.get(room, [room])),
            key=lambda item: -len(item[0]))

    def room(self, module: str):
        if module == PACKAGE:
            return "__init__"
        for prefix, room in self.prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return room
        return None


def cycles(graph) -> list:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _says_why(lines, line: int) -> bool:
    """A comment on the import's line, or in the block of imports and comments right above it."""
    index = line - 1
    if "#" in lines[index]:
        return True
    index -= 1
    while index >= 0 and (not lines[index].strip() or lines[index].strip().startswith(("#", "import ", "from "))):
        if lines[index].strip().startswith("#"):
            return True
        index -= 1
    return False


def unexplained_deferrals(root: pathlib.Path, graph, layout: Layout) -> list:
    """Imports of another room made inside a function without a comment saying why they wait."""
    out = []
    for module, targets in sorted(graph.items()):
        path = modules(root)[module]
        lines = path.read_text().split("\n")
        for target, (line, deferred) in sorted(targets.items()):
            if deferred and layout.room(module) != layout.room(target) and not _says_why(lines, line):
                out.append(f"{module} imports {target} inside a function at line {line} without saying why "
                           "(a comment: what importing it at the top would cost)")
    return out


def problems(root: pathlib.Path = REPO, layout: Layout = None) -> dict:
    """{'unplaced', 'up', 'cycles', 'unexplained'}: all empty when the package is on its floors."""
    layout = layout or Layout(*load_table())
    graph = imports(root)
    unplaced = sorted(m for m in graph if m != PACKAGE and layout.room(m) is None)
    up = []
    for module, targets in sorted(graph.items()):
        source = layout.room(module)
        for target, (line, deferred) in sorted(targets.items()):
            dest = layout.room(target)
            if None in (source, dest) or source == dest or dest == "__init__":
                continue
            if layout.floor_of[dest] >= layout.floor_of[source]:
                where = "inside a function" if deferred else "at the top"
                up.append(f"{module} (room {source}, floor {layout.floor_of[source]}) imports {target} "
                          f"(room {dest}, floor {layout.floor_of[dest]}) at line {line}, {where}")
    return {"unplaced": unplaced, "up": up, "cycles": cycles({m: set(t) for m, t in graph.items()}),
            "unexplained": unexplained_deferrals(root, graph, layout)}


def drawing(root: pathlib.Path = REPO, layout: Layout = None) -> str:
    layout = layout or Layout(*load_table())
    graph = imports(root)
    members = collections.defaultdict(list)
    for module in graph:
        members[layout.room(module)].append(module)
    room_arrows = collections.defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            a, b = layout.room(module), layout.room(target)
            if a != b and None not in (a, b) and b != "__init__":
                room_arrows[a].add(b)
    found = problems(root, layout)
    lines = [f"next_jax import graph of {root}: {len(graph)} modules, "
             f"{sum(1 for r in layout.floor_of if members.get(r))} rooms on {len(layout.floors)} floors", ""]
    for index in reversed(range(len(layout.floors))):
        lines.append(f"floor {index}")
        for room in layout.floors[index]:
            arrows = sorted(room_arrows.get(room, ()), key=lambda r: (-layout.floor_of[r], r))
            marks = [f"{r}{'^' if layout.floor_of[r] >= index else ''}" for r in arrows]
            lines.append(f"  {room:<16} {len(members.get(room, [])):>3} modules -> {' '.join(marks) or '-'}")
    lines.append("")
    lines.append(f"arrows up (^ above; module level): {len(found['up'])}")
    lines += [f"  {arrow}" for arrow in found["up"]]
    lines.append(f"cycles: {len(found['cycles'])}")
    lines += [f"  {' <-> '.join(component)}" for component in found["cycles"]]
    if found["unexplained"]:
        lines.append(f"deferred imports of another room without a reason: {len(found['unexplained'])}")
        lines += [f"  {item}" for item in found["unexplained"]]
    if found["unplaced"]:
        lines.append(f"modules in no room of layers.toml: {', '.join(found['unplaced'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(REPO), help="a checkout of the repository (default: this one)")
    parser.add_argument("--table", default=str(REPO / PACKAGE / "layers.toml"), help="the floors (default: this one's)")
    parser.add_argument("--check", action="store_true", help="exit 1 when an arrow runs up or in a circle")
    args = parser.parse_args(argv)
    root, layout = pathlib.Path(args.root), Layout(*load_table(pathlib.Path(args.table)))
    print(drawing(root, layout))
    if args.check:
        return 1 if any(problems(root, layout).values()) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

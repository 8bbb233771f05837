"""The rooms and their one-way doors (docs/architecture.md): an import that crosses a door the
wrong way fails here, wherever it sits in a file (function-level and relative imports included),
and so does a cycle of imports between the modules of one room."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("sepc", "experiments", "bench", "reports", "tools", "tests")
#: Which rooms each room may import (besides itself and third-party packages).
ALLOWED: dict[str, set[str]] = {
    "sepc": set(),                                      # the method: mmdet/mmcv/torch only
    "experiments": set(),                               # configs and the matrix: data
    "reports": {"experiments"},                         # the store's reader: the matrix's labels
    "bench": {"sepc", "experiments", "reports"},        # the harness
}
#: The statistics room inside reports: numbers in, numbers out; no other room, no folder I/O.
STATS = REPO / "reports" / "stats"
IO_CALLS = ("open", "read_text", "write_text", "read_bytes", "write_bytes", "load", "savez",
            "mkdir", "glob", "iterdir")


def _module(path: Path) -> str:
    """The dotted module a project file defines (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from`` import names, relative ones resolved against ``path``'s package."""
    if node.level == 0:
        return node.module or ""
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import of a project room in ``path``, absolute or
    relative; ``from package import name`` counts as the module ``package.name`` when it is
    one."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(path, node)
            for a in node.names:
                sub = f"{mod}.{a.name}"
                is_module = any((REPO / sub.replace(".", "/")).with_suffix(s).exists()
                                for s in (".py", "")) if mod.split(".")[0] in ROOMS else False
                out.append((node.lineno, sub if is_module else mod))
    return sorted({(line, mod) for line, mod in out if mod.split(".")[0] in ROOMS})


def _files(room: str) -> list[Path]:
    return sorted(p for p in (REPO / room).rglob("*.py") if ".venv" not in p.parts)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_cross_doors_one_way_only(room):
    wrong = [f"{path.relative_to(REPO)}:{line} imports {mod}"
             for path in _files(room) for line, mod in _imports(path)
             if mod.split(".")[0] not in ALLOWED[room] | {room}]
    assert not wrong, "\n".join(wrong)


def test_the_statistics_room_imports_nothing_of_the_project_and_does_no_io():
    files = sorted(STATS.glob("*.py"))
    assert files, "reports/stats/ is missing"
    wrong = [f"{p.relative_to(REPO)}:{line} imports {mod}" for p in files
             for line, mod in _imports(p) if not mod.startswith("reports.stats")]
    for p in files:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in IO_CALLS:
                    wrong.append(f"{p.relative_to(REPO)}:{node.lineno} calls {name}()")
    assert not wrong, "\n".join(wrong)


def test_the_harness_package_does_not_import_its_benchmarks_or_the_tests():
    wrong = [f"{p.relative_to(REPO)}:{line} imports {mod}" for room in ("bench", "reports", "sepc")
             for p in _files(room) for line, mod in _imports(p)
             if mod.split(".")[0] in ("tools", "tests")]
    assert not wrong, "\n".join(wrong)


def test_a_wrong_way_import_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bench.cellstore import CellStore\n")
    assert _imports(bad) == [(2, "bench.cellstore")]


def test_relative_imports_are_read_as_the_modules_they_name():
    here = REPO / "sepc" / "necks" / "sepc_neck.py"
    tree = ast.parse("from ..ops import deform_conv\nfrom . import sepc_neck\nfrom .x import y\n")
    assert [_absolute(here, n) for n in tree.body] == ["sepc.ops", "sepc.necks", "sepc.necks.x"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> modules it imports), as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_no_import_cycle_inside_a_room(room):
    """Every import counts, the ones inside functions too: a circle that is only ever walked
    lazily is still a circle a reader follows (resolve -> weights -> warm start -> resolve)."""
    graph = {_module(p): {mod for _line, mod in _imports(p)
                          if mod.split(".")[0] == room and mod != _module(p)}
             for p in _files(room)}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_is_caught():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None

"""The rooms and their one-way doors (docs/architecture.md): an import that crosses a door the
wrong way fails here, wherever it sits in a file (function-level imports included)."""
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


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import of a project room in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return [(line, mod) for line, mod in out if mod.split(".")[0] in ROOMS]


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
    bad.write_text("def f():\n    from bench.store import CellStore\n")
    assert _imports(bad) == [(2, "bench.store")]

"""The floors of docs/design.md ("Layers (floors) and who owns what"), enforced on the source.

The table is read from docs/design.md itself, so the document and this test cannot drift apart.
Parsing rules (the table's own conventions, made explicit):

- the section starts at the heading `## Layers` and ends at the next `## ` heading; its table rows
  are the lines starting with `|`, minus the header row and the `|---|` separator row;
- column 1 is the floor: a number (`3`) or a range (`10–11`, en dash or hyphen); column 2 names the
  modules: every backquoted item is a path relative to `src/l2emg/`, `name.py` for one module or
  `name/` for a whole subpackage; text in parentheses (`utils/ (io, lock, …)`) only describes and is
  ignored, and so is column 3 (the concept), whose backquoted names are not floor entries;
- a range floor names exactly as many modules as it spans, given bottom-up (`10–11 | commands/,
  cli.py`: `commands/` is floor 10, `cli.py` floor 11); any other count is an ambiguous table;
- a module lies on the floor of the longest entry that is a prefix of its path; the package root
  `l2emg/__init__.py` (the version only) is not in the table and counts as floor 0, below everything;
- every `import` and `from … import` of an `l2emg` module anywhere in a file (module level,
  function bodies, `if TYPE_CHECKING:` blocks), relative ones resolved against the file's package,
  must land on the importer's floor or a lower one. `from PKG import NAME` imports the module
  `PKG.NAME` when that exists, otherwise `PKG` (NAME is then an attribute).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
PACKAGE = ROOT / "src" / "l2emg"
ROOT_FLOOR = 0  # l2emg/__init__.py
FLOOR = re.compile(r"^(\d+)(?:\s*[–-]\s*(\d+))?$")


@dataclass(frozen=True)
class Entry:
    floor: int
    path: str  # as written in the table: `bench.py`, `continual/`


def layer_table(text: str) -> list[Entry]:
    """The floor entries of the Layers table of design.md's TEXT (rules in the module docstring)."""
    section = re.search(r"^## Layers\b.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"{DESIGN}: no '## Layers' section"
    rows = [line.strip() for line in section.group(1).splitlines() if line.strip().startswith("|")]
    assert len(rows) > 2, f"{DESIGN}: the Layers section has no table"
    entries: list[Entry] = []
    for row in rows[2:]:  # rows[0]: header, rows[1]: |---|
        cells = row.strip("|").split("|", 2)
        assert len(cells) >= 2, f"{DESIGN}: layer row without a modules column: {row}"
        floor_cell, modules_cell = cells[0].strip(), cells[1]
        match = FLOOR.match(floor_cell)
        assert match, f"{DESIGN}: layer row with floor {floor_cell!r}, not a number or a range: {row}"
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        paths = re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", modules_cell))
        assert paths, f"{DESIGN}: layer row names no `module`: {row}"
        if high != low and len(paths) != high - low + 1:
            raise AssertionError(f"{DESIGN}: floors {floor_cell} name {len(paths)} modules; a range needs one "
                                 f"module per floor, bottom-up: {row}")
        for i, path in enumerate(paths):
            entries.append(Entry(low + i if high != low else low, path))
    return entries


@pytest.fixture(scope="module")
def table() -> list[Entry]:
    return layer_table(DESIGN.read_text(encoding="utf-8"))


def floor_of(rel: str, table: list[Entry]) -> Entry | None:
    """The entry whose floor the module at REL (a path under src/l2emg, `/`-separated) lies on."""
    if rel == "__init__.py":
        return Entry(ROOT_FLOOR, "l2emg/__init__.py")
    matches = [e for e in table if rel == e.path or (e.path.endswith("/") and rel.startswith(e.path))]
    return max(matches, key=lambda e: len(e.path)) if matches else None


def module_file(dotted: str) -> str | None:
    """The file (relative to src/l2emg) of the l2emg module DOTTED, or None when there is none."""
    parts = dotted.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate.relative_to(PACKAGE).as_posix()
    return None


def imported_module(dotted: str) -> str:
    """The module an import of DOTTED loads: DOTTED itself, or its nearest parent that is a module
    (`l2emg.continual.methods.METHODS` -> `l2emg.continual.methods`)."""
    while module_file(dotted) is None and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def package_of(rel: str) -> str:
    """The dotted package a file at REL belongs to (a package's `__init__.py`: the package itself)."""
    parts = ["l2emg", *rel[: -len(".py")].split("/")]
    return ".".join(parts[:-1])


def l2emg_imports(rel: str, source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of an l2emg module in SOURCE, the file at REL."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=rel)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(rel).split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found += [(node.lineno, f"{prefix}.{alias.name}") for alias in node.names if alias.name != "*"]
            if any(alias.name == "*" for alias in node.names):
                found.append((node.lineno, prefix))
    return sorted((line, imported_module(name)) for line, name in found if name == "l2emg" or name.startswith("l2emg."))


def upward_imports(rel: str, source: str, table: list[Entry]) -> list[str]:
    """One message per import in SOURCE (the file at REL) of a module on a higher floor."""
    own = floor_of(rel, table)
    assert own is not None, f"src/l2emg/{rel}: on no floor of {DESIGN.name}'s Layers table"
    problems = []
    for line, module in l2emg_imports(rel, source):
        target_rel = module_file(module)
        assert target_rel is not None, f"src/l2emg/{rel}:{line}: imports {module}, which is no module of l2emg"
        target = floor_of(target_rel, table)
        assert target is not None, f"src/l2emg/{target_rel}: on no floor of {DESIGN.name}'s Layers table"
        if target.floor > own.floor:
            problems.append(f"src/l2emg/{rel}:{line}: floor {own.floor} (`{own.path}`) imports {module}, "
                            f"floor {target.floor} (`{target.path}`)")
    return problems


def package_files() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def test_layer_table_parses_and_names_existing_modules(table):
    paths = [e.path for e in table]
    assert len(paths) == len(set(paths)), f"{DESIGN}: a module on two floors: {paths}"
    missing = [p for p in paths if not (PACKAGE / p).exists() or (PACKAGE / p).is_dir() != p.endswith("/")]
    assert not missing, f"{DESIGN}: the Layers table names modules that src/l2emg lacks: {missing}"
    by_path = {e.path: e.floor for e in table}
    assert by_path["errors.py"] == 1 and by_path["commands/"] == 10 and by_path["cli.py"] == 11


def test_every_module_is_on_a_floor(table):
    unplaced = [rel for rel in package_files() if floor_of(rel, table) is None]
    assert not unplaced, (f"modules on no floor of the Layers table in {DESIGN}: {unplaced}; "
                          "add them to the table")


def test_imports_only_run_downwards(table):
    problems = []
    for rel in package_files():
        problems += upward_imports(rel, (PACKAGE / rel).read_text(encoding="utf-8"), table)
    assert not problems, ("imports that run up the floors of docs/design.md (Layers):\n  "
                          + "\n  ".join(problems))


def test_an_upward_import_is_caught(table):
    """The check itself: an import from a higher floor is reported with file, line and both floors,
    whether at module level, in a function, relative or as `from … import`."""
    source = ("from l2emg.errors import ConfigError\n"
              "def f():\n"
              "    import l2emg.bench\n"
              "    from l2emg.continual.methods import METHODS\n"
              "    from .. import pipeline\n"
              "    from . import io\n")
    problems = upward_imports("utils/example.py", source, table)
    assert problems == [
        "src/l2emg/utils/example.py:3: floor 2 (`utils/`) imports l2emg.bench, floor 8 (`bench.py`)",
        "src/l2emg/utils/example.py:4: floor 2 (`utils/`) imports l2emg.continual.methods, floor 7 (`continual/`)",
        "src/l2emg/utils/example.py:5: floor 2 (`utils/`) imports l2emg.pipeline, floor 7 (`pipeline.py`)",
    ]

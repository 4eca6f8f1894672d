"""The package's imports point down the floors of shared/DESIGN.md ("Floors: who may import whom").

Every module of ``usm_geo`` is read with :mod:`ast` (never imported): module-level and
function-level imports alike, relative imports resolved against the importing module's package.
The test fails on

- an import cycle between two ``usm_geo`` modules (strongly connected components of the graph),
- an import from a room on a lower floor into a room on a higher floor,
- two rooms on the same floor importing each other (directly or round a circle on that floor),
- ``from x import _private`` across rooms (a function another room needs is public),
- a module that belongs to no room of :data:`FLOORS` (add it to the table, and to DESIGN.md).

When ``../shared/DESIGN.md`` is present, its floors table must agree with :data:`FLOORS`; absent,
that check is skipped (a failure under CI=true, like ``shared_data.need_shared``).
"""

from __future__ import annotations

import ast
import re

import pytest

from shared_data import IN_CI, REPO

PACKAGE = REPO / "usm_geo"
DESIGN = REPO.parent / "shared" / "DESIGN.md"
GROUND = -2  # below floor −1

#: room → floor, as in DESIGN.md's table (a room is a top-level module or sub-package of usm_geo).
FLOORS = {
    "cli": 9, "clidoc": 9,
    "pipeline": 8,
    "scale": 7,
    "export": 6, "maps": 6, "report": 6, "compare": 6,
    "disclosure": 5,
    "hotspots": 4, "impact": 4, "models": 4, "reconcile": 4,
    "indicators": 3,
    "measures": 2, "population": 2,
    "units": 1,
    "intake": 0, "demo": 0,
    "study": -1,
    "errors": GROUND, "io": GROUND, "periods": GROUND, "database": GROUND,
}

#: Rooms that exist in the package but not (yet) in DESIGN.md's table: each needs a row there.
NOT_IN_DESIGN = {
    "cli_files": 9,       # the commands that take files instead of a study (aggregate, hotspots, impact)
    "init": 9,            # `usm-geo init`: drafts a study.toml from the files it is given
    "postgis_export": 6,  # `usm-geo export --to postgresql://…`: a run's tables into PostGIS
    "area_tables": 5,     # a run's area tables in a profile (read_run): what maps, reports and exports read
    "time_patterns": 4,   # hour × weekday and month patterns from the incidents
    "progressbar": GROUND,  # progress on stderr, used by readers and writers alike
}

ALL_FLOORS = {**FLOORS, **NOT_IN_DESIGN}


def _modules() -> dict[str, tuple[object, bool]]:
    """Dotted module name → (path, is a package __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_package)
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The longest usm_geo module that ``name`` (a module or a module.attribute) lies in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports() -> list[tuple[str, str, str, int]]:
    """(importer, imported module, imported name or "", line) for every usm_geo import."""
    found = []
    for module, (path, is_package) in MODULES.items():
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "usm_geo" or alias.name.startswith("usm_geo."):
                        found.append((module, _owner(alias.name), "", node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # from . import x / from ..units import y
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not (target == "usm_geo" or target.startswith("usm_geo.")):
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    # `from usm_geo import scale` imports the module usm_geo.scale
                    imported = full if full in MODULES else _owner(target)
                    found.append((module, imported, "" if full in MODULES else alias.name, node.lineno))
    return found


IMPORTS = _imports()


def room(module: str) -> str:
    """``usm_geo.hotspots.kde`` → ``hotspots``; the package's own ``__init__`` is the room ``usm_geo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "usm_geo"


def floor(module: str) -> int:
    # usm_geo/__init__.py re-exports lazily (importlib) and imports only errors: ground floor
    return GROUND if module == "usm_geo" else ALL_FLOORS[room(module)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_the_walk_sees_function_level_and_relative_imports():
    """The walk is not vacuous: it finds imports written inside functions (hotspots.kde's lazy
    ``from usm_geo.io import atomic_path``) and the package's many modules and edges."""
    assert len(MODULES) > 80 and len(IMPORTS) > 400
    assert ("usm_geo.hotspots.kde", "usm_geo.io", "atomic_path") in {i[:3] for i in IMPORTS}
    src = ast.parse("from ..units import weights\nfrom . import grids\n")
    assert [n.level for n in src.body] == [2, 1]  # the resolution above handles level > 0


def test_cycle_finder_finds_a_circle():
    # a hand-made graph: a → b → c → a is one circle, d → a is not part of it
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_floor():
    unknown = sorted({room(m) for m in MODULES if m != "usm_geo"} - set(ALL_FLOORS))
    assert not unknown, f"rooms without a floor (add them to FLOORS and to shared/DESIGN.md): {unknown}"


def test_no_import_cycle_between_modules():
    edges: dict[str, set[str]] = {}
    for src, dst, _, _ in IMPORTS:
        if src != dst:
            edges.setdefault(src, set()).add(dst)
    assert _cycles(edges) == []


def test_no_import_points_up():
    upward = [f"{src}:{line} imports {dst} (floor {floor(src)} → {floor(dst)})"
              for src, dst, _, line in IMPORTS if floor(dst) > floor(src)]
    assert upward == []


def test_rooms_on_one_floor_import_one_way():
    edges: dict[str, set[str]] = {}
    for src, dst, _, _ in IMPORTS:
        a, b = room(src), room(dst)
        if a != b and floor(src) == floor(dst):
            edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


def test_no_private_name_across_rooms():
    private = [f"{src}:{line} imports {dst}.{name}" for src, dst, name, line in IMPORTS
               if name.startswith("_") and not name.startswith("__") and room(src) != room(dst)]
    assert private == []


def _design_floors(text: str) -> dict[str, int]:
    """room → floor from the table under "Floors: who may import whom"."""
    section = text.split("Floors: who may import whom", 1)[1]
    floors = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"ground|[−-]?\d+", cells[0]):
            if floors and not line.startswith("|"):
                break  # the table has ended
            continue
        level = GROUND if cells[0] == "ground" else int(cells[0].replace("−", "-"))
        for name in re.findall(r"`([^`]+)`", cells[1]):
            floors[name.removesuffix(".py").rstrip("/")] = level
    return floors


def test_design_parser_reads_a_table():
    text = ("### Floors: who may import whom\n\n| floor | rooms | owns |\n|---|---|---|\n"
            "| 9 | `cli.py`, `clidoc.py` | thin |\n| −1 | `study.py` | toml |\n| ground | `io.py` | files |\n\nNext.\n")
    assert _design_floors(text) == {"cli": 9, "clidoc": 9, "study": -1, "io": GROUND}


def test_floor_map_agrees_with_design():
    if not DESIGN.is_file():
        message = f"design document not found: {DESIGN}"
        if IN_CI:
            pytest.fail(message + " (CI=true: .ci/run must provide ../shared)")
        pytest.skip(message)
    design = _design_floors(DESIGN.read_text(encoding="utf-8"))
    # rooms DESIGN has gained since NOT_IN_DESIGN was written must leave it (and be in FLOORS)
    assert {r: f for r, f in design.items() if r in NOT_IN_DESIGN} == {}, "move these rooms from NOT_IN_DESIGN to FLOORS"
    assert design == FLOORS
    missing = sorted(r for r in FLOORS if not (PACKAGE / r).is_dir() and not (PACKAGE / f"{r}.py").is_file())
    assert missing == [], f"rooms of DESIGN.md that the package lacks: {missing}"

"""expconf.distributed: its modules import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

import expconf.distributed

PACKAGE = Path(expconf.distributed.__file__).parent
MODULES = sorted(f"expconf.distributed.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports(module: str) -> set[str]:
    """The expconf.distributed modules ``module`` imports, at module level or inside functions."""
    tree = ast.parse((PACKAGE / f"{module.rsplit('.', 1)[1]}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found - {module}


def test_no_import_cycle_inside_the_package() -> None:
    graph = {m: _imports(m) for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())
    assert graph["expconf.distributed.ranks"] == set()  # the bottom of the package

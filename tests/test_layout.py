"""The package layout: one import name, and dependencies that point one way
(``uner.bench`` -> ``uner.toolkit`` -> ``uner``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"runtimes": "uner", "toolkit": "uner.toolkit", "bench": "uner.bench"}
#: what each package may import of the others
ALLOWED = {"uner": set(), "uner.toolkit": {"uner"}, "uner.bench": {"uner", "uner.toolkit"}}


def _imported_packages(path: Path) -> set[str]:
    """The uner packages a module imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name.startswith("uner.toolkit"):
                found.add("uner.toolkit")
            elif name.startswith("uner.bench"):
                found.add("uner.bench")
            elif name == "uner" or name.startswith("uner."):
                found.add("uner")
            elif name.split(".")[0] in FOLDERS:
                found.add(name.split(".")[0])  # the folder names are not import names
    return found


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_packages_import_only_the_layers_below_them(folder):
    package = FOLDERS[folder]
    wrong = {}
    for module in sorted((ROOT / folder).glob("*.py")):
        if bad := _imported_packages(module) - ALLOWED[package] - {package}:
            wrong[module.name] = sorted(bad)
    assert not wrong, f"{package} imports {wrong}"


def test_the_import_checker_sees_a_cycle():
    # the check above must fail on the cycle this layout removed (recipe runs in the exporters)
    source = "def run():\n    from uner.bench.cli import run_bench\n"
    tree_file = ROOT / "build" / "layout-probe.py"
    tree_file.parent.mkdir(exist_ok=True)
    tree_file.write_text(source)
    try:
        assert _imported_packages(tree_file) - ALLOWED["uner.toolkit"] - {"uner.toolkit"} == {"uner.bench"}
    finally:
        tree_file.unlink()


def test_one_import_name_is_declared_for_the_wheel():
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(name == "uner" or name.startswith("uner.") for name in setuptools["packages"])
    assert setuptools["package-dir"] == {**{v: k for k, v in FOLDERS.items()}, "uner.export_recipes": "export_recipes"}


def test_uner_extract_runs_where_ray_cannot_be_imported():
    import subprocess
    import sys

    blocked = "import sys; sys.modules['ray'] = None; from uner.cli import main; main(['extract', '--help'])"
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True)
    assert done.returncode == 0 and "--ray" in done.stdout, done.stderr[-2000:]

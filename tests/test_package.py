"""Packaging and layout: the console script, a fast --help, the registry in the wheel, and
the direction of imports that docs/STYLE.md fixes."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import restore
from shared_paths import REPO

PKG = Path(restore.__file__).resolve().parent
SOURCE_PKG = REPO / "restore"


def restore_exe() -> list[str]:
    exe = Path(sys.executable).parent / "restore"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]


def test_console_script_help_and_version():
    out = subprocess.run(restore_exe() + ["--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: restore" in out.stdout
    out = subprocess.run(restore_exe() + ["--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"restore {restore.__version__}"


def test_cli_module_load_does_not_import_torch():
    code = ("import sys, restore.cli.main as m; m._register(); "
            "heavy = [n for n in ('torch', 'numpy', 'huggingface_hub', 'cv2') if n in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"imported at CLI load: {out.stdout} {out.stderr}"


def test_unknown_option_is_a_usage_error():
    out = subprocess.run(restore_exe() + ["--no-such-option"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "No such option" in out.stderr and "Traceback" not in out.stderr


def test_installed_package_finds_its_registry():
    from restore.registry import read_registry, registry_path

    path = registry_path()
    assert path.is_file()
    if PKG != SOURCE_PKG.resolve():  # a real (non-editable) install: the packaged copy
        assert path == PKG / "weights.toml"
    assert read_registry()["schema"] == 1


@pytest.mark.slow
def test_wheel_contains_registry_and_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                          str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("restore-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "restore/weights.toml" in names
        assert "restore/data/sample.png" in names  # `restore inspect model`'s default image
        assert any(n.startswith("restore/models/") and n.endswith(".safetensors") for n in names)
        assert zf.read("restore/weights.toml") == (REPO / "weights.toml").read_bytes()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "restore = restore.cli.main:run" in zf.read(entry).decode()
    assert not any(n.startswith("tests/") for n in names)


# -- the direction of imports ------------------------------------------------------------
# cli -> (train, api) -> (loader, levels, evaluate, analysis, pipeline) -> (registry, hub,
# checkpoint, engine, io) -> (archs, degrade, metrics) -> norms -> (errors, tasks, atomic).
# A module may import its own level or lower, never higher. The package's __init__ is the
# facade on top (restore.load re-exports restore.api): nothing below the CLI may import it.
LEVELS = {
    "errors": 0, "tasks": 0, "atomic": 0, "checks": 0, "progress": 1, "norms": 1, "archs": 2, "degrade": 2, "metrics": 2, "estimate": 2,
    "checkpoint": 3, "registry": 3, "hub": 3, "fetch": 3, "engine": 3, "io": 3, "tiling": 3,
    "loader": 4, "levels": 4, "evaluate": 4, "analysis": 4, "pipeline": 4, "train": 5, "api": 5, "cli": 6, "__main__": 6, "__init__": 6,
}


def _restore_imports(path: Path) -> set[str]:
    """Top-level restore submodules imported (absolutely or relatively) by a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel_parts = path.relative_to(SOURCE_PKG).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("restore."):
                    found.add(a.name.split(".")[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.startswith("restore"):
                parts = node.module.split(".")[1:]
            elif node.level > 0:
                base = list(rel_parts[:-node.level]) if node.level <= len(rel_parts) else []
                parts = base + (node.module.split(".") if node.module else [])
            else:
                continue
            if parts:
                found.add(parts[0])
            else:  # "from restore import x": x may be a module or a plain name
                found.update(a.name for a in node.names if (SOURCE_PKG / f"{a.name}.py").exists()
                             or (SOURCE_PKG / a.name).is_dir())
    return found


def _module_key(path: Path) -> str:
    return path.relative_to(SOURCE_PKG).with_suffix("").parts[0]


def test_imports_point_down_the_layers():
    bad = []
    for path in sorted(SOURCE_PKG.rglob("*.py")):
        key = _module_key(path)
        assert key in LEVELS, f"{path}: add {key!r} to LEVELS in this test"
        for imp in _restore_imports(path):
            if imp == key:
                continue
            assert imp in LEVELS, f"{path} imports unknown module restore.{imp}"
            if LEVELS[imp] > LEVELS[key]:
                bad.append(f"{path.relative_to(REPO)} imports restore.{imp}")
    assert not bad, "imports against the layering: " + "; ".join(bad)


def _module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Every module of the package under ``root`` -> the package's modules it imports, at
    module granularity (restore.hub, restore.cli.app), imports inside functions included."""
    modules: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (here[:len(here) - node.level + 1] if node.level else [])
                mod = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t not in modules and "." in t:  # a name inside a module: the module
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_two_modules_import_each_other():
    """No import cycle between modules, counting imports inside functions (which hide a
    cycle from Python at load time but not from a reader)."""
    graph = _module_graph(SOURCE_PKG, "restore")
    assert "restore.hub" in graph["restore.registry.sources"]  # the graph sees function-level imports
    assert _cycles(graph) == [], "modules that import each other"


def test_the_cycle_check_catches_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = _module_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.c"] == {"pkg.a"}
    assert _cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_only_the_hub_module_imports_huggingface_hub():
    offenders = []
    for path in SOURCE_PKG.rglob("*.py"):
        if _module_key(path) == "hub":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "huggingface_hub" for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [ln.strip() for ln in readme.splitlines() if ln.strip().startswith("python3 -m venv")]
    test_cmd = next(c for c in commands if c.endswith("pytest -q"))
    assert test_cmd in [ln.strip() for ln in ci.splitlines()]

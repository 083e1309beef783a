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
    from restore.weights import read_registry, registry_path

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
# cli -> train -> evaluate -> (weights, hub, checkpoint, engine, io) -> (archs, degrade,
# metrics) -> norms -> errors. A module may import its own level or lower, never higher.
LEVELS = {
    "errors": 0, "tasks": 0, "progress": 1, "norms": 1, "archs": 2, "degrade": 2, "metrics": 2, "estimate": 2,
    "checkpoint": 3, "weights": 3, "hub": 3, "engine": 3, "io": 3, "tiling": 3,
    "evaluate": 4, "inspect": 4, "pipeline": 4, "train": 5, "cli": 6, "__main__": 6, "__init__": 0,
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

"""Output destinations that cannot take the outputs: refused in one line, in words, before
any model loads; a disk that fills up mid-run fails only the files that do not fit, with
no partial file left. Permission checks are real: as root the CLI runs without the
capabilities that bypass them, and the read-only and full file systems are real tmpfs
mounts (root only, skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXE = Path(sys.executable).with_name("restore")
ROOT = os.geteuid() == 0


def run(*args, unprivileged=False, env=None):
    """The CLI as a user types it; ``unprivileged``: as root, without the capabilities
    that bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that a
    folder's mode bits bind as they bind any user (the interpreter under /root stays
    reachable, as it would not be for another uid)."""
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "restore"]
    if unprivileged and ROOT:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, dropping the permission-bypassing capabilities needs "
                        "setpriv (util-linux)")
        drop = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--", *cmd]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


@pytest.fixture
def world(tmp_path):
    """A folder anyone may read and write (tmp_path is root's own), with two noisy PNGs."""
    top = Path(tempfile.mkdtemp(prefix="restore-dest-"))
    top.chmod(0o777)
    src = top / "in"
    src.mkdir()
    src.chmod(0o777)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(src / f"{i}.png")
        (src / f"{i}.png").chmod(0o644)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def _one_line_before_loading(res, folder, reason):
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [f"restore: error: {folder}: cannot write outputs there: {reason}"], lines
    assert "image(s), model" not in res.stderr  # refused before any model was loaded
    assert res.stdout == ""


def test_a_file_in_the_way(world):
    (world / "one.png").write_bytes(b"not a folder")
    res = run("sr", "x2", world / "in", "-o", world / "one.png" / "sub/")
    _one_line_before_loading(res, world / "one.png" / "sub",
                             "a file is in the way (a part of the path is a file, not a folder)")


def test_no_permission(world):
    locked = world / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    res = run("sr", "x2", world / "in", "-o", locked / "out", unprivileged=True)
    _one_line_before_loading(res, locked / "out", "permission denied")


def _mount_tmpfs(where: Path, options: str) -> None:
    if not ROOT or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (run the suite as root, as CI does)")
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")


def test_a_read_only_file_system(world):
    ro = world / "ro"
    _mount_tmpfs(ro, "size=1m,ro")
    try:
        res = run("sr", "x2", world / "in", "-o", ro / "out")
        _one_line_before_loading(res, ro / "out", "the file system is read-only")
    finally:
        subprocess.run(["umount", str(ro)])


def test_a_disk_that_fills_up_mid_run(world):
    """Each x4 output of a 64x64 noise image is about 150 KB: 240 KB hold one."""
    full = world / "full"
    _mount_tmpfs(full, "size=240k")
    try:
        res = run("sr", "x4", world / "in", "-o", full)
        assert res.returncode == 1, res.stderr
        written = sorted(p.name for p in full.iterdir())
        assert written == ["0_x4.png"], written  # the rest failed, nothing partial left
        errors = [ln for ln in res.stderr.splitlines() if ": error: " in ln]
        assert errors == [f"{world / 'in' / f'{i}.png'}: error: {full / f'{i}_x4.png'}: "
                          "cannot write: no space left on the device" for i in (1, 2)], errors
        assert res.stdout.splitlines() == [str(full / "0_x4.png")]
        size = (full / "0_x4.png").stat().st_size
        (full / "0_x4.png").unlink()
        # room for one output and a half: the first fits, the second does not
        (full / "big").write_bytes(b"\0" * max(0, 240 * 1024 - size - size // 2))
        res = run("sr", "x4", world / "in", "-o", full, "--fail-fast")
        assert res.returncode == 1
        assert sum(": error: " in ln for ln in res.stderr.splitlines()) == 1  # stopped there
        assert sorted(p.name for p in full.iterdir()) == ["0_x4.png", "big"]
    finally:
        subprocess.run(["umount", str(full)])


def test_a_tile_below_one_window_is_rounded_up_with_a_note(world):
    res = run("sr", "x2", world / "in" / "0.png", "-o", world / "t.png", "--tile", 3)
    assert res.returncode == 0, res.stderr
    assert ("restore: note: --tile 3 is below the smallest tile the model takes (one 8-pixel "
            "window): using 8") in res.stderr


def test_a_decompression_bomb_names_the_limit_and_how_to_raise_it(world):
    res = run("sr", "x2", world / "in" / "0.png", "-o", world / "b.png",
              env={"RESTORE_MAX_MEGAPIXELS": "0.004"})
    assert res.returncode == 1
    assert (f"{world / 'in' / '0.png'}: error: too large: 64x64 = 0.0 megapixels (the limit is "
            "0.0 megapixels, a guard against decompression bombs; RESTORE_MAX_MEGAPIXELS=N "
            "raises it to N megapixels)") in res.stderr, res.stderr

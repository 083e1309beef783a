"""Progress bars as a user sees them: the real CLI under a pseudo-terminal (stderr a TTY
nobody sized, as `script` and many containers give), through a pipe, and with -q."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from restore import progress

EXE = Path(sys.executable).with_name("restore")


def _run_on_pty(args, cwd):
    """Run ``restore ARGS`` with stderr on a fresh pseudo-terminal and stdout on a pipe;
    (exit code, stdout text, everything the terminal received)."""
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "restore"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd + [str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=120)
    os.close(master)
    return code, out, seen.decode(errors="replace")


def _folder(tmp_path, n=3):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(src / f"{i}.png")
    return src


def test_the_files_bar_shows_on_a_terminal_and_nowhere_else(tmp_path):
    src = _folder(tmp_path)
    code, out, term = _run_on_pty(["sr", "x2", src, "-o", tmp_path / "a"], tmp_path)
    assert code == 0, term
    assert "sr: 100%" in term and "3/3" in term and "img/s" in term, term
    paths = [str(tmp_path / "a" / f"{i}_x2.png") for i in range(3)]
    assert out.splitlines() == paths  # stdout: the paths only
    # through a pipe: the same paths, no bar
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "restore"]
    res = subprocess.run(cmd + ["sr", "x2", str(src), "-o", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "img/s" not in res.stderr and "%|" not in res.stderr
    assert res.stdout.splitlines() == [p.replace("/a/", "/b/") for p in paths]
    # -q on a terminal: no bar, no notes, the same paths
    code, out, term = _run_on_pty(["sr", "x2", src, "-o", tmp_path / "c", "-q"], tmp_path)
    assert code == 0 and "img/s" not in term and "%|" not in term, term
    assert out.splitlines() == [p.replace("/a/", "/c/") for p in paths]


def test_the_tiles_bar_shows_for_a_tiled_image(tmp_path):
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)) \
        .save(tmp_path / "big.png")
    code, _, term = _run_on_pty(["sr", "x2", tmp_path / "big.png", "--tile", 16,
                                 "--tile-mode", "independent"], tmp_path)
    assert code == 0, term
    assert "tiles:" in term and "/9 [" in term, term  # 9 tiles; cleared when done


def test_eval_shows_a_bar_per_set_on_a_terminal(tmp_path):
    src = _folder(tmp_path, 2)
    code, out, term = _run_on_pty(["eval", "--task", "sr", "--scale", 2, "--model", "bicubic",
                                   "--data", src], tmp_path)
    assert code == 0, term
    assert "img/s" in term or "s/img" in term, term
    assert "PSNR" in out or "psnr" in out.lower()


def test_a_terminal_that_reports_no_width_gets_a_bar_of_80_columns(monkeypatch):
    master, slave = pty.openpty()  # a new pty is 0 x 0
    try:
        with os.fdopen(os.dup(slave), "w") as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            assert progress.enabled() and not progress.enabled(quiet=True)
            b = progress.bar(10, desc="x")
            assert not b.disable and (b.ncols, b.nrows) == (progress.FALLBACK_COLUMNS, progress.FALLBACK_ROWS)
            b.close()
    finally:
        os.close(master)
        os.close(slave)

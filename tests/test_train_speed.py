"""benchmarks/train_speed.py, run as a user runs it (a subprocess) on the smoke config."""

from __future__ import annotations

import json
import subprocess
import sys

from shared_paths import DATA, REPO, require

SCRIPT = REPO / "benchmarks" / "train_speed.py"


def test_train_speed_times_real_runs_and_compares_with_the_baseline(tmp_path):
    require(DATA / "train" / "T91")
    out = tmp_path / "speed.json"
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--config", str(REPO / "configs" / "smoke-cpu.toml"),
         "--steps", "60", "--rounds", "2", "--variant", "base:",
         "--variant", "patch8-batch16:data.patch_size=8,data.batch_size=16",
         "--variant", "broken:data.patch_size=0", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 1, res.stderr  # the broken variant fails, the others still run
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    base, small = rows["base"], rows["patch8-batch16"]
    assert base["hr_pixels_per_step"] == 4 * (16 * 2) ** 2  # batch x (LQ patch x scale)^2
    assert small["hr_pixels_per_step"] == 16 * (8 * 2) ** 2
    for r in (base, small):
        assert len(r["rounds_it_s"]) == 2 and all(v > 0 for v in r["rounds_it_s"])
        assert r["hr_mpx_s"] == r["it_s"] * r["hr_pixels_per_step"] / 1e6
    assert base["vs_base"] == 1.0
    assert abs(small["vs_base"] - small["hr_mpx_s"] / base["hr_mpx_s"]) < 1e-12
    assert rows["broken"]["errors"] and "patch_size" in rows["broken"]["errors"][0]
    assert "| base | (the config) |" in res.stdout and "| broken |" in res.stdout
    assert not list(tmp_path.glob("run-*"))  # the run folders were temporary

"""Downloads and uploads through the `restore` executable against a local Hub server.

Every test runs the real console script in a subprocess with HF_ENDPOINT pointing at
tests/hub_server.py (a threaded http.server on 127.0.0.1 speaking the Hub protocol that
huggingface_hub uses), HF_HOME in a temporary folder and a user registry that holds a tiny
SwinIR entry pinned to a commit of that server. Nothing is mocked: huggingface_hub does the
HTTP, restore does the pinning, verification and messages.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hub_server import HubServer
from restore.archs import build
from restore.checkpoint import save_model
from restore.registry import FileSource, HubSource, toml_loads, entry_toml, make_spec, read_registry

REPO_ID = "restore-test/tiny"
FILENAME = "weights/tiny.safetensors"
NAME = "tiny.sr-x2"
TINY = dict(upscale=2, img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2],
            mlp_ratio=2.0, upsampler="pixelshuffledirect")
HF_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE",
           "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_XET", "HF_XET_CACHE", "HUGGINGFACE_HUB_CACHE",
           "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_POSITION", "RESTORE_REGISTRY",
           "RESTORE_CONFIG_DIR", "RESTORE_DATA_DIR", "RESTORE_CACHE_DIR", "XDG_CACHE_HOME")


def restore_exe() -> list[str]:
    exe = Path(sys.executable).parent / "restore"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    """A real restore safetensors checkpoint of a tiny SwinIR (about 50 kB)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    return save_model(build("swinir", **TINY).eval(), path)


@dataclass
class Env:
    hub: HubServer
    tmp: Path
    data: bytes
    commit: str

    @property
    def cache(self) -> Path:
        return self.tmp / "hf" / "hub"

    @property
    def registry(self) -> Path:
        return self.tmp / "config" / "registry.toml"

    @property
    def snapshot(self) -> Path:
        return (self.cache / "models--restore-test--tiny" / "snapshots" / self.commit
                / FILENAME)

    def blobs(self) -> list[Path]:
        d = self.cache / "models--restore-test--tiny" / "blobs"
        return sorted(d.iterdir()) if d.is_dir() else []

    def register(self, name: str = NAME, *, filename: str = FILENAME, repo_id: str = REPO_ID,
                 sha256: str | None = None, append: bool = True) -> None:
        spec = make_spec(
            name, family="swinir", config=TINY, task="sr", license="Apache-2.0",
            description="tiny SwinIR for tests", params=1,
            source=HubSource(repo_id=repo_id, filename=filename, revision=self.commit),
            sha256=sha256 or hashlib.sha256(self.data).hexdigest(), size=len(self.data))
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        text = self.registry.read_text() if append and self.registry.exists() else "schema = 1\n"
        self.registry.write_text(text + "\n" + entry_toml(spec))

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if k not in HF_VARS}
        base.update(HF_ENDPOINT=self.hub.endpoint, HF_HOME=str(self.tmp / "hf"),
                    RESTORE_CONFIG_DIR=str(self.tmp / "config"),
                    RESTORE_DATA_DIR=str(self.tmp / "data"),
                    RESTORE_CACHE_DIR=str(self.tmp / "cache"), RESTORE_DEBUG="")
        base.update(env)
        self.hub.requests.clear()
        return subprocess.run(restore_exe() + list(args), env=base, capture_output=True,
                              text=True, timeout=120)


@pytest.fixture
def env(tmp_path, tiny_file):
    data = tiny_file.read_bytes()
    with HubServer() as hub:
        commit = hub.commit(REPO_ID, {FILENAME: data, "README.md": b"# tiny\n"})
        e = Env(hub=hub, tmp=tmp_path, data=data, commit=commit)
        e.register()
        yield e


def _downloads(hub: HubServer) -> int:
    return sum(1 for role, m, p in hub.requests if m in ("HEAD", "GET") and "agent" not in p)


def test_first_download_then_cached_run_makes_no_request(env):
    out = env.run("models", "download", NAME, TQDM_POSITION="-1")
    assert out.returncode == 0, out.stderr
    name, path = out.stdout.strip().split("\t")
    assert name == NAME and Path(path) == env.snapshot
    assert Path(path).read_bytes() == env.data
    # the download went through the Hub protocol: HEAD on resolve, then GET on the "CDN"
    assert ("hub", "HEAD", f"/{REPO_ID}/resolve/{env.commit}/{FILENAME}") in env.hub.requests
    assert env.hub.count("GET", "cdn") == 1
    assert "100%" in out.stderr  # huggingface_hub's progress bar (forced on without a tty)

    again = env.run("models", "download", NAME)
    assert again.returncode == 0, again.stderr
    assert again.stdout == out.stdout
    assert env.hub.requests == []  # a pinned, cached file: not one request

    listing = env.run("models", "list", "--task", "sr-x2")
    assert listing.returncode == 0, listing.stderr
    row = next(ln for ln in listing.stdout.splitlines() if ln.startswith(NAME))
    assert " yes " in row
    assert env.hub.requests == []


def test_offline_uses_only_the_cache_and_says_how_to_get_it(env):
    for args, extra in ((("--offline",), {}), ((), {"HF_HUB_OFFLINE": "1"})):
        out = env.run("models", "download", NAME, *args, **extra)
        assert out.returncode == 1, out.stderr
        err = out.stderr
        assert "not in the Hugging Face cache" in err
        assert ("HF_HUB_OFFLINE" in err) if extra else ("--offline" in err)
        assert f"restore models download {NAME}" in err
        assert "models--restore-test--tiny" in err and "Traceback" not in err
        assert env.hub.requests == []
        assert not env.snapshot.exists()

    assert env.run("models", "download", NAME).returncode == 0
    for args, extra in ((("--offline",), {}), ((), {"HF_HUB_OFFLINE": "1"})):
        out = env.run("models", "download", NAME, *args, **extra)
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip().split("\t")[1]) == env.snapshot
        assert env.hub.requests == []


def test_tampered_download_is_refused_and_removed(env):
    env.hub.tamper = True  # same size, one byte flipped: only the sha256 can tell
    bad = bytes([env.data[0] ^ 0xFF]) + env.data[1:]
    out = env.run("models", "download", NAME)
    assert out.returncode == 1
    err = out.stderr
    assert hashlib.sha256(env.data).hexdigest() in err  # expected
    assert hashlib.sha256(bad).hexdigest() in err  # actual
    assert "deleted" in err and "Traceback" not in err
    assert not env.snapshot.exists() and not os.path.lexists(env.snapshot)
    assert env.blobs() == []
    assert out.stdout == ""

    env.hub.tamper = False
    ok = env.run("models", "download", NAME)
    assert ok.returncode == 0, ok.stderr
    assert env.snapshot.read_bytes() == env.data


def test_corrupted_cache_is_caught_before_use(env):
    assert env.run("models", "download", NAME).returncode == 0
    blob = env.snapshot.resolve()
    rotten = env.data[:-1] + bytes([env.data[-1] ^ 1])
    blob.write_bytes(rotten)  # bit rot after the download
    out = env.run("models", "download", NAME)
    assert out.returncode == 1 and out.stdout == ""
    assert hashlib.sha256(env.data).hexdigest() in out.stderr
    assert hashlib.sha256(rotten).hexdigest() in out.stderr
    assert not blob.exists() and not os.path.lexists(env.snapshot)
    assert env.hub.requests == []  # caught from the cache, nothing fetched

    assert env.run("models", "download", NAME).returncode == 0  # fetched again
    env.snapshot.resolve().write_bytes(b"x" * len(env.data))
    ver = env.run("models", "verify")
    assert ver.returncode == 1
    assert "sha256 expected" in ver.stderr and "deleted" in ver.stderr
    assert not os.path.lexists(env.snapshot)
    assert "swinir-m.sr-x4: not on this machine" in ver.stderr


def test_missing_file_and_missing_repo_are_clear(env):
    env.register("missing.sr-x2", filename="weights/missing.safetensors")
    env.register("norepo.sr-x2", repo_id="restore-test/nope")
    out = env.run("models", "download", "missing.sr-x2", "norepo.sr-x2", NAME)
    assert out.returncode == 1
    err = out.stderr
    assert "weights/missing.safetensors does not exist in restore-test/tiny at revision " \
           f"{env.commit}" in err
    assert "repository restore-test/nope not found" in err
    assert "Traceback" not in err
    assert out.stdout.strip().split("\t")[0] == NAME  # the batch went on past the failures


def test_server_that_stops_mid_download_leaves_no_corrupt_file(env):
    env.hub.cut_after = 10_000  # send 10 kB of ~50 kB, drop the connection, then 500s
    out = env.run("models", "download", NAME)
    assert out.returncode == 1
    assert "download of weights/tiny.safetensors from restore-test/tiny" in out.stderr
    assert "nothing was kept in the cache" in out.stderr and "Traceback" not in out.stderr
    assert env.hub.down
    assert not os.path.lexists(env.snapshot)
    leftovers = [p for p in env.cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert [p for p in leftovers if "blobs" in p.parts] == []  # no blob, no .incomplete

    env.hub.down, env.hub.cut_after = False, None  # the server is back
    ok = env.run("models", "download", NAME)
    assert ok.returncode == 0, ok.stderr
    assert env.snapshot.read_bytes() == env.data


def test_list_works_offline_and_lists_every_entry(env):
    out = env.run("models", "list", "--json", HF_HUB_OFFLINE="1",
                  HF_ENDPOINT="http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    import json

    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(read_registry()["models"]) | {NAME} == set(rows)
    assert rows[NAME]["cached"] is False and rows[NAME]["origin"].endswith("registry.toml")
    assert rows["swinir-m.sr-x4"]["source"]["revision"] == \
        "4a00b98391293b35d5b9ab0c98c6588093d35108"
    text = env.run("models", "list", HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    assert text.returncode == 0
    for name in rows:
        assert name in text.stdout
    missing = [k for k, v in read_registry()["defaults"].items() if not v]
    if missing:
        assert f"no default model yet for: {', '.join(missing)}" in text.stderr
    else:
        assert "no default model yet" not in text.stderr


def test_info_names_url_and_cache(env):
    out = env.run("models", "info", NAME)
    assert out.returncode == 0, out.stderr
    assert f"{env.hub.endpoint}/{REPO_ID}/resolve/{env.commit}/{FILENAME}" in out.stdout
    assert "cached      no" in out.stdout
    bad = env.run("models", "info", "tiny.sr-x3")
    assert bad.returncode == 2 and "did you mean 'tiny.sr-x2'" in bad.stderr


def test_push_uploads_file_and_card_and_prints_a_pinned_entry(tmp_path, env):
    # a model imported into the user registry (a "file" source), i-LN
    torch.manual_seed(1)
    local = save_model(build("swinir", norm="iln", **TINY).eval(),
                       tmp_path / "data" / "models" / "tiny-iln.sr-x2.safetensors")
    spec = make_spec("tiny-iln.sr-x2", family="swinir", config={**TINY, "norm": "iln"},
                     task="sr", license="Apache-2.0", description="tiny i-LN SwinIR",
                     params=1, psnr={"Set5": 30.5}, psnr_source="measured",
                     source=FileSource(local), size=local.stat().st_size,
                     sha256=hashlib.sha256(local.read_bytes()).hexdigest())
    env.registry.write_text(env.registry.read_text() + "\n" + entry_toml(spec))
    env.hub.token = "hf_test_write_token"

    denied = env.run("models", "push", "tiny-iln.sr-x2", "--repo", "restore-test/pushed",
                     HF_HUB_DISABLE_XET="1")
    assert denied.returncode == 1 and "HF_TOKEN" in denied.stderr, denied.stderr

    out = env.run("models", "push", "tiny-iln.sr-x2", "--repo", "restore-test/pushed",
                  HF_TOKEN="hf_test_write_token", HF_HUB_DISABLE_XET="1")
    assert out.returncode == 0, out.stderr
    assert "Bearer hf_test_write_token" in env.hub.auth_seen
    methods = {(m, p.split("/")[-1] if "lfs-upload" in p else p) for _, m, p in env.hub.requests}
    assert ("POST", "/api/repos/create") in methods
    assert ("POST", "/api/models/restore-test/pushed/commit/main") in methods
    assert any(m == "PUT" for m, _ in methods)  # the weights went up as an LFS object

    repo = env.hub.repos["restore-test/pushed"]
    head = repo.refs["main"]
    tree = repo.commits[head]
    assert tree["tiny-iln.sr-x2.safetensors"].data == local.read_bytes()
    card = tree["README.md"].data.decode()
    assert card == env.hub.cards[-1]
    import yaml

    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "apache-2.0"
    assert {"image-to-image", "super-resolution", "i-LN"} <= set(meta["tags"])
    assert "| Set5 | 30.50 |" in card

    entry = toml_loads(out.stdout)["models"]["tiny-iln.sr-x2"]
    assert entry["source"] == {"kind": "hub", "repo_id": "restore-test/pushed",
                               "filename": "tiny-iln.sr-x2.safetensors", "revision": head}
    assert entry["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()

    # the printed entry works as is: register it under a new name and download it
    env.registry.write_text(env.registry.read_text() + "\n" + out.stdout.replace(
        '[models."tiny-iln.sr-x2"', '[models."tiny-iln-hub.sr-x2"'))
    got = env.run("models", "download", "tiny-iln-hub.sr-x2")
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip().split("\t")[1]).read_bytes() == local.read_bytes()

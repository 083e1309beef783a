"""Registry entries of kind "url" (a file at a plain HTTPS address, pinned by sha256 and
size), through the `restore` executable against a local HTTP server, and the DRCT entries
they were made for.

The server is http.server in a thread on 127.0.0.1 (plain http to the loopback is what the
registry allows besides https), serving a real restore checkpoint of a tiny SwinIR, a web
page, a truncated body, other content of the same size, and counting every request.
Each test gets its own user registry, data folder and download cache (RESTORE_CONFIG_DIR,
RESTORE_DATA_DIR, RESTORE_CACHE_DIR). Nothing is mocked: urllib does the HTTP, restore the
pinning, verification, placing and messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restore.archs import build
from restore.checkpoint import RECOMPUTED_SUFFIXES, save_model
from restore.errors import ConfigError
from restore.registry import (
    HubSource, UrlSource, add_user_entry, download_path, entry_toml, load_registry, make_spec,
    parse_registry, read_registry, read_toml, toml_loads,
)

from shared_paths import SHARED, in_ci

NAME = "tiny-url.sr-x2"
FILENAME = "tiny.safetensors"
TINY = dict(upscale=2, img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2],
            mlp_ratio=2.0, upsampler="pixelshuffledirect")
DRCT_ENTRIES = Path(__file__).parent / "data" / "drct_entries.toml"
DRCT_PUBLISHED = SHARED / "fixtures" / "reference_drct" / "published_state_dicts.json"
# what the subprocesses must not inherit: another registry, cache or offline setting, a
# proxy that would take the requests for 127.0.0.1 elsewhere
PROXY_AND_DEBUG = ("TRANSFORMERS_OFFLINE", "RESTORE_DEBUG", "http_proxy", "https_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
SCRUB = ("RESTORE_REGISTRY", "RESTORE_CONFIG_DIR", "RESTORE_DATA_DIR", "RESTORE_CACHE_DIR",
         "XDG_CACHE_HOME", "HF_HUB_OFFLINE") + PROXY_AND_DEBUG


def restore_exe() -> list[str]:
    exe = Path(sys.executable).parent / "restore"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]


# -- the server ----------------------------------------------------------------------------

@dataclass
class Route:
    body: bytes
    content_type: str = "application/octet-stream"
    status: int = 200
    cut_after: int | None = None  # send this many bytes of the body, then drop the connection
    stall_after: int | None = None  # send this many bytes, then wait for ``release``
    announce: bool = True  # send Content-Length (else the body ends when the connection closes)


@dataclass
class FileServer:
    """``with FileServer(routes) as srv:``; ``srv.url(path)``; ``srv.requests`` lists
    (method, path) of every request."""

    routes: dict[str, Route]
    requests: list[tuple[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    route = Route(b"not found", "text/plain", status=404)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.announce:
                    self.send_header("Content-Length", str(len(route.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if route.stall_after is not None:
                    self.wfile.write(route.body[:route.stall_after])
                    self.wfile.flush()
                    server.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(route.body[:route.cut_after])
                self.wfile.flush()
                if route.cut_after is not None:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._srv.daemon_threads = True
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._srv.shutdown()
        self._srv.server_close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._srv.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"


PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
        b"<body>Too many users have viewed or downloaded this file recently.</body></html>")


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    """A real restore safetensors checkpoint of a tiny SwinIR x2 (about 50 kB)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / FILENAME
    return save_model(build("swinir", **TINY).eval(), path).read_bytes()


@dataclass
class Env:
    server: FileServer
    tmp: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def cache(self) -> Path:
        return self.tmp / "cache"

    @property
    def cached(self) -> Path:
        return self.cache / "downloads" / self.sha256 / FILENAME

    @property
    def registry(self) -> Path:
        return self.tmp / "config" / "registry.toml"

    def register(self, name: str, path: str, *, sha256: str | None = None,
                 size: int | None = None, source=None) -> None:
        """A url entry for ``path`` on the server, pinned to the good file by default."""
        spec = make_spec(
            name, family="swinir", config=TINY, task="sr", license="Apache-2.0",
            description="tiny SwinIR for tests", params=1,
            source=source or UrlSource(url=self.server.url(path), filename=FILENAME),
            sha256=sha256 or self.sha256, size=len(self.data) if size is None else size)
        self.registry.parent.mkdir(parents=True, exist_ok=True)
        text = self.registry.read_text() if self.registry.exists() else "schema = 1\n"
        self.registry.write_text(text + "\n" + entry_toml(spec))

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUB}
        env.update(RESTORE_CONFIG_DIR=str(self.tmp / "config"),
                   RESTORE_DATA_DIR=str(self.tmp / "data"), RESTORE_CACHE_DIR=str(self.cache),
                   no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
        env.update(extra)
        return env

    def run(self, *args, **extra: str) -> subprocess.CompletedProcess:
        self.server.requests.clear()
        return subprocess.run(restore_exe() + [str(a) for a in args], env=self.environ(**extra),
                              capture_output=True, text=True, timeout=300)

    def image(self) -> Path:
        path = self.tmp / "img.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(path)
        return path

    def files_in_cache(self) -> list[Path]:
        return sorted(self.cache.rglob("*")) if self.cache.exists() else []


@pytest.fixture
def env(tmp_path, tiny_bytes):
    same_size = bytes(b ^ 0x55 for b in tiny_bytes)
    routes = {
        "/files/tiny.safetensors": Route(tiny_bytes),
        "/page": Route(PAGE, "text/html; charset=utf-8"),
        "/page-as-binary": Route(b"\n  " + PAGE, announce=False),
        "/truncated": Route(tiny_bytes, cut_after=len(tiny_bytes) // 3),
        "/wrong": Route(same_size),
        "/longer": Route(tiny_bytes + b"tail", announce=False),
        "/other-size": Route(tiny_bytes[:-100]),
        "/stall": Route(tiny_bytes, stall_after=len(tiny_bytes) // 2),
    }
    with FileServer(routes) as server:
        e = Env(server=server, tmp=tmp_path, data=tiny_bytes)
        e.register(NAME, "/files/tiny.safetensors")
        yield e


@pytest.fixture(autouse=True)
def isolated(isolated_user_dirs, monkeypatch):
    """In-process tests see an empty user registry and cache of their own (conftest.py),
    and none of the caller's proxies or debug settings either."""
    for var in PROXY_AND_DEBUG:
        monkeypatch.delenv(var, raising=False)


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    err = out.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("restore: error: "), err
    return err


# -- downloading and using -----------------------------------------------------------------

def test_download_on_first_use_then_no_request(env):
    img, out = env.image(), env.tmp / "big.png"
    res = env.run("sr", "x2", img, "--model", NAME, "-o", out, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and Image.open(out).size == (56, 40)
    assert env.server.requests == [("GET", "/files/tiny.safetensors")]
    assert env.cached.read_bytes() == env.data
    # nothing but the file in the cache: no temporary left beside it
    assert env.files_in_cache() == [env.cache / "downloads", env.cached.parent, env.cached]

    again = env.run("sr", "x2", img, "--model", NAME, "-o", out, "--overwrite", "--device",
                    "cpu")
    assert again.returncode == 0, again.stderr
    assert env.server.requests == []  # cached: not one request
    got = env.run("models", "download", NAME)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"{NAME}\t{env.cached}\n" and env.server.requests == []
    offline = env.run("sr", "x2", img, "--model", NAME, "-o", out, "--overwrite", "--offline",
                      "--device", "cpu")
    assert offline.returncode == 0, offline.stderr


def test_models_download_list_info_and_verify(env):
    before = env.run("models", "list", "--task", "sr-x2")
    row = next(ln for ln in before.stdout.splitlines() if ln.startswith(NAME))
    assert f"url:{env.server.host}" in row and " no " in row

    got = env.run("models", "download", NAME)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"{NAME}\t{env.cached}\n"
    assert env.server.requests == [("GET", "/files/tiny.safetensors")]

    after = env.run("models", "list", "--task", "sr-x2")
    row = next(ln for ln in after.stdout.splitlines() if ln.startswith(NAME))
    assert f"url:{env.server.host}" in row and " yes " in row
    info = env.run("models", "info", NAME)
    assert info.returncode == 0, info.stderr
    url = env.server.url("/files/tiny.safetensors")
    assert f"  source      url:{env.server.host}/files/tiny.safetensors" in info.stdout
    assert f"  url         {url}" in info.stdout
    assert f"  cached      {env.cached}" in info.stdout
    data = json.loads(env.run("models", "info", NAME, "--json").stdout)
    assert data["source"] == {"kind": "url", "url": url, "filename": FILENAME}
    assert data["cached"] is True and data["url"] == url

    ver = env.run("models", "verify", NAME)
    assert ver.returncode == 0, ver.stderr
    assert ver.stdout == f"{NAME}\tok\t{env.cached}\n"
    assert env.server.requests == []


def test_the_progress_bar_shows_on_a_terminal(env):
    """On a terminal (a pty here) the download draws its bar on stderr; stdout stays the
    result alone."""
    main, sub = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the other end closed (EIO)
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        res = subprocess.run(restore_exe() + ["models", "download", NAME], env=env.environ(),
                             stdout=subprocess.PIPE, stderr=sub, text=True, timeout=300)
    finally:
        os.close(sub)
    reader.join(timeout=10)
    os.close(main)
    bar = b"".join(chunks).decode(errors="replace")
    assert res.returncode == 0, bar
    assert res.stdout == f"{NAME}\t{env.cached}\n"
    assert FILENAME in bar and "100%" in bar, bar


def test_offline_with_nothing_cached_says_how_to_get_it(env):
    img = env.image()
    url = env.server.url("/files/tiny.safetensors")
    for args, extra, why in ((("--offline",), {}, "--offline"),
                             ((), {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set")):
        for cmd in (("models", "download", NAME), ("sr", "x2", img, "--model", NAME)):
            out = env.run(*cmd, *args, **extra)
            assert out.returncode == 1, out.stderr
            err = _one_line_error(out)
            assert f"model {NAME!r}: {FILENAME} is not in restore's download cache" in err
            assert f"({why})" in err and str(env.cache / "downloads") in err
            assert f"download {url} by hand (in a browser)" in err
            assert f"'restore models download {NAME} --file PATH'" in err
            assert env.server.requests == []
            assert env.files_in_cache() == []


@pytest.mark.parametrize("path,words", [
    ("/page", ["answered with a web page (Content-Type text/html)", "Google Drive"]),
    ("/page-as-binary", ["answered with a web page (it starts as HTML)"]),
    ("/truncated", ["the connection broke off after"]),
    ("/wrong", ["the downloaded file does not match the registry: sha256 expected"]),
    ("/longer", ["has more than the"]),
    ("/other-size", ["the server announces"]),
    ("/missing", ["the server answered 404"]),
], ids=lambda v: v.strip("/") if isinstance(v, str) else "")
def test_a_failed_download_says_why_and_leaves_nothing(env, path, words):
    env.register("bad.sr-x2", path)
    out = env.run("models", "download", "bad.sr-x2")
    assert out.returncode == 1 and out.stdout == ""
    err = _one_line_error(out)
    assert f"model 'bad.sr-x2': cannot download {env.server.url(path)}: " in err
    for w in words:
        assert w in err, err
    assert "nothing was kept in the cache" in err
    assert "'restore models download bad.sr-x2 --file PATH'" in err
    assert env.files_in_cache() == []  # no file, no temporary, not even the folders
    if path == "/wrong":
        assert env.sha256 in err  # expected
        assert hashlib.sha256(bytes(b ^ 0x55 for b in env.data)).hexdigest() in err  # actual
    if path == "/truncated":
        assert f"of {len(env.data):,} bytes" in err


def test_ctrl_c_mid_download_leaves_nothing(env):
    """Interrupted while the bytes come in (the temporary file is half written): exit 130,
    and neither the temporary nor the folders made for it stay."""
    env.register("slow.sr-x2", "/stall")
    env.server.requests.clear()
    proc = subprocess.Popen(restore_exe() + ["models", "download", "slow.sr-x2"],
                            env=env.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".tmp") and p.stat().st_size > 0
                      for p in env.files_in_cache() if p.is_file()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGINT, err  # by the signal (a shell's $? is 130)
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1] == "restore: interrupted"
    assert env.files_in_cache() == []


def test_a_download_killed_outright_is_cleaned_up_by_the_next_one(env):
    """kill -9 leaves the temporary (nothing runs to remove it); the next download of the
    same file removes it, since no live process holds it, and leaves alone one that a
    download under way holds (here: this test, with the same lock), however old."""
    import fcntl

    env.register("slow.sr-x2", "/stall")  # the same pinned file, so the same cache folder
    proc = subprocess.Popen(restore_exe() + ["models", "download", "slow.sr-x2"],
                            env=env.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not [p for p in env.files_in_cache() if p.name.endswith(".tmp")
                   and p.stat().st_size > 0]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.communicate()
    (left,) = [p for p in env.files_in_cache() if p.name.endswith(".tmp")]
    half_a_minute_ago = time.time() - 30  # the user runs it again a little later
    os.utime(left, (half_a_minute_ago, half_a_minute_ago))
    live = left.with_name(f".{FILENAME}.0badf00d.tmp")
    live.write_bytes(b"being written")
    os.utime(live, (time.time() - 3600,) * 2)
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = env.run("models", "download", NAME)
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert env.cached.read_bytes() == env.data
    assert not left.exists() and live.exists()


def test_an_unreachable_server_is_one_line(env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.register("down.sr-x2", "/x", source=UrlSource(f"http://127.0.0.1:{port}/x", FILENAME))
    out = env.run("models", "download", "down.sr-x2", NAME)
    assert out.returncode == 1
    err = out.stderr.strip()
    assert "the server could not be reached (connection refused)" in err and "Traceback" not in err
    assert out.stdout == f"{NAME}\t{env.cached}\n"  # the batch went on past the failure


def test_a_corrupted_cached_file_is_deleted_and_said_so(env):
    assert env.run("models", "download", NAME).returncode == 0
    rotten = env.data[:-1] + bytes([env.data[-1] ^ 1])
    env.cached.write_bytes(rotten)  # bit rot after the download
    out = env.run("models", "download", NAME)
    assert out.returncode == 1 and out.stdout == ""
    err = _one_line_error(out)
    assert env.sha256 in err and hashlib.sha256(rotten).hexdigest() in err
    assert "the file was deleted from restore's download cache and was not used" in err
    assert f"Run 'restore models download {NAME}' to fetch it again" in err
    assert not env.cached.exists() and not env.cached.parent.exists()
    assert env.server.requests == []  # caught from the cache, nothing fetched

    assert env.run("models", "download", NAME).returncode == 0  # fetched again
    assert env.server.requests == [("GET", "/files/tiny.safetensors")]
    env.cached.write_bytes(b"x" * len(env.data))
    ver = env.run("models", "verify", NAME)
    assert ver.returncode == 1 and "deleted from restore's download cache" in ver.stderr
    assert not env.cached.exists()


# -- a file downloaded by hand ---------------------------------------------------------------

def test_a_file_downloaded_by_hand_is_checked_and_put_in_place(env):
    img = env.image()
    # refused: other content of the right size, a saved web page, no file; cache untouched
    bad = env.tmp / "bad.safetensors"
    bad.write_bytes(bytes([env.data[0] ^ 1]) + env.data[1:])
    page = env.tmp / "uc.html"
    page.write_bytes(PAGE)
    for path, words in ((bad, ["does not match the registry: sha256 expected", env.sha256,
                               hashlib.sha256(bad.read_bytes()).hexdigest()]),
                        (page, [f"is {len(PAGE):,} bytes, the registry expects "
                                f"{len(env.data):,}"]),
                        (env.tmp / "nope.pth", ["cannot read it"])):
        out = env.run("models", "download", NAME, "--file", path)
        assert out.returncode == 1, out.stderr
        err = _one_line_error(out)
        assert f"model {NAME!r}: {path}" in err and "the cache was not changed" in err
        for w in words:
            assert w in err, err
        assert env.files_in_cache() == []

    good = env.tmp / "Downloads" / "tiny (1).safetensors"  # as a browser names a second copy
    good.parent.mkdir()
    good.write_bytes(env.data)
    out = env.run("models", "download", NAME, "--file", good)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{NAME}\t{env.cached}\n" and env.cached.read_bytes() == env.data
    assert good.exists()  # copied, not moved
    used = env.run("sr", "x2", img, "--model", NAME, "--offline", "--device", "cpu")
    assert used.returncode == 0, used.stderr
    assert env.server.requests == []

    stamp = env.cached.stat().st_mtime_ns
    out = env.run("models", "download", NAME, "--file", bad)
    assert out.returncode == 1 and "the cache was not changed" in out.stderr
    assert env.cached.read_bytes() == env.data and env.cached.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in env.cached.parent.iterdir()) == [FILENAME]


def test_file_option_misuse_is_a_usage_error(env):
    good = env.tmp / "good.safetensors"
    good.write_bytes(env.data)
    env.register("hub.sr-x2", "/", source=HubSource("org/name", FILENAME, "0" * 40))
    for args, words in ((("models", "download", NAME, NAME, "--file", good), "exactly one NAME"),
                        (("models", "download", "--all", "--file", good), "not with --all"),
                        (("models", "download", "hub.sr-x2", "--file", good),
                         "'hub.sr-x2' is a hub entry")):
        out = env.run(*args)
        assert out.returncode == 2, out.stderr
        assert words in _one_line_error(out)
    assert env.files_in_cache() == [] and env.server.requests == []


# -- the registry format -----------------------------------------------------------------------

def _doc(**source) -> dict:
    spec = make_spec("x.sr-x2", family="swinir", config=TINY, task="sr", license="MIT",
                     description="d", source=UrlSource("https://example.org/x.pth", "x.pth"),
                     sha256="0" * 64, size=1)
    entry = spec.to_data()
    entry["source"] = {**entry["source"], **source}
    entry["source"] = {k: v for k, v in entry["source"].items() if v is not None}
    return {"schema": 1, "models": {"x.sr-x2": entry}}


@pytest.mark.parametrize("source,needle", [
    (dict(url="http://example.org/x.pth"), "must be an https:// address (http:// only to"),
    (dict(url="ftp://example.org/x.pth"), "must be an https:// address"),
    (dict(url="example.org/x.pth"), "must be an https:// address"),
    (dict(url="https:///x.pth"), "is malformed (expected https://HOST/PATH"),
    (dict(url="https://example.org/a b.pth"), "no spaces"),
    (dict(url="https://me:secret@example.org/x.pth"), "must not hold a user name or password"),
    (dict(url="https://example.org:port/x.pth"), "is not a URL"),
    (dict(url=None), "missing key 'url'"),
    (dict(filename="weights/x.pth"), "a plain file name (no folders)"),
    (dict(filename=".."), "a plain file name"),
    (dict(filename=None), "missing key 'filename'"),
    (dict(path="x.pth"), "unknown key(s) 'path'"),
])
def test_bad_url_sources_name_file_entry_and_key(source, needle):
    with pytest.raises(ConfigError) as info:
        parse_registry(_doc(**source), "reg.toml", strict=False)
    msg = str(info.value)
    assert msg.startswith('reg.toml: [models."x.sr-x2"]: source') and needle in msg, msg


def test_loopback_http_and_https_are_accepted():
    for url in ("https://example.org/x.pth", "http://127.0.0.1:8000/x", "http://localhost/x",
                "http://[::1]:9/x", "https://drive.usercontent.google.com/download?id=1&confirm=t"):
        spec = parse_registry(_doc(url=url), "reg.toml", strict=False).models["x.sr-x2"]
        assert spec.source == UrlSource(url, "x.pth")


def test_a_url_entry_round_trips_through_toml_and_the_user_registry(tmp_path, monkeypatch):
    spec = parse_registry(_doc(url="https://example.org/d?id=1&export=download"),
                          "reg.toml", strict=False).models["x.sr-x2"]
    again = parse_registry({"schema": 1, **toml_loads(entry_toml(spec))}, "reg.toml",
                           strict=False)
    assert again.models["x.sr-x2"] == spec
    path = add_user_entry(spec)
    loaded = load_registry().get("x.sr-x2")
    assert loaded.source == spec.source and loaded.origin == str(path)
    assert loaded.to_data() == spec.to_data()
    assert download_path(spec.sha256, "x.pth") == tmp_path / "cache" / "downloads" / (
        "0" * 64) / "x.pth"
    monkeypatch.delenv("RESTORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download_path("a" * 64, "f") == tmp_path / "xdg" / "restore" / "downloads" / (
        "a" * 64) / "f"


# -- the DRCT entries ----------------------------------------------------------------------------

def _published() -> dict:
    if not DRCT_PUBLISHED.is_file():
        if in_ci():
            pytest.fail(f"{DRCT_PUBLISHED} is missing")
        pytest.skip(f"{DRCT_PUBLISHED} is not available")
    return json.loads(DRCT_PUBLISHED.read_text())


DRCT = {"drct.sr-x4": ("drct_x4", "DRCT_X4.pth", "1jw2UWAersWZecPq-c_g5RM3mDOoc_cbd"),
        "drct-l.sr-x4": ("drct_l_x4", "DRCT-L_X4.pth", "1bVxvA6QFbne2se0CQJ-jyHFy94UOi3h5")}


def _drct_entries():
    # strict: what the shipped registry demands (params, PSNR)
    return parse_registry(read_toml(DRCT_ENTRIES), str(DRCT_ENTRIES)).models


@pytest.mark.parametrize("name", sorted(DRCT))
def test_the_drct_entries_fit_the_published_checkpoints(name):
    """The config of each proposed entry builds the architecture whose state dict has
    exactly the keys and shapes of the published file (the reference's recomputed buffers
    aside), with the published parameter count."""
    spec = _drct_entries()[name]
    ref_name, filename, drive_id = DRCT[name]
    ref = _published()[ref_name]
    with torch.device("meta"):
        model = build(spec.family, **spec.config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: v for k, v in ref["state_dict"].items() if not k.endswith(RECOMPUTED_SUFFIXES)}
    assert sorted(set(theirs) - set(ours)) == [], "keys the published file has and we lack"
    assert sorted(set(ours) - set(theirs)) == [], "keys we have and the published file lacks"
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == spec.params
    assert spec.config_dict() == ref["kwargs"] and spec.family == ref["family"]
    assert (spec.norm, spec.scale, spec.fp16_safe, spec.license) == ("layernorm", 4, False, "MIT")
    assert spec.source == UrlSource(
        f"https://drive.usercontent.google.com/download?id={drive_id}&export=download&confirm=t",
        filename)
    assert spec.source.describe() == f"url:drive.usercontent.google.com/...{filename}"


def test_the_drct_entries_agree_with_the_presets_and_weights_toml():
    """The entries carry what the drct presets say (config, params, PSNR, training); once
    they are in weights.toml, weights.toml holds exactly these."""
    entries = _drct_entries()
    assert sorted(entries) == sorted(DRCT)
    reg = load_registry()
    for name, spec in entries.items():
        preset = reg.preset({"drct.sr-x4": "drct-x4", "drct-l.sr-x4": "drct-l-x4"}[name])
        assert spec.config_dict() == preset.config_dict()
        assert (spec.params, dict(spec.psnr), spec.psnr_source, spec.training,
                spec.description) == (preset.params, dict(preset.psnr), preset.psnr_source,
                                      preset.training, preset.description)
    shipped = read_registry()["models"]
    for name, spec in entries.items():
        if name in shipped:
            assert shipped[name] == read_toml(DRCT_ENTRIES)["models"][name], name

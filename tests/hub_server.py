"""A local HTTP server that speaks the parts of the Hugging Face Hub protocol that
huggingface_hub (2.x) uses to download and upload files, for tests (no network).

Download (``hf_hub_download`` with ``HF_ENDPOINT`` pointing here):
  HEAD/GET /{org}/{name}/resolve/{revision}/{path}
    - LFS files (the default for weights): 302 to a second server on another port (a "CDN",
      so huggingface_hub does not follow it and takes the metadata from the redirect), with
      X-Repo-Commit, X-Linked-Etag (the sha256), X-Linked-Size, ETag.
    - regular files: 200 with X-Repo-Commit, ETag (the git blob sha1), Content-Length.
    - unknown repo / revision / file: 404 with X-Error-Code RepoNotFound / RevisionNotFound /
      EntryNotFound (what huggingface_hub maps to its error types).
    No X-Xet-Hash header is ever sent, so huggingface_hub takes the plain HTTP path even
    with hf_xet installed.
  GET /cdn/{sha256} (the CDN): the bytes, with Range requests (206 + Content-Range).
  Faults for tests: ``tamper`` serves the blob with one byte flipped (same size: what a
  broken mirror or proxy would do); ``cut_after`` sends that many bytes of the body and
  drops the connection, after which the server is ``down`` (500 on every request) until
  ``down`` is cleared.

Upload (``HfApi().create_repo`` / ``create_commit`` / ``upload_file``):
  POST /api/repos/create, POST /api/validate-yaml, POST /api/models/{repo}/preupload/{rev}
  (files >= 1 KiB and *.safetensors are "lfs", others "regular"), POST
  /{repo}.git/info/lfs/objects/batch (basic transfer: PUT to /lfs-upload/{oid}, then POST
  /lfs-verify), POST /api/models/{repo}/commit/{rev} (NDJSON; "file" entries inline in
  base64, "lfsFile" entries by oid). With ``token`` set, writes need
  ``Authorization: Bearer <token>``. The Xet upload protocol is not implemented: run
  uploads with HF_HUB_DISABLE_XET=1 so that huggingface_hub uses LFS.

Every request is recorded in ``requests`` as (server, method, path).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_MIN_SIZE = 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Repo:
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_PREUPLOAD = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)$")
_COMMIT = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)$")
_LFS_BATCH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")


class HubServer:
    """Start with ``with HubServer() as hub:``; ``hub.endpoint`` is the HF_ENDPOINT."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.auth_seen: list[str | None] = []
        self.cards: list[str] = []
        self.tamper = False
        self.cut_after: int | None = None
        self.down = False
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> HubServer:
        for role in ("hub", "cdn"):
            srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self._servers.append(srv)
        return self

    def __exit__(self, *exc) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- content -----------------------------------------------------------------------
    def commit(self, repo_id: str, files: dict[str, bytes], *, lfs: bool | None = None,
               branch: str = "main") -> str:
        """Add ``files`` to ``repo_id`` (created if needed) as a new commit; its hash."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.refs.get(branch, "")
            tree = dict(repo.commits.get(parent, {}))
            for path, data in files.items():
                is_lfs = lfs if lfs is not None else (len(data) >= LFS_MIN_SIZE
                                                      or path.endswith(".safetensors"))
                tree[path] = StoredFile(data, is_lfs)
                if is_lfs:
                    self.blobs[hashlib.sha256(data).hexdigest()] = data
            return self._new_commit(repo, branch, parent, tree)

    def _new_commit(self, repo: Repo, branch: str, parent: str, tree: dict) -> str:
        h = hashlib.sha1(parent.encode())
        for path in sorted(tree):
            h.update(path.encode() + b"\0" + git_blob_sha1(tree[path].data).encode())
        sha = h.hexdigest()
        repo.commits[sha] = tree
        repo.refs[branch] = sha
        return sha

    def count(self, method: str | None = None, role: str | None = None) -> int:
        return sum(1 for r, m, _ in self.requests
                   if (method is None or m == method) and (role is None or r == role))


def _handler(server: HubServer, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        # -- helpers ---------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
                  head: bool = False) -> None:
            self.send_response(status)
            hdrs = {"Content-Length": str(len(body)), **(headers or {})}
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.end_headers()
            if body and not head:
                self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None,
                  head: bool = False) -> None:
            self._send(status, json.dumps(obj).encode(),
                       {"Content-Type": "application/json", **(headers or {})}, head=head)

        def _error(self, status: int, code: str | None, message: str, head: bool = False,
                   headers: dict | None = None) -> None:
            hdrs = {"X-Error-Message": message, **(headers or {})}
            if code:
                hdrs["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(),
                       {"Content-Type": "application/json", **hdrs}, head=head)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization")
            server.auth_seen.append(auth)
            if server.token is None or auth == f"Bearer {server.token}":
                return True
            self._error(401, None, "Invalid credentials in Authorization header")
            return False

        def _record(self) -> str:
            path = urlsplit(self.path).path
            with server.lock:
                server.requests.append((role, self.command, path))
            return path

        # -- verbs -----------------------------------------------------------------
        def do_HEAD(self) -> None:
            self._get(head=True)

        def do_GET(self) -> None:
            self._get(head=False)

        def _get(self, head: bool) -> None:
            path = self._record()
            if server.down:
                self._error(500, None, "server is down", head=head)
                return
            if role == "cdn":
                m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
                if not m or m.group(1) not in server.blobs:
                    self._error(404, None, "no such object", head=head)
                    return
                self._serve_bytes(server.blobs[m.group(1)], head, {"ETag": f'"{m.group(1)}"'})
                return
            if path == "/api/agent-harnesses":  # huggingface_hub's user-agent telemetry
                self._json(200, {"standardEnvVars": [], "harnesses": {}}, head=head)
                return
            m = _RESOLVE.match(path)
            if not m:
                self._error(404, None, f"no route for {path}", head=head)
                return
            repo_id, rev, fpath = m.group("repo"), unquote(m.group("rev")), unquote(m.group("path"))
            repo = server.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", head=head)
                return
            commit = repo.refs.get(rev, rev)
            if commit not in repo.commits:
                self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
                return
            stored = repo.commits[commit].get(fpath)
            if stored is None:
                self._error(404, "EntryNotFound", "Entry not found", head=head,
                            headers={"X-Repo-Commit": commit})
                return
            if stored.lfs:
                self._send(302, b"", {
                    "Location": f"{server.cdn}/cdn/{stored.sha256}",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{stored.sha256}"',
                    "X-Linked-Size": str(len(stored.data)),
                    "ETag": f'"{git_blob_sha1(stored.data)}"',
                }, head=head)
                return
            self._serve_bytes(stored.data, head, {"X-Repo-Commit": commit,
                                                  "ETag": f'"{git_blob_sha1(stored.data)}"'})

        def _serve_bytes(self, data: bytes, head: bool, headers: dict) -> None:
            if server.tamper:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start, status, extra = 0, 200, {}
            rng = self.headers.get("Range")
            if rng:
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                if m:
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else len(data) - 1
                    status = 206
                    extra["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    data_out = data[start:end + 1]
                else:
                    data_out = data
            else:
                data_out = data
            hdrs = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                    **headers, **extra}
            if head or server.cut_after is None:
                self._send(status, data_out, hdrs, head=head)
                return
            # send part of the body, then drop the connection and go down
            self.send_response(status)
            for k, v in {"Content-Length": str(len(data_out)), **hdrs}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data_out[:server.cut_after])
            self.wfile.flush()
            server.down = True
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_PUT(self) -> None:
            path = self._record()
            body = self._body()
            m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)
            if not m:
                self._error(404, None, f"no route for {path}")
                return
            if hashlib.sha256(body).hexdigest() != m.group(1):
                self._error(400, None, "content does not match the oid")
                return
            with server.lock:
                server.blobs[m.group(1)] = body
            self._send(200)

        def do_POST(self) -> None:
            path = self._record()
            body = self._body()
            if server.down:
                self._error(500, None, "server is down")
                return
            if path == "/api/validate-yaml":
                card = json.loads(body)["content"]
                server.cards.append(card)
                ok = card.startswith("---\n") and "\n---\n" in card[4:]
                self._json(200 if ok else 400, {"errors": [] if ok else [
                    {"message": "no YAML metadata block"}], "warnings": []})
                return
            if not self._authorized():
                return
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") \
                    else req["name"]
                with server.lock:
                    if repo_id in server.repos:
                        self._error(409, None, "You already created this model repo")
                        return
                    repo = server.repos[repo_id] = Repo()
                    server._new_commit(repo, "main", "", {
                        ".gitattributes": StoredFile(b"*.safetensors filter=lfs\n", False)})
                self._json(200, {"url": f"{server.endpoint}/{repo_id}", "name": repo_id})
                return
            if m := _PREUPLOAD.match(path):
                if m.group("repo") not in server.repos:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                files = json.loads(body)["files"]
                self._json(200, {"files": [
                    {"path": f["path"], "shouldIgnore": False, "oid": None,
                     "uploadMode": "lfs" if f["size"] >= LFS_MIN_SIZE
                     or f["path"].endswith(".safetensors") else "regular"} for f in files]})
                return
            if m := _LFS_BATCH.match(path):
                req = json.loads(body)
                objects = []
                for obj in req["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if obj["oid"] not in server.blobs:
                        entry["actions"] = {
                            "upload": {"href": f"{server.endpoint}/lfs-upload/{obj['oid']}"},
                            "verify": {"href": f"{server.endpoint}/lfs-verify"}}
                    objects.append(entry)
                self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                           {"Content-Type": "application/vnd.git-lfs+json"})
                return
            if path == "/lfs-verify":
                req = json.loads(body)
                ok = req["oid"] in server.blobs and len(server.blobs[req["oid"]]) == req["size"]
                self._json(200 if ok else 404, {})
                return
            if m := _COMMIT.match(path):
                self._commit(m.group("repo"), unquote(m.group("rev")), body)
                return
            self._error(404, None, f"no route for {path}")

        def _commit(self, repo_id: str, branch: str, body: bytes) -> None:
            with server.lock:
                repo = server.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found")
                    return
                parent = repo.refs.get(branch, "")
                tree = dict(repo.commits.get(parent, {}))
                for line in body.splitlines():
                    item = json.loads(line)
                    key, value = item["key"], item["value"]
                    if key == "file":
                        tree[value["path"]] = StoredFile(base64.b64decode(value["content"]), False)
                    elif key == "lfsFile":
                        data = server.blobs.get(value["oid"])
                        if data is None:
                            self._error(400, None, f"LFS object {value['oid']} was not uploaded")
                            return
                        tree[value["path"]] = StoredFile(data, True)
                    elif key == "deletedFile":
                        tree.pop(value["path"], None)
                sha = server._new_commit(repo, branch, parent, tree)
            self._json(200, {"commitUrl": f"{server.endpoint}/{repo_id}/commit/{sha}",
                             "commitOid": sha, "success": True})

    return Handler

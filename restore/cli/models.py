"""``restore models``: the model registry from the command line.

list / info / presets read the registry (and look at the caches) without any network;
download / verify fetch and check weights (download --file puts a url entry's file that
you downloaded by hand in place); import registers a checkpoint you downloaded
(official SwinIR/HAT/DRCT, the i-LN authors' files) in the user registry; push uploads one to
the Hugging Face Hub. Results go to stdout, notes and progress to stderr; batch commands
(download, verify) go on past a failure and exit 1 at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app

models_app = typer.Typer(
    help="The model registry: list and describe models and presets, download, verify, import and push weights.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

OfflineOpt = Annotated[bool, typer.Option(
    "--offline", help="Use only the cache (as HF_HUB_OFFLINE=1); say what is missing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]


def _note(msg: str) -> None:
    print(msg, file=sys.stderr)


def _fail(exc: BaseException) -> int:
    """Report a library error of one item of a batch; returns its exit code."""
    from .app import error_exit_code

    print(f"restore: error: {exc}", file=sys.stderr)
    return error_exit_code(exc)


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def _psnr_brief(spec) -> str:
    if not spec.psnr:
        return "-"
    bench, value = next(iter(spec.psnr.items()))
    kind = "published" if spec.psnr_source.startswith("published") else "measured"
    return f"{bench} {value:.2f} ({kind})"


def _source_brief(spec) -> str:
    """The SOURCE column: the kind, and the Hub repo or the URL's host."""
    src = spec.source
    where = src.repo_id if src.kind == "hub" else src.host if src.kind == "url" else ""
    return f"{src.kind}:{where}" if where else src.kind


def _cached(spec) -> Path | None:
    from ..registry import cached_path

    return cached_path(spec)


def _spec_json(spec, reg, cached: Path | None) -> dict:
    return {
        "name": spec.name, "description": spec.description, "task": spec.task.value,
        "task_key": spec.task_key, "scale": spec.scale, "family": spec.family,
        "norm": spec.norm, "in_chans": spec.in_chans, "params": spec.params,
        "sigma_range": list(spec.sigma_range) if spec.sigma_range else None,
        "quality_range": list(spec.quality_range) if spec.quality_range else None,
        "license": spec.license, "fp16_safe": spec.fp16_safe, "training": spec.training,
        "source": spec.source.to_data(), "sha256": spec.sha256, "size": spec.size,
        "cached": cached is not None, "path": str(cached) if cached else None,
        "psnr": dict(spec.psnr), "psnr_source": spec.psnr_source,
        "default_for": reg.defaults_of(spec.name), "origin": spec.origin,
        "config": spec.config_dict(),
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


@models_app.command("list")
def list_cmd(
    task: Annotated[Optional[str], typer.Option(
        "--task", help="Only this task: sr, denoise, jpeg, or sr-x2/sr-x3/sr-x4.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the registry (shipped and user entries): task, size, source, cached, PSNR."""
    from ..registry import TASK_KEYS, load_registry

    reg = load_registry()
    specs = reg.for_task(task)
    cached = {s.name: _cached(s) for s in specs}
    if as_json:
        print(json.dumps([_spec_json(s, reg, cached[s.name]) for s in specs], indent=1))
        return
    rows = [["NAME", "TASK", "PARAMS", "NORM", "SOURCE", "CACHED", "PSNR"]]
    for s in specs:
        mark = " *" if reg.defaults_of(s.name) else ""
        rows.append([s.name + mark, s.task_key, _params(s.params), s.norm, _source_brief(s),
                     "yes" if cached[s.name] else "no", _psnr_brief(s)])
    if len(rows) > 1:
        print(_table(rows))
    else:
        _note(f"no models for task {task!r}")
    keys = [k for k in TASK_KEYS if task is None or k == task or k.split("-")[0] == task]
    missing = [k for k in keys if not reg.defaults.get(k)]
    if any(reg.defaults_of(s.name) for s in specs):
        _note("* default model of its task")
    if missing:
        _note(f"no default model yet for: {', '.join(missing)} (pass --model NAME)")


@models_app.command("info")
def info_cmd(
    name: Annotated[str, typer.Argument(help="A registry name (see 'restore models list').")],
    as_json: JsonOpt = False,
) -> None:
    """Everything the registry knows about one model, and where its file is."""
    from ..registry import HubSource, UrlSource, load_registry

    reg = load_registry()
    spec = reg.get(name)
    cached = _cached(spec)
    data = _spec_json(spec, reg, cached)
    if isinstance(spec.source, HubSource):
        from .. import hub

        data["url"] = hub.file_url(spec.source.repo_id, spec.source.filename,
                                   spec.source.revision)
    elif isinstance(spec.source, UrlSource):
        data["url"] = spec.source.url
    if as_json:
        print(json.dumps(data, indent=1))
        return
    lines = [f"{spec.name}: {spec.description}",
             f"  task        {spec.task_key}"
             + (f", sigma {spec.sigma_range[0]:g}-{spec.sigma_range[1]:g}"
                if spec.sigma_range else "")
             + (f", quality {spec.quality_range[0]}-{spec.quality_range[1]}"
                if spec.quality_range else ""),
             f"  default for {', '.join(data['default_for']) or '-'}",
             f"  arch        {spec.family}, norm {spec.norm}, {spec.in_chans} channel(s), "
             f"{spec.params:,} parameters" if spec.params else
             f"  arch        {spec.family}, norm {spec.norm}, {spec.in_chans} channel(s)",
             f"  fp16        {'safe' if spec.fp16_safe else 'not safe (fp32 or bf16)'}",
             f"  licence     {spec.license}",
             f"  training    {spec.training or '-'}",
             f"  source      {spec.source.describe()}"]
    if "url" in data:
        lines.append(f"  url         {data['url']}")
    lines += [f"  sha256      {spec.sha256}", f"  size        {spec.size:,} bytes",
              f"  cached      {cached if cached else 'no'}",
              f"  registry    {spec.origin}"]
    if spec.psnr:
        lines.append("  PSNR (dB)   " + ", ".join(f"{b} {v:.2f}" for b, v in spec.psnr.items())
                     + f"  [{spec.psnr_source}]")
    lines.append("  config      " + json.dumps(spec.config_dict()))
    print("\n".join(lines))


@models_app.command("presets")
def presets_cmd(as_json: JsonOpt = False) -> None:
    """The architecture presets that 'restore models import --family' accepts."""
    from ..registry import load_registry

    reg = load_registry()
    if as_json:
        print(json.dumps({p.name: {"family": p.family, "norm": p.norm, "task": p.task.value,
                                   "params": p.params, "description": p.description,
                                   "config": p.config_dict()} for p in reg.presets.values()},
                         indent=1))
        return
    rows = [["PRESET", "FAMILY", "NORM", "TASK", "PARAMS", "DESCRIPTION"]]
    rows += [[p.name, p.family, p.norm, p.task.value, _params(p.params), p.description]
             for p in reg.presets.values()]
    print(_table(rows))


@models_app.command("download")
def download_cmd(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Registry names (see 'restore models list').", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry of the registry.")] = False,
    offline: OfflineOpt = False,
    file: Annotated[Optional[Path], typer.Option(
        "--file", help="A url entry's file that you downloaded by hand (e.g. in a browser, "
                       "from Google Drive): checked against the entry's sha256 and size and "
                       "copied into restore's download cache. With exactly one NAME.",
        show_default=False)] = None,
) -> None:
    """Download (Hub and url entries) and verify weights; prints each verified local path.

    Hub files go to the Hugging Face cache, url files to restore's download cache
    ($RESTORE_CACHE_DIR, else $XDG_CACHE_HOME/restore, else ~/.cache/restore). Where a
    download cannot work (Google Drive answers with a quota page), download the URL that
    'restore models info NAME' shows by hand and pass it with --file.
    """
    from ..errors import RestoreError, UsageError
    from ..registry import install_file, load_registry, resolve_weights

    reg = load_registry()
    if file is not None:
        if all_ or len(names or []) != 1:
            raise UsageError("--file goes with exactly one NAME (the entry whose file it is), "
                             "not with --all")
        path = install_file(reg.get(names[0]), file)
        print(f"{names[0]}\t{path}")
        return
    if all_:
        names = list(reg.models)
    if not names:
        raise UsageError("name at least one model (see 'restore models list'), or pass --all")
    code = 0
    for name in names:
        try:
            path = resolve_weights(reg.get(name), offline=offline)
        except RestoreError as exc:
            code = max(code, _fail(exc))
            continue
        print(f"{name}\t{path}")
    if code:
        raise typer.Exit(code)


@models_app.command("verify")
def verify_cmd(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Registry names (default: every entry).", show_default=False)] = None,
    load: Annotated[bool, typer.Option(
        "--load", help="Also build each model and load its weights strictly.")] = False,
) -> None:
    """Hash the local weights files again (no download).

    Checks every cached Hub or url file, embedded file and imported file (or the NAMEs
    given) against its sha256 and size; a downloaded file that fails is deleted from its
    cache.
    """
    from ..errors import RestoreError
    from ..registry import load_registry, load_registry_model, verify_cached

    reg = load_registry()
    specs = [reg.get(n) for n in names] if names else list(reg.models.values())
    code, checked = 0, 0
    for spec in specs:
        try:
            path = verify_cached(spec)
            if path is None:
                _note(f"{spec.name}: not on this machine (restore models download {spec.name})")
                continue
            if load:
                load_registry_model(spec, offline=True)
        except RestoreError as exc:
            code = max(code, _fail(exc))
            continue
        checked += 1
        print(f"{spec.name}\tok\t{path}")
    _note(f"{checked} file(s) verified" + (", some failed" if code else ""))
    if code:
        raise typer.Exit(code)


def _parse_config(values: list[str]) -> dict:
    """--config '{"embed_dim": 96}' and/or --config key=value (value parsed as JSON when it
    is JSON, else kept as a string)."""
    from ..errors import UsageError

    out: dict = {}
    for value in values:
        text = value.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--config {value!r}: not valid JSON ({exc})") from None
            out.update(obj)
            continue
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--config {value!r}: expected KEY=VALUE or a JSON object")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _parse_psnr(values: list[str]) -> dict[str, float]:
    from ..errors import UsageError

    out = {}
    for value in values:
        bench, sep, raw = value.partition("=")
        try:
            if not sep or not bench.strip():
                raise ValueError
            out[bench.strip()] = float(raw)
        except ValueError:
            raise UsageError(f"--psnr {value!r}: expected BENCHMARK=DB, e.g. Set5=32.9") from None
    return out


def _parse_range(value: str | None, what: str, integer: bool):
    from ..errors import UsageError

    if value is None:
        return None
    parts = value.split(",") if "," in value else [value, value]
    try:
        nums = [int(p) if integer else float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 2:
        raise UsageError(f"{what} {value!r}: expected LOW,HIGH (or one value)")
    return tuple(nums)


@models_app.command("import", no_args_is_help=True)
def import_cmd(
    path: Annotated[Path, typer.Argument(help="The checkpoint: .pth/.pt (BasicSR params/"
                                              "params_ema, or a bare state dict) or .safetensors.",
                                         show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The registry name to give it.")],
    family: Annotated[Optional[str], typer.Option(
        "--family", help="A preset (see 'restore models presets'), or swinir/hat/hat_iln/"
                         "drct with --config (default: read from a restore .safetensors "
                         "file, or from the keys of a DRCT checkpoint).")] = None,
    config: Annotated[Optional[list[str]], typer.Option(
        "--config", help="Architecture arguments: a JSON object or KEY=VALUE (repeatable); "
                         "with a preset, they override its values.")] = None,
    task: Annotated[Optional[str], typer.Option(
        "--task", help="sr, denoise or jpeg (default: from the preset or the scale).")] = None,
    license_: Annotated[Optional[str], typer.Option(
        "--license",
        help="Licence of the weights (default: the preset's, else 'unknown').")] = None,
    description: Annotated[Optional[str], typer.Option("--description")] = None,
    psnr: Annotated[Optional[list[str]], typer.Option(
        "--psnr", help="BENCHMARK=DB (repeatable), e.g. Set5=32.92.")] = None,
    psnr_source: Annotated[str, typer.Option(
        "--psnr-source", help="Where the --psnr values come from.")] = "measured",
    sigma_range: Annotated[Optional[str], typer.Option(
        "--sigma-range", help="denoise: noise levels it handles, LOW,HIGH or one value.")] = None,
    quality_range: Annotated[Optional[str], typer.Option(
        "--quality-range", help="jpeg: qualities it handles, LOW,HIGH or one value.")] = None,
    fp16_safe: Annotated[bool, typer.Option(
        "--fp16-safe", help="Mark it safe to run in fp16 (only after checking).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a user entry of that name.")] = False,
) -> None:
    """Register a checkpoint you downloaded, so that --model NAME works.

    The file is read without running code (weights only), loaded strictly into
    the architecture (a preset or --family/--config; without --family, a DRCT
    checkpoint's is read from its keys and shapes, img_range 1 unless --config
    says otherwise), converted to safetensors in the user data dir, and added to
    the user registry.
    """
    from ..registry import import_checkpoint, load_registry, user_registry_path

    shipped = load_registry().models.get(name)
    spec = import_checkpoint(
        path, name, family=family, config=_parse_config(config or []), task=task,
        license=license_, description=description, psnr=_parse_psnr(psnr or []),
        psnr_source=psnr_source, fp16_safe=fp16_safe,
        sigma_range=_parse_range(sigma_range, "--sigma-range", integer=False),
        quality_range=_parse_range(quality_range, "--quality-range", integer=True),
        replace=force)
    if shipped is not None and shipped.origin != str(user_registry_path()):
        _note(f"note: {name} now overrides the entry of {shipped.origin}")
    _note(f"registered {name} in {user_registry_path()} (weights: {spec.source.path}, "
          f"{spec.params:,} parameters); use it with --model {name}")
    from ..registry import entry_toml

    print(entry_toml(spec), end="")


@models_app.command("push", no_args_is_help=True)
def push_cmd(
    name: Annotated[str, typer.Argument(help="The registry name of the model to upload.")],
    repo: Annotated[str, typer.Option("--repo", help="The Hub model repo, ORG/NAME "
                                                     "(created if needed).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    message: Annotated[Optional[str], typer.Option("--message", help="Commit message.")] = None,
) -> None:
    """Upload a model and its model card to the Hugging Face Hub.

    Uploads the safetensors file and a README.md (licence, tags, evaluation table) in one
    commit (HF_TOKEN and HF_ENDPOINT apply), then prints the weights.toml entry pinned to
    that commit.
    """
    import dataclasses
    import tempfile

    from .. import hub
    from ..errors import UsageError
    from ..registry import (
        RESTORE_FORMAT, HubSource, entry_toml, load_registry, load_registry_model, model_card,
        resolve_weights, safetensors_metadata, sha256_file,
    )

    if "/" not in repo:
        raise UsageError(f"--repo {repo!r}: expected ORG/NAME")
    spec = load_registry().get(name)
    path = resolve_weights(spec)
    filename = f"{name}.safetensors"
    with tempfile.TemporaryDirectory(prefix="restore-push-") as tmp:
        meta = safetensors_metadata(path) if path.suffix == ".safetensors" else {}
        if meta.get("format") != RESTORE_FORMAT:
            # a .pth (or foreign) file: convert, so the Hub copy carries its config
            from ..checkpoint import save_model

            _note(f"converting {path.name} to safetensors")
            path = save_model(load_registry_model(spec), Path(tmp) / filename, {"name": name})
        card = model_card(spec, filename)
        _note(f"uploading {filename} ({path.stat().st_size:,} bytes) and README.md to {repo}")
        commit, url = hub.push(repo, {filename: path, "README.md": card.encode()},
                               message=message or f"Add {name} (restore)", private=private)
        pushed = dataclasses.replace(
            spec, source=HubSource(repo_id=repo, filename=filename, revision=commit),
            sha256=sha256_file(path), size=path.stat().st_size)
    _note(f"pushed to {url}; add this entry to weights.toml:")
    print(entry_toml(pushed), end="")

"""The model registry: weights.toml -> frozen typed specs, verified weights, loaded models.

One module per concern, imports pointing down the list: ``schema`` (the typed form),
``paths`` (where the files are), ``parse`` (TOML -> specs), ``layers`` (the shipped
registry with the user's merged over it), ``sources`` (verified weights, downloads, the
built model), ``writing`` (registry TOML out, the user registry), ``importing`` (`restore
models import`), ``cards`` (model cards for `restore models push`). The names the rest of
restore uses are re-exported here.

The registry lives at the repository root and inside the installed wheel as
``restore/weights.toml``; an installed ``restore`` reads the packaged copy, a source
checkout (editable install) the one at the root. ``$RESTORE_REGISTRY`` names another file
to use instead (a mirror, or a test). A user registry (same format, written by
``restore models import``) is merged over it: ``$RESTORE_CONFIG_DIR/registry.toml``, else
``$XDG_CONFIG_HOME/restore/registry.toml``, else ``~/.config/restore/registry.toml``; the
files it imports live under ``$RESTORE_DATA_DIR``, else ``$XDG_DATA_HOME/restore``, else
``~/.local/share/restore``. The files of url entries are downloaded into restore's own
cache, ``downloads/<sha256>/<filename>`` under ``$RESTORE_CACHE_DIR``, else
``$XDG_CACHE_HOME/restore``, else ``~/.cache/restore``. (These paths are the one place
below the CLI that reads the environment: every caller of ``load_registry()`` must see the
same registry.)

Format (schema 1)::

    schema = 1
    [defaults]                      # task key -> model name ("" = none yet)
    "sr-x4" = ""
    jpeg = ["a.jpeg", "a.jpeg-hq"]  # denoise/jpeg: or several, each for its declared range
                                    # (picked per image: see pick_by_level)
    [models."swinir-m.sr-x4"]       # family[-norm]-size.task[-training]
    description = "one line"
    family = "swinir"               # restore.archs.build(family, **config)
    norm = "layernorm"              # or "iln"; must agree with the config
    task = "sr"                     # "sr" | "denoise" | "jpeg"
    scale = 4                       # sr only, == config.upscale
    sigma_range = [0, 50]           # denoise only (optional)
    quality_range = [10, 40]        # jpeg only (optional)
    license = "Apache-2.0"
    params = 11900199
    fp16_safe = false
    training = "DF2K"               # optional
    sha256 = "<64 hex>"
    size = 67869037                 # bytes
    source = { kind = "hub", repo_id = "org/name", filename = "f.pth", revision = "<40 hex>" }
                                    # or { kind = "url", url = "https://...", filename =
                                    # "f.pth" } (a plain HTTPS download; http only to
                                    # localhost; filename: the name it is kept under)
                                    # or { kind = "embedded", path = "models/x.safetensors" }
                                    # (inside the package) or { kind = "file", path = "..." }
                                    # (user registry: absolute, or under the data dir)
    psnr = { Set5 = 32.92 }         # benchmark -> dB (Y channel for SR)
    psnr_source = "published"       # or "measured", or a sentence saying where from
    [models."swinir-m.sr-x4".config]
    upscale = 4 ...                 # the reference constructor arguments
    [presets."swinir-m-x4"]         # named configs for `restore models import --family`
    family = "swinir" ...

Parsing needs no torch: configs are checked against the architecture when a model is
built (and every shipped entry is built by the tests).

Weights are verified by sha256 and size after a download and before the first load in a
process (a file that changed on disk is hashed again); a downloaded file that fails is
deleted from its cache. Hub downloads go through ``restore.hub`` into the standard Hugging
Face cache (HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE apply); url
downloads through ``restore.fetch`` (urllib: verified while written, renamed into place
only when whole; HF_HUB_OFFLINE stops them too). A url file downloaded by hand (Google
Drive's quota pages) is put in place with ``install_file`` (`restore models download NAME
--file PATH`).
"""

from __future__ import annotations

from .schema import (
    FAMILIES, NORMS, SCHEMA, TASK_KEYS, EmbeddedSource, FileSource, HubSource, ModelSpec, Preset,
    Registry, Source, UrlSource, level_range, pick_by_level,
)
from .paths import (
    base_registry_path, download_path, downloads_dir, package_dir, registry_path,
    user_cache_dir, user_config_dir, user_data_dir, user_registry_path,
)
from .parse import RegistryLayer, parse_entry, parse_preset, parse_registry, read_toml, toml_loads
from .layers import load_registry, merge_layers, read_registry
from .sources import (
    RESTORE_FORMAT, cached_path, check_file, install_file, load_registry_model, resolve,
    resolve_weights, safetensors_metadata, sha256_file, verify_cached,
)
from .writing import USER_REGISTRY_HEADER, add_user_entry, dump_registry, entry_toml, make_spec
from .importing import import_checkpoint
from .cards import model_card

__all__ = [
    "FAMILIES", "NORMS", "SCHEMA", "TASK_KEYS", "EmbeddedSource", "FileSource", "HubSource",
    "ModelSpec", "Preset", "Registry", "Source", "UrlSource", "level_range", "pick_by_level",
    "base_registry_path", "download_path", "downloads_dir", "package_dir", "registry_path",
    "user_cache_dir", "user_config_dir", "user_data_dir", "user_registry_path",
    "RegistryLayer", "parse_entry", "parse_preset", "parse_registry", "read_toml",
    "toml_loads", "load_registry", "merge_layers", "read_registry", "RESTORE_FORMAT",
    "cached_path", "check_file", "install_file", "load_registry_model", "resolve",
    "resolve_weights", "safetensors_metadata", "sha256_file", "verify_cached",
    "USER_REGISTRY_HEADER", "add_user_entry", "dump_registry", "entry_toml", "make_spec",
    "import_checkpoint", "model_card",
]

"""Where exact tiling keeps its whole-image feature maps: device, host RAM, or a scratch file.

Exact tiling (restore.engine.exact) needs a few whole maps of the body's width alive at
once: 32 channels of fp32 are 1.5 GB for a 12-megapixel photo, 3 GB at 24 MP. A MapStore
hands out each new map from the first tier with room under its budget:

- the device (CUDA only), while the maps fit in part of its free memory: no transfers;
- host RAM (pinned on CUDA, for fast copies), up to ``ram_budget`` bytes;
- a memory-mapped scratch file beyond that, in ``scratch_dir`` (default: the system's
  temporary folder, $TMPDIR). The file is unlinked as soon as it is created, so nothing is
  left behind on exit, on Ctrl-C or even on a kill; its disk space is freed when the map
  is. Its pages are dropped from the process after each tile (``release``), so they count
  in the page cache, which the kernel writes back and evicts under pressure, not in the
  process's resident memory.

Maps are (1, C, H, W) float32 tensors in channels-last layout (a tile's rows are
contiguous runs of pixels), freed when the last reference goes; the store counts each
tier's bytes until then.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

GIB = 1 << 30
# Host RAM for maps when no cap is given: a quarter of the free memory, at most 1 GiB
# (beyond it, maps go to the page cache through the scratch file at a small cost in time:
# see benchmarks/exact_memory.py).
DEFAULT_RAM_CAP = GIB
DEVICE_SHARE = 0.5  # of the device's free memory at the start, for maps (the rest: tiles)


def free_ram() -> int | None:
    """Available host memory in bytes (MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_ram_budget() -> int:
    free = free_ram()
    return DEFAULT_RAM_CAP if free is None else min(DEFAULT_RAM_CAP, free // 4)


def default_device_budget(device: torch.device) -> int:
    """DEVICE_SHARE of what this process may still allocate on a CUDA device: its free
    memory, and under a ``torch.cuda.set_per_process_memory_fraction`` cap (which
    ``mem_get_info`` does not see) what the cap leaves above the memory reserved so far."""
    free = torch.cuda.mem_get_info(device)[0]
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if fraction is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        capped = int(fraction(device) * total) - torch.cuda.memory_reserved(device)
        free = min(free, max(0, capped))
    return int(free * DEVICE_SHARE)


def parse_size(text: str) -> int:
    """'1.5G', '800M', '2GiB', '0' -> bytes (binary units; a bare number is bytes)."""
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = units.get(s[-1:], 1)
    number = s[:-1] if s[-1:] in units else s
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 2G, 800M)") from None
    if value < 0:
        raise ValueError(f"{text!r}: a size must be >= 0")
    return int(value * mult)


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class MapStore:
    """Allocates exact tiling's whole maps from device, RAM or scratch-file tiers.

    device: where the tiles run. ram_budget: bytes of host RAM the maps may hold (None: the
    default, ``default_ram_budget()``). device_budget: bytes of device memory for maps
    (None: ``default_device_budget``; 0 off CUDA). A device allocation that fails anyway
    sends that map and the next ones to RAM. scratch_dir: where spilled
    maps go (None: the system's temporary folder).
    """

    def __init__(self, device: torch.device, ram_budget: int | None = None,
                 device_budget: int | None = None, scratch_dir: str | os.PathLike | None = None
                 ) -> None:
        self.device = device
        self.budget = {
            "device": (0 if device.type != "cuda" else device_budget if device_budget is not None
                       else default_device_budget(device)),
            "ram": default_ram_budget() if ram_budget is None else int(ram_budget),
            "disk": None,
        }
        self.scratch_dir = Path(scratch_dir) if scratch_dir else None
        self.used = {"device": 0, "ram": 0, "disk": 0}
        self.peak = dict(self.used)
        self.maps = {"device": 0, "ram": 0, "disk": 0}  # how many were handed out
        self._pin = device.type == "cuda"  # pinned host memory: fast copies to the device
        self._lock = threading.Lock()
        self._mmaps: weakref.WeakSet = weakref.WeakSet()

    def empty(self, channels: int, height: int, width: int) -> Tensor:
        """A new (1, channels, height, width) float32 map from the first tier with room."""
        nbytes = 4 * channels * height * width
        t = None
        for tier in ("device", "ram", "disk"):
            budget = self.budget[tier]
            if budget is not None and self.used[tier] + nbytes > budget:
                continue
            t = self._allocate(tier, nbytes, height, width, channels)
            if t is not None:
                break
        t = t.permute(0, 3, 1, 2)  # NCHW shape, channels-last strides
        with self._lock:
            self.used[tier] += nbytes
            self.maps[tier] += 1
            self.peak[tier] = max(self.peak[tier], self.used[tier])
        weakref.finalize(t, self._free, tier, nbytes)  # the caller's tensor: its lifetime
        return t

    def _allocate(self, tier: str, nbytes: int, height: int, width: int, channels: int
                  ) -> Tensor | None:
        """A (1, H, W, C) buffer from ``tier``; None when the device turns out to have no room
        after all (another process, or an allocator cap: its budget is then cut to what it
        holds, and this map and the next go to RAM)."""
        shape = (1, height, width, channels)
        if tier == "disk":
            return self._file_map(nbytes, height, width, channels)
        if tier == "ram":
            if self._pin:
                try:
                    return torch.empty(shape, pin_memory=True)
                except RuntimeError as exc:
                    if not _out_of_memory(exc):
                        raise
                    self._pin = False  # page-locked memory refused: plain RAM still works
            return torch.empty(shape)
        try:
            return torch.empty(shape, device=self.device)
        except RuntimeError as exc:
            if not _out_of_memory(exc):
                raise
            with self._lock:
                self.budget["device"] = self.used["device"]
            return None

    def _free(self, tier: str, nbytes: int) -> None:
        with self._lock:
            self.used[tier] -= nbytes

    def _file_map(self, nbytes: int, height: int, width: int, channels: int) -> Tensor:
        folder = self.scratch_dir or Path(tempfile.gettempdir())
        try:
            with tempfile.TemporaryFile(dir=folder, prefix="restore-exact-") as f:
                f.truncate(nbytes)  # sparse: disk is used as pages are written
                mm = mmap.mmap(f.fileno(), nbytes)
        except OSError as exc:
            raise OSError(f"exact tiling: cannot make a {nbytes / GIB:.1f} GiB scratch file "
                          f"in {folder}: {exc.strerror or exc} (free space there, give "
                          "--exact-memory more RAM, or set TMPDIR)") from None
        self._mmaps.add(mm)
        arr = np.frombuffer(mm, dtype=np.float32).reshape(1, height, width, channels)
        return torch.from_numpy(arr)

    def release(self) -> None:
        """Drop the scratch files' pages from this process (they stay in the page cache,
        written back and evicted by the kernel as it needs): called after each tile."""
        for mm in list(self._mmaps):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (ValueError, OSError):  # closed meanwhile
                pass

"""The inference engine: devices, precision, tiling. Runs any callable; knows no arch."""

from .devices import Precision, autocast, resolve_device, resolve_precision
from .exact import ExactRunner
from .maps import MapStore
from .runner import TILE_AUTO, OutOfMemory, Restorer, RunStats, TileMode
from .tiling import Tile, tile_grid, tile_weights

__all__ = ["TILE_AUTO", "ExactRunner", "MapStore", "TileMode", "OutOfMemory", "Precision", "Restorer", "RunStats", "Tile", "autocast",
           "resolve_device", "resolve_precision", "tile_grid", "tile_weights"]

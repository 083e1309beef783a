"""The inference engine: devices, precision, tiling. Runs any callable; knows no arch."""

from .devices import Precision, autocast, resolve_device, resolve_precision
from .runner import TILE_AUTO, OutOfMemory, Restorer, RunStats
from .tiling import Tile, tile_grid, tile_weights

__all__ = ["TILE_AUTO", "OutOfMemory", "Precision", "Restorer", "RunStats", "Tile", "autocast",
           "resolve_device", "resolve_precision", "tile_grid", "tile_weights"]

"""Per-block feature statistics logged during training: the numbers behind the paper's
Figure 1.

At each validation the loop records, on the first validation image, ``feature_stats`` of
every transformer block (a module whose qualified name ends in ``blocks.<n>``, or
``swin<n>`` for DRCT: ``restore.analysis.stats.BLOCK_NAME``) and appends
``{"step", "image", "blocks": [{"layer", "mean_abs", "max_abs", "entropy", "channels",
"max_entropy"}]}`` to RUN_DIR/stats.jsonl.

The definitions (mean |x|, max |x|, channel entropy in nats of the normalized per-channel
energy) live in ``restore.analysis.stats`` and the reading of stats.jsonl in
``restore.analysis.runs``, which inference uses too (``restore inspect``) and which must not
import this package; they are re-exported here unchanged.
"""

from __future__ import annotations

from ..analysis.runs import format_stats, read_stats
from ..analysis.stats import BLOCK_NAME, block_modules, channel_entropy, feature_stats

__all__ = ["BLOCK_NAME", "block_modules", "channel_entropy", "feature_stats", "format_stats",
           "read_stats"]

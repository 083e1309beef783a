"""The i-LN paper's analysis as a library: feature magnitude, channel entropy and fp16
headroom of a restoration network, on a trained model and over a training run.

The i-LN paper (Lee et al., ICLR 2026, its Figure 1) shows that with per-token LayerNorm the
features of image-restoration transformers grow to ~1e7 and their channel entropy collapses
to ~0. ``restore inspect`` (restore.cli.inspect) and the training loop's stats.jsonl
(restore.train.stats) are built on these modules:

    stats   the statistics of a block (tensor_stats, channel_entropy), the fp16 rule
            (fp16_headroom, fp16_safe, FP16_MARGIN), the forward hooks that collect them
            (block_modules, BLOCK_NAME, forward_stats, feature_stats)
    report  one model measured on probe images: loading (load_for_inspection, model_task),
            inputs (sample_image, prepare_input, Probe), ModelReport (inspect_model,
            format_model_report, its JSON)
    runs    training runs: a run's stats.jsonl (read_stats, format_stats) and several runs
            on shared colour scales (load_runs, RunStats, RunsView, format_runs)
    plots   figures of a report or of runs (plot_model, plot_runs; require_matplotlib)

Import each name from the module that owns it: this package re-exports nothing, so importing
it costs nothing. (Not named ``inspect``: that would shadow the standard library's module.)
"""

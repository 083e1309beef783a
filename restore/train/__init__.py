"""Training: config, data, loop, checkpoints, feature statistics, export.

Never imported by inference modules (the CLI imports it inside the ``train`` command body).
"""

"""The model card (README.md with YAML metadata) of a Hub repository holding one entry's
weights, for `restore models push`.
"""

from __future__ import annotations

import json

from ..tasks import Task
from .schema import ModelSpec


_HUB_LICENSES = {"apache-2.0": "apache-2.0", "mit": "mit", "bsd-3-clause": "bsd-3-clause",
                 "bsd-2-clause": "bsd-2-clause", "cc-by-4.0": "cc-by-4.0",
                 "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0",
                 "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "gpl-3.0": "gpl-3.0"}
_TASK_TAGS = {Task.SR: "super-resolution", Task.DENOISE: "image-denoising",
              Task.JPEG: "jpeg-artifact-removal"}


def model_card(spec: ModelSpec, filename: str) -> str:
    """README.md for a Hub repo holding ``spec``'s safetensors file: YAML metadata (licence,
    tags) and the evaluation table."""
    lic = _HUB_LICENSES.get(spec.license.lower())
    tags = ["image-to-image", _TASK_TAGS[spec.task], spec.family.replace("_iln", ""),
            "i-LN" if spec.norm == "iln" else "layernorm", "safetensors", "restore"]
    meta = ["---", f"license: {lic or 'other'}"]
    if lic is None:
        meta.append(f"license_name: {json.dumps(spec.license)}")
    meta += ["library_name: restore", "pipeline_tag: image-to-image", "tags:"]
    meta += [f"- {t}" for t in tags]
    meta.append("---")
    what = {Task.SR: f"x{spec.scale} super-resolution", Task.DENOISE: "Gaussian denoising",
            Task.JPEG: "JPEG artifact removal"}[spec.task]
    norm = "i-LN (Lee et al., ICLR 2026)" if spec.norm == "iln" else "LayerNorm (as published)"
    body = [
        "", f"# {spec.name}", "", spec.description, "",
        f"- task: {what}", f"- architecture: {spec.family}, normalization: {norm}",
        f"- parameters: {spec.params:,}" if spec.params else "- parameters: not recorded",
        f"- input channels: {spec.in_chans}",
        f"- fp16: {'safe' if spec.fp16_safe else 'not safe (use fp32 or bf16)'}",
    ]
    if spec.training:
        body.append(f"- training data: {spec.training}")
    body += ["", "Weights: `" + filename + "` (safetensors; the architecture config is in its "
             "metadata). Use with restore:", "", "```", f"restore models download {spec.name}",
             "```", "", "## Evaluation", ""]
    if spec.psnr:
        body += [f"PSNR in dB ({spec.psnr_source}).", "", "| benchmark | PSNR (dB) |",
                 "|---|---|"]
        body += [f"| {b} | {v:.2f} |" for b, v in spec.psnr.items()]
    else:
        body.append("Not evaluated yet.")
    body += ["", "## Architecture config", "", "```json",
             json.dumps(spec.config_dict(), indent=1), "```", ""]
    return "\n".join(meta + body)

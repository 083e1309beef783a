"""The restoration tasks, one enum for the whole package (registry, eval, train, CLI)."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    SR = "sr"  # super-resolution (bicubic degradation), x2/x3/x4
    DENOISE = "denoise"  # additive white Gaussian noise, sigma on the 0..255 scale
    JPEG = "jpeg"  # JPEG compression artifacts at a quality 1..100

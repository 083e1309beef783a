"""Registers every command module on the app (imported by main before dispatch)."""

from __future__ import annotations

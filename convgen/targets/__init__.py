"""Targets: what differs per output language (types, parameters, banner, ISA ladder) and the
rendering of a schedule's context through its template.  ``c`` and ``cuda``; the ISA table
they print lives in :mod:`convgen.isa`."""

from __future__ import annotations

from . import c, cuda
from .base import Target, banner, environment, kernel_name

__all__ = ["Target", "banner", "c", "cuda", "environment", "kernel_name"]

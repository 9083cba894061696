"""The exception hierarchy of convgen, and nothing else."""

from __future__ import annotations


class ConvgenError(Exception):
    """Base class of every error convgen raises on purpose."""


class SpecError(ConvgenError, ValueError):
    """An invalid layer configuration or input shape.

    The message names the parameter, quotes the value and states what is allowed.
    """


class BuildError(ConvgenError):
    """A kernel failed to compile.

    Attributes
    ----------
    command : list of str
        The compiler command that failed.
    stderr : str
        What the compiler printed.
    source_path : str or None
        Where the failing source was kept for inspection.
    """

    def __init__(self, message: str, command=(), stderr: str = "", source_path=None):
        super().__init__(message)
        self.command = list(command)
        self.stderr = stderr
        self.source_path = source_path


class VerificationError(ConvgenError):
    """A kernel disagreed with the exact oracle."""


class RunError(ConvgenError):
    """A kernel's test program (built for another architecture or compiler) failed: its exit
    status, a timeout, or output of the wrong size."""

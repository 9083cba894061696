"""Progress of the long commands (``generate``, ``verify``, ``bench``) on standard error.

Library loops wrap their items in :func:`track`; it reports nothing unless a caller turned
reporting on with :func:`reporting` (the command line does; ``import convgen`` stays
silent).  On a terminal a `tqdm <https://tqdm.github.io>`_ bar shows the current item's name
and the time left; when standard error is not a terminal, or under CI (``CI`` set), one
plain line per item (``convgen verify: [3/40] lenet5_c1, 0:04 elapsed, 0:49 left``), so logs
stay readable.  Standard output is never touched: ``--format json`` output stays clean.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["active", "reporting", "track"]

T = TypeVar("T")

# the command's name while reporting is on (None: off); a context variable, so threads of a
# library user never see another caller's setting
_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("convgen_progress",
                                                                      default=None)


@contextlib.contextmanager
def reporting(command: str, enabled: bool = True) -> Iterator[None]:
    """Within the block, :func:`track` reports progress as ``convgen COMMAND``."""
    token = _COMMAND.set(command if enabled else None)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def active() -> str | None:
    """The command reporting progress now (``verify``), or None: for a subprocess that
    should report as part of it (``convgen bench`` measures in one per thread count)."""
    return _COMMAND.get()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


# seconds between two plain lines (the first item is always shown): a log gets a line every
# few seconds of a long run, not one per kernel
PLAIN_INTERVAL = 3.0


def _plain(items: list, stage: str, name: Callable, stream) -> Iterator:
    start = time.monotonic()
    total, shown = len(items), None
    for index, item in enumerate(items):
        now = time.monotonic()
        if shown is None or now - shown >= PLAIN_INTERVAL:
            elapsed = now - start
            left = f", {_clock(elapsed / index * (total - index))} left" if index else ""
            print(f"{stage}: [{index + 1}/{total}] {name(item)}, {_clock(elapsed)} "
                  f"elapsed{left}", file=stream, flush=True)
            shown = now
        yield item
    print(f"{stage}: {total} done in {_clock(time.monotonic() - start)}", file=stream,
          flush=True)


def _bar(items: list, stage: str, name: Callable, stream) -> Iterator:
    with tqdm(items, desc=stage, file=stream, unit="kernel", leave=False,
              dynamic_ncols=True) as bar:
        for item in bar:
            bar.set_postfix_str(name(item), refresh=True)
            yield item


def track(items: Iterable[T], stage: str, name: Callable[[T], str] = str) -> Iterator[T]:
    """Yield ``items``, reporting each (``name(item)``) as part of ``stage`` when reporting
    is on (see :func:`reporting`); a plain pass-through otherwise."""
    command = _COMMAND.get()
    if command is None:
        yield from items
        return
    items = list(items)
    if not items:
        return
    stream = sys.stderr
    label = f"convgen {command}: {stage}" if stage else f"convgen {command}"
    interactive = stream.isatty() and not os.environ.get("CI")
    yield from (_bar if interactive else _plain)(items, label, name, stream)

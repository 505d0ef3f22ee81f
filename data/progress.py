"""Progress bars for the `riskgate` commands. On a terminal: tqdm as usual. Anywhere else (a CI
log, a file, a pipe): one plain line every few seconds instead of a stream of `\\r` updates.

In data/ because every package may import data/ and the commands of all of them draw bars."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LOG_INTERVAL_S = 5.0  # off a terminal, at most one line this often (and at the end)


class _Lines:
    """A file for tqdm that turns its in-place (`\\r`) redraws into whole lines."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str) -> int:
        for piece in text.split("\r"):
            line = piece.rstrip()
            if line:
                self._out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return False


def _on_terminal(out: IO[str]) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(
    iterable: Iterable[T] | None = None, *, file: IO[str] | None = None, **kwargs: Any
) -> tqdm[Any]:
    """`tqdm(iterable, **kwargs)` writing to `file` (stderr by default); off a terminal it
    redraws at most every LOG_INTERVAL_S seconds, each redraw a line of its own."""
    out = sys.stderr if file is None else file
    if _on_terminal(out):
        return tqdm(iterable, file=out, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, 10.0))
    kwargs.setdefault("ncols", 100)
    return tqdm(iterable, file=_Lines(out), dynamic_ncols=False, **kwargs)

"""Progress bars for long batch commands: shown on a terminal, silent when piped or under CI."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import click

# Redraw at most this often (items between redraws), so a bar never slows a million-line job.
STEP = 500


def wanted(stream: TextIO | None = None) -> bool:
    """A bar helps a person watching a terminal; a pipe, a log file or a CI job gets none."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("CI") or os.environ.get("GATEWAY_NO_PROGRESS"):
        return False
    return stream.isatty()


@contextlib.contextmanager
def bar(
    label: str, total: int, *, enabled: bool | None = None
) -> Iterator[Callable[[int, str], None]]:
    """Yield `advance(done, info)`, which moves the bar to `done` of `total` with `info` beside
    it; when disabled, `advance` does nothing."""
    if not (wanted() if enabled is None else enabled):
        yield lambda done, info: None
        return
    shown = 0
    with click.progressbar(
        length=max(total, 1),
        label=label,
        file=sys.stderr,
        show_pos=True,
        show_eta=True,
        item_show_func=lambda info: info,
    ) as progress:

        def advance(done: int, info: str) -> None:
            nonlocal shown
            if done - shown < STEP and done < total:
                return
            progress.update(done - shown, info)
            shown = done

        yield advance

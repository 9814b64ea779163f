"""Reporting on a run: a progress bar (tqdm) or callback, log lines every ``log_interval``
items, and a summary at the end."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from llmclient._checks import check_int
from llmclient.fanout.workers import _Workers, logger

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["ProgressCallback"]

_PROGRESS_INTERVAL = 0.1
"""Minimum seconds between two progress updates (tqdm's ``mininterval``, or callback calls)."""


class ProgressCallback(Protocol):
    """Gradio-style progress sink, called as ``progress(fraction, desc=description)``.

    ``fraction`` is ``done / total`` when the total is known, else the Gradio tuple
    ``(done, None)``. Called once at the start, then at most every 0.1 s as items complete;
    the last call of a successful run is always ``1.0``.
    """

    def __call__(self, progress: float | tuple[int, None], /, *, desc: str) -> object: ...


class _Progress:
    """Sends progress to a tqdm bar (``tqdm.auto``: a widget in a notebook) or a ProgressCallback.

    The bar throttles its own refreshes (``mininterval``); a callback, or a bar whose
    description comes from ``desc_callback``, is updated at most every ``_PROGRESS_INTERVAL``.
    """

    def __init__(
        self,
        target: bool | ProgressCallback,
        total: int | None,
        desc: str,
        unit: str,
        desc_callback: Callable[[int, int | None, list[Any]], str] | None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.desc_callback = desc_callback
        self.completed: list[Any] = []  # successful results, for desc_callback
        self.callback: ProgressCallback | None = None
        self.bar: tqdm[Any] | None = None
        self._shown_at = time.monotonic()
        if callable(target):
            self.callback = target
        else:
            from tqdm.auto import tqdm

            # miniters=1: tqdm checks the clock on every update instead of guessing how many
            # updates to skip from the rate so far (a burst then freezes the bar).
            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=sys.stderr,
                mininterval=_PROGRESS_INTERVAL,
                miniters=1,
            )

    def advance(self, done: int) -> None:
        """``done`` items finished: show it, unless the last update is too recent."""
        if self.bar is not None and self.desc_callback is None:
            self.bar.update(done - self.bar.n)  # tqdm skips refreshes within its mininterval
            return
        now = time.monotonic()
        if now - self._shown_at >= _PROGRESS_INTERVAL:
            self._shown_at = now
            self.emit(done)

    def emit(self, done: int, final: bool = False) -> None:
        desc = self.desc
        if self.desc_callback is not None:
            desc = self.desc_callback(done, self.total, self.completed)
        if self.bar is not None:
            if self.desc_callback is not None:
                self.bar.set_description_str(desc, refresh=False)
            self.bar.update(done - self.bar.n)
        elif self.callback is not None:
            total = self.total
            fraction: float | tuple[int, None]
            if final:
                fraction = 1.0
            elif total is None:
                fraction = (done, None)
            else:
                fraction = min(1.0, done / total) if total else 0.0
            self.callback(fraction, desc=desc)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Tally:
    """Counts a run's finished items: a log line every log_interval, and the progress display.

    As a context manager it logs the run's summary and closes the progress bar.
    """

    __slots__ = (
        "_completed",
        "_desc",
        "_log_interval",
        "_next_log",
        "_progress",
        "_t0",
        "_unit",
        "_workers",
        "done",
    )

    def __init__(
        self,
        workers: _Workers[Any, Any],
        desc: str,
        unit: str,
        log_interval: int,
        progress: _Progress | None,
    ) -> None:
        self._workers = workers
        self._desc = desc
        self._unit = unit
        self._log_interval = log_interval
        self._progress = progress
        self._completed = None  # successful results in completion order, for desc_callback
        if progress is not None and progress.desc_callback is not None:
            self._completed = progress.completed
        self.done = 0
        self._next_log = log_interval
        self._t0 = time.monotonic()

    def __enter__(self) -> _Tally:
        return self

    def start(self) -> None:
        if self._progress is not None:
            self._progress.emit(0)
        if logger.isEnabledFor(logging.DEBUG):
            total = self._workers.total
            logger.debug(
                "%s: starting %d workers, total %s", self._desc, self._workers.n_workers, total
            )

    def add(self, batch: Collection[tuple[int, Any]]) -> None:
        """Count a batch of outcomes (keeping the successful ones when desc_callback wants them)."""
        completed = self._completed
        if completed is not None:
            failed = self._workers.failed
            completed.extend(outcome for i, outcome in batch if i not in failed)
        self.count(len(batch))

    def count(self, n: int) -> None:
        """Add ``n`` completions: a log line at every ``log_interval`` crossed, then progress."""
        done = self.done = self.done + n
        while done >= self._next_log:
            if logger.isEnabledFor(logging.INFO):
                self._log_progress(self._next_log)
            self._next_log += self._log_interval
        if self._progress is not None:
            self._progress.advance(done)

    def _log_progress(self, d: int) -> None:
        elapsed = time.monotonic() - self._t0
        logger.info(
            "%s: %d/%s %s done, %d active, %.1f %s/s, %d errors",
            self._desc,
            d,
            "?" if self._workers.total is None else self._workers.total,
            self._unit,
            self._workers.busy,
            d / elapsed if elapsed > 0 else 0.0,
            self._unit,
            self._workers.errors,
        )

    def finish(self) -> None:
        """The last progress update of a successful run."""
        if self._progress is not None:
            self._progress.emit(self.done, final=True)

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> None:
        if self._progress is not None:
            self._progress.close()
        if not logger.isEnabledFor(logging.INFO):
            return
        workers = self._workers
        errors = workers.errors
        if exc is None:
            outcome = "finished"
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit) and exc is not workers.error:
            outcome = "cancelled"
        else:
            outcome = "failed"
            errors += exc is not workers.error  # progress or desc_callback failed
        elapsed = time.monotonic() - self._t0
        logger.info(
            "%s: %s, %d/%s %s done in %.2fs (%.1f %s/s), %d errors",
            self._desc,
            outcome,
            self.done,
            "?" if workers.total is None else workers.total,
            self._unit,
            elapsed,
            self.done / elapsed if elapsed > 0 else 0.0,
            self._unit,
            errors,
        )


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _show_bar_by_default() -> bool:
    """`progress_bar=None`: a bar on a terminal, and in a Jupyter notebook that can draw
    tqdm's widget bar (its stderr is no terminal)."""
    return _stderr_is_terminal() or _notebook_can_draw_bars()


def _notebook_can_draw_bars() -> bool:
    """Whether this runs in a Jupyter kernel with ipywidgets: where `tqdm.auto` draws its
    notebook bar (without ipywidgets it would fall back to text, with a warning)."""
    ipython = sys.modules.get("IPython")  # never imported here: only if the kernel did
    get_ipython = getattr(ipython, "get_ipython", None)
    return callable(get_ipython) and _is_kernel_with_widgets(get_ipython())


def _is_kernel_with_widgets(shell: object) -> bool:
    """`shell` (IPython's `get_ipython()`) is a Jupyter kernel's, as `tqdm.auto` tells it
    (an `IPKernelApp` section in its config), and ipywidgets can be imported."""
    try:
        in_kernel = shell is not None and "IPKernelApp" in shell.config  # type: ignore[attr-defined]
    except Exception:  # a shell of another kind, or none
        return False
    return bool(in_kernel) and importlib.util.find_spec("ipywidgets") is not None


def _check_report_args(progress_bar: object, log_interval: object, desc_callback: object) -> None:
    check_int("log_interval", log_interval, 1)
    if (
        progress_bar is not None
        and not isinstance(progress_bar, bool)
        and not callable(progress_bar)
    ):
        raise TypeError(f"progress_bar={progress_bar!r}: must be a bool, None or a callable")
    if desc_callback is not None and not callable(desc_callback):
        raise TypeError(f"desc_callback={desc_callback!r}: must be callable or None")

"""Progress of long work, on a terminal and in a log file.

On a terminal a rich progress bar; when stderr is not a terminal (a log file, CI) a plain line at
the start, at every tenth of the work and at the end, so `make run > run.log 2>&1` shows each
stage's progress:

    with progress_bar("tokenizer", total=3000) as bar:
        for step in range(3000):
            ...
            bar.advance(info=f"loss {loss:.3f}")
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def announce(stage: str, done: bool) -> None:
    """One line per pipeline stage: starting, or reused from an earlier invocation."""
    console.print(f"[bold cyan]{stage}[/] " + ("(done, reused)" if done else "…"))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class progress_bar:
    """A context manager counting `total` units of work; `enabled=False` shows nothing."""

    def __init__(self, description: str, total: int, enabled: bool = True, out: Console | None = None):
        self.description = description
        self.total = max(0, int(total))
        self.enabled = enabled
        self.console = out or console
        self.done = 0
        self.info = ""
        self._rich: Progress | None = None
        self._task: Any = None
        self._logged_tenths = -1
        self._started = 0.0

    def __enter__(self) -> "progress_bar":
        self._started = time.time()
        if not self.enabled:
            return self
        if self.console.is_terminal:
            self._rich = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=self.console)
            self._rich.__enter__()
            self._task = self._rich.add_task(self.description, total=self.total, info="")
        else:
            self._log()
        return self

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.done += n
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=n, info=self.info)
        elif self.total and self.done * 10 // self.total > self._logged_tenths:
            self._log()

    def _log(self) -> None:
        tenths = self.done * 10 // self.total if self.total else 0
        self._logged_tenths = tenths
        elapsed = time.time() - self._started
        percent = 100 * self.done // self.total if self.total else 0
        line = f"{self.description}: {self.done}/{self.total} ({percent}%) {_clock(elapsed)} elapsed"
        if 0 < self.done < self.total:
            line += f", ~{_clock(elapsed * (self.total - self.done) / self.done)} left"
        if self.info:
            line += f" — {self.info}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line per entry in a log

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
        elif self.enabled and exc[0] is None and self.done != self.total and self._logged_tenths < 10:
            self._log()  # the work ended early (or overran its estimate): say where it stopped

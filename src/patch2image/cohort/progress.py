"""How far a cohort run is: a bar on a terminal, a line every few minutes in a log file."""

import sys
import time
from typing import TextIO

LOG_SECONDS = 180.0
"""Off a terminal (a batch job's log): one line this often."""


def duration(seconds: float) -> str:
    """``42 s``, ``17 min``, ``3 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Photographs done out of those to do in this run, with the rate and an estimated end.

    ``update`` takes each finished photograph once; ``failed`` counts those that gave a reason instead.
    """

    def __init__(self, todo: int, already: int = 0, stream: TextIO | None = None, quiet: bool = False,
                 log_seconds: float = LOG_SECONDS):  # fmt: skip
        self.todo, self.already = todo, already
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.started = self.last_line = time.monotonic()
        self.log_seconds = log_seconds
        self.bar = None
        self.quiet = quiet
        if not quiet and todo and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=todo, desc="cohort", unit="photo", file=self.stream, smoothing=0.05)

    def update(self, done: int, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        if self.bar is not None:
            self.bar.update(done)
            if failed:
                self.bar.set_postfix(failed=self.failed)
        elif not self.quiet and time.monotonic() - self.last_line >= self.log_seconds:
            self.last_line = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.todo - self.done
        end = f", about {duration(left / rate)} left" if rate > 0 and left else ""
        failed = f" ({self.failed} failed)" if self.failed else ""
        return f"cohort: {self.done} of {self.todo} photographs done{failed}, {rate:.2f} per second{end}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

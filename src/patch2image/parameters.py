"""The ranges of the parameters a user sets, checked once where each is taken, for Python, the CLI and the page.

Each constructor declares its constraints (as scikit-learn's ``_parameter_constraints``) and calls
:func:`check`; a value out of range is one ``UserError`` line that names the parameter as the user
wrote it: ``stride 0: ...`` from Python, ``--stride 0: ...`` from the command line (which calls
:func:`as_options` once), so there is one check, not one per front end.
"""

import contextlib
import contextvars
import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from patch2image.errors import UserError

_OPTIONS = contextvars.ContextVar("patch2image_parameters_as_options", default=False)


@dataclass(frozen=True)
class Interval:
    """Numbers from ``low`` to ``high`` (either end None: unbounded); ``low_open``: ``low`` itself excluded."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    optional: bool = False  # None is allowed (a default chosen later)
    high_is: str = ""  # what ``high`` stands for, in messages ("the patch size")

    def but_optional(self) -> "Interval":
        """The same range, or None (a default chosen later)."""
        return dataclasses.replace(self, optional=True)

    def __contains__(self, value) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        high = f"{self.high_is} ({self.high:g})" if self.high_is else f"{self.high}"
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {high}"
        if self.low is not None:
            return "positive" if self.low_open and self.low == 0 else f"at least {self.low:g}"
        return f"at most {high}" if self.high is not None else "a number"


@dataclass(frozen=True)
class OneOf:
    """One of a few named choices."""

    choices: tuple

    def __contains__(self, value) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return "one of " + ", ".join(str(choice) for choice in self.choices)


THRESHOLD = Interval(0, 1)
"""A mask threshold: ``probability >= threshold``."""
POSITIVE = Interval(0, low_open=True)
COUNT = Interval(1, integer=True)
"""How many of something: threads, processes, patches per pass."""


def check(constraints: Mapping[str, Interval | OneOf], values: Mapping[str, object]) -> None:
    """Raise a one-line ``UserError`` for the first value outside its constraint."""
    for name, constraint in constraints.items():
        value = values[name]
        if value not in constraint:
            raise UserError(f"{parameter_name(name)} {value!s:.40}: must be {constraint}")


def parameter_name(name: str) -> str:
    """``max_pixels`` as the user wrote it: ``max_pixels`` in Python, ``--max-pixels`` on the command line."""
    return "--" + name.replace("_", "-") if _OPTIONS.get() else name


@contextlib.contextmanager
def as_options():
    """While the command line runs: messages name parameters by their options (``--stride``)."""
    token = _OPTIONS.set(True)
    try:
        yield
    finally:
        _OPTIONS.reset(token)

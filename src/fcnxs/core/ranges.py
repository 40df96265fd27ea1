"""The ranges option values must lie in, as data: each written once, and read both by the
command line (argparse types, `fcnxs.cli.options`) and by the library's own checks
(`fcnxs.training.settings.TrainSettings.validate`), so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (either end open or absent), integers only where
    ``integer``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    integer: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of range ("must be at least 1, not 0"), or None."""
        if self.integer and (isinstance(value, bool) or not isinstance(value, int)):
            return f"must be an integer, not {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {value!r}"
        if value != value or value in (float("inf"), float("-inf")):
            return f"must be a finite number, not {value}"
        low, high = self.low, self.high
        if low is not None and (value < low or (self.open_low and value == low)):
            bound = "greater than" if self.open_low else "at least"
            return f"must be {bound} {low:g}, not {value:g}"
        if high is not None and (value > high or (self.open_high and value == high)):
            bound = "less than" if self.open_high else "at most"
            return f"must be {bound} {high:g}, not {value:g}"
        return None


POSITIVE = Range(1, integer=True)
NON_NEGATIVE = Range(0, integer=True)
POSITIVE_REAL = Range(0, open_low=True)
NON_NEGATIVE_REAL = Range(0)
FRACTION = Range(0, 1, open_high=True)
"""A share that must leave something: dropout, a held-out fraction, momentum."""

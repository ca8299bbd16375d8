"""The allowed range of a numeric param, declared by its plugin in interval notation:
``"(0, inf)"`` (above 0), ``"[0, 1]"`` (0 to 1, both included), ``"[1, inf)"``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_INTERVAL = re.compile(
    r"^\s*(?P<open>[\[(])\s*(?P<low>[-+]?(?:inf|[0-9.eE+-]+))\s*,"
    r"\s*(?P<high>[-+]?(?:inf|[0-9.eE+-]+))\s*(?P<close>[\])])\s*$"
)


@dataclass(frozen=True)
class Range:
    """An interval; ``low_open``/``high_open`` exclude the bound."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        """``"(0, inf)"`` -> ``Range(0, inf, True, True)``; ``ValueError`` for anything else."""
        match = _INTERVAL.match(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not an interval such as '(0, inf)' or '[0, 1]'")
        low, high = float(match["low"]), float(match["high"])
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"{text!r} is an empty interval")
        return cls(low, high, match["open"] == "(", match["close"] == ")")

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def bound(value: float) -> str:
            return "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:g}"

        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{bound(self.low)}, {bound(self.high)}{right}"

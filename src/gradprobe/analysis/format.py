"""Number and word formats shared by the report's tables and sentences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def fmt_ratio(value: float | None) -> str:
    """Three significant digits: 0.00171, 0.245, 2.64, 1.23e+04."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100.0 * value:.1f}%"


def fmt_db(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.2f} dB"


def fmt_r2(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def fmt_count(value: Any) -> str:
    if value is None:
        return "n/a"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def join_words(items: Sequence[str], last: str = "and") -> str:
    """"a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_value(value: Any) -> str:
    """A config or axis value as YAML writes it: true/false, not Python's True/False."""
    return str(value).lower() if isinstance(value, bool) else str(value)

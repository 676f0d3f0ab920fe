"""Numbers as people write them in messages, listings and JSON: 2, not 2.0; 1.5; 1e-05."""

from __future__ import annotations

JSON_DECIMALS = 6


def plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def json_number(value: float) -> int | float:
    """Whole numbers as ints, others rounded to 6 decimals (no float noise: 4/3 is 1.333333)."""
    if float(value).is_integer():
        return int(value)
    return round(float(value), JSON_DECIMALS)

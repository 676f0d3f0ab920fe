"""Numbers as people write them in messages and listings: 2, not 2.0; 1.5; 1e-05."""

from __future__ import annotations


def plain(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"

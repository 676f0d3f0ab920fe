"""How far apart two histograms are: what evaluate.py and bench/musical.py compare by."""

from __future__ import annotations

import math
from collections.abc import Sequence


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance, base 2 (0: same distribution, 1: disjoint)."""
    sp, sq = sum(p) or 1, sum(q) or 1
    p = [x / sp for x in p]
    q = [x / sq for x in q]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))

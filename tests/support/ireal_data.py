"""The iReal Pro / MusicXML fixtures beside the clone (../shared/data/ireal), for import tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IREAL = ROOT.parent / "shared" / "data" / "ireal"


def ireal_dir() -> Path:
    """The fixture folder (MELODYFLOW_IREAL overrides); skips the test when it is absent."""
    path = Path(os.environ.get("MELODYFLOW_IREAL", IREAL))
    if not (path / "country.txt").exists():
        pytest.skip(f"iReal Pro fixtures not found at {path}")
    return path


def bars_text(chart) -> list[str]:
    """Each bar as written in a chart: chords split evenly, or with :beats where not
    (beats in the bar's own beat unit), `_` for an empty bar."""
    out = []
    for bar in chart.bars:
        num, den = bar.time or chart.time
        unit = 4 / den
        spans = bar.chords
        even = all(abs(s.beats - spans[0].beats) < 1e-9 for s in spans)
        if len(spans) > 1 and not even:
            out.append(" ".join(f"{s.chord.symbol}:{s.beats / unit:g}" for s in spans))
        else:
            out.append(" ".join(s.chord.symbol for s in spans))
    return out

"""Test helper: turn a WJazzD lead sheet (solo_info.chord_changes) into a chart YAML text.

A lead sheet is one form part a line, ``A1: ||Bb6 G7 |C-7 F7 |...||``. Chords in a
bar are separated by blanks, but some bars glue them together (``A-7D7``), so a
bar's text is split again before every chord root. The sections keep their names
and play in the order written.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import yaml

# A chord: NC, or a root then anything that is not the start of the next root,
# then an optional /bass.
CHORD_RE = re.compile(r"NC|[A-G][#b]?[^A-GN/]*(?:/[A-G][#b]?)?")
LINE_RE = re.compile(r"^\s*([^:]+):\s*(.*)$")


def split_glued(token: str) -> list[str]:
    """'A-7D7' -> ['A-7', 'D7']; raises ValueError when something is left over."""
    parts = CHORD_RE.findall(token)
    if "".join(parts) != token:
        raise ValueError(f"cannot split {token!r}")
    return parts


def lead_sheet_to_chart(chord_changes: str, *, title: str = "", signature: str = "",
                        key: str = "", tempo: float | None = None) -> str:
    sections: dict[str, str] = {}
    for raw in chord_changes.splitlines():
        if not raw.strip():
            continue
        match = LINE_RE.match(raw)
        if match is None:
            raise ValueError(f"lead sheet line without a part name: {raw!r}")
        name, body = match.group(1).strip(), match.group(2)
        bars = []
        for bar in re.split(r"\|+", body):
            chords = [c for token in bar.split() for c in split_glued(token)]
            if chords:
                bars.append(" ".join(chords))
        if bars:                      # some sheets end with an empty part ("I1: ")
            sections[name] = "| " + " | ".join(bars) + " |"
    chart: dict[str, object] = {"title": title or "untitled"}
    if tempo:
        chart["tempo"] = round(float(tempo), 1)
    chart["time"] = signature or "4/4"
    if key:
        chart["key"] = key
    chart["sections"] = sections
    chart["form"] = list(sections)
    return yaml.safe_dump(chart, sort_keys=False, allow_unicode=True)


def wjazzd_lead_sheets(db_path: Path) -> list[tuple[int, str]]:
    """(melid, chart text) for every solo with a lead sheet."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT melid, title, signature, key, avgtempo, chord_changes FROM solo_info "
            "WHERE chord_changes IS NOT NULL AND chord_changes != '' ORDER BY melid").fetchall()
    return [(melid, lead_sheet_to_chart(changes, title=title, signature=signature,
                                        key=key, tempo=tempo))
            for melid, title, signature, key, tempo, changes in rows]

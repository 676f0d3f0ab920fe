"""`melodyflow import` and `melodyflow check` over a playlist: every tune of a source, one line
each, and a summary.

`import_source` writes one YAML chart a tune (file names from the titles; a chart is
written only after it reads back as a valid chart, through a temp file and a rename).
`check_source` checks every tune without writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from melodyflowd.errors import UserError
from melodyflowd.music.chart import Chart, parse_chart
from melodyflowd.music.leadsheet import file_stem
from melodyflowd.music.sources import Tune, display_name, pick, read_tunes


@dataclass(slots=True)
class Outcome:
    title: str
    chart: Chart | None
    error: str | None = None
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _tunes(source: str, tune: str | None) -> list[Tune]:
    tunes = read_tunes(source)
    return [pick(tunes, tune, source)] if tune is not None else tunes


def _checked(tune: Tune, source: str) -> tuple[str | None, Chart | None, str | None]:
    """(chart text, chart, error) for one tune."""
    if tune.error is not None:
        return None, None, tune.error.detail
    try:
        text = tune.chart_text()
        chart = parse_chart(text, f"{display_name(source)}#{tune.title}")
    except UserError as exc:
        return None, None, str(exc)
    return text, chart, None


def check_source(source: str, tune: str | None = None) -> list[Outcome]:
    """Each tune (or the one --tune names) read and checked as a chart."""
    out = []
    for item in _tunes(source, tune):
        _, chart, error = _checked(item, source)
        out.append(Outcome(item.title, chart, error))
    return out


def import_source(source: str, out_dir: str, tune: str | None = None,
                  progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Write each tune as OUT_DIR/<title>.yaml (a second tune of the same title gets -2)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise UserError(f"no such folder {out_dir!r}: create it first, or give --out an "
                        f"existing folder")
    taken: set[str] = set()
    out: list[Outcome] = []
    for item in _tunes(source, tune):
        text, chart, error = _checked(item, source)
        outcome = Outcome(item.title, chart, error)
        if text is not None:
            stem = file_stem(item.title)
            name, n = f"{stem}.yaml", 1
            while name in taken:
                n += 1
                name = f"{stem}-{n}.yaml"
            taken.add(name)
            outcome.path = folder / name
            _write(outcome.path, text)
        out.append(outcome)
        if progress is not None:
            progress(outcome)
    return out


def _write(path: Path, text: str) -> None:
    from melodyflowd.files import atomic_file

    with atomic_file(path) as stream:
        stream.write(text.encode("utf-8"))


def summary(outcomes: list[Outcome]) -> str:
    good = sum(1 for o in outcomes if o.ok)
    bad = len(outcomes) - good
    percent = 100.0 * good / len(outcomes) if outcomes else 0.0
    return (f"{len(outcomes)} tunes: {good} ok, {bad} failed ({percent:.1f} % ok)")


def line(outcome: Outcome) -> str:
    """One line for a tune: ok, its bars and warnings, or the error."""
    if not outcome.ok:
        return f"FAIL {outcome.title}: {outcome.error}"
    chart = outcome.chart
    assert chart is not None
    warnings = f", {len(chart.warnings)} warnings" if chart.warnings else ""
    where = f" -> {outcome.path}" if outcome.path else ""
    return f"ok   {outcome.title}: {len(chart.bars)} bars{warnings}{where}"

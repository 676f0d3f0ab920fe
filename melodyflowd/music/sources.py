"""Where a chart comes from: a YAML chart, an iReal Pro link, playlist or HTML export, or a
MusicXML lead sheet (.musicxml, .xml, compressed .mxl). Reading the file is the only I/O.

`load_chart(source, tune)` gives the Chart to play; `read_tunes(source)` every tune of a
source with its chart text (or the error that stopped it), for `melodyflow import` and
`melodyflow check` on a playlist. Imported tunes go through their YAML text, so what
plays is exactly what `melodyflow import` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from melodyflowd.errors import UserError
from melodyflowd.files import IMPORT_MAX_BYTES, read_bytes, read_head
from melodyflowd.music import chart as chart_module
from melodyflowd.music.chart import Chart, ChartError, parse_chart
from melodyflowd.music.leadsheet import LeadSheet, SourceError, to_yaml

LINK_SCHEMES = ("irealb://", "irealbook://")


@dataclass(slots=True)
class Tune:
    title: str
    sheet: LeadSheet | None
    error: UserError | None = None

    def chart_text(self) -> str:
        assert self.sheet is not None
        return to_yaml(self.sheet)

    def chart(self, source: str) -> Chart:
        """The tune as a Chart (raises the tune's import error, or a ChartError)."""
        if self.error is not None:
            raise self.error
        return parse_chart(self.chart_text(), f"{display_name(source)}#{self.title}")


def display_name(source: str) -> str:
    if source.startswith(LINK_SCHEMES):
        return source.split("://", 1)[0] + " link"
    return source


def is_import_source(source: str) -> bool:
    """A link, or a file that is not a YAML chart (by its content, not only its name)."""
    if source.startswith(LINK_SCHEMES):
        return True
    path = Path(source)
    if path.suffix.lower() in (".mxl", ".musicxml", ".xml"):
        return True
    if path.suffix.lower() in (".yaml", ".yml"):
        return False
    head = read_head(path, 1 << 16)        # a FIFO or device: b"", read as a YAML chart
    return (b"irealb://" in head or b"irealbook://" in head or b"<score-partwise" in head
            or b"<score-timewise" in head or head.lstrip().startswith(b"<?xml"))


def read_tunes(source: str) -> list[Tune]:
    """Every tune of an import source. Raises SourceError for an unreadable source."""
    from melodyflowd.music import ireal, musicxml

    if source.startswith(LINK_SCHEMES):
        pairs = ireal.read_link_text(source)
    else:
        path = Path(source)
        data = _read(path)
        if path.suffix.lower() == ".mxl" or data[:2] == b"PK":
            pairs = [_titled(musicxml.read_mxl(data, source))]
        elif data[:2] in (b"\xff\xfe", b"\xfe\xff") or path.suffix.lower() in (
                ".musicxml", ".xml"):
            pairs = [_titled(musicxml.read_bytes(data, source))]   # any XML encoding
        else:
            text = data.decode("utf-8-sig", errors="replace")
            if "irealb://" in text or "irealbook://" in text:
                pairs = ireal.read_link_text(text)
            elif "<score-partwise" in text or "<score-timewise" in text:
                pairs = [_titled(musicxml.read_text(text, source))]
            else:
                raise SourceError("no iReal Pro link and no MusicXML score in this file: "
                                   "give an irealb:// link, a playlist or HTML export, a "
                                   ".musicxml/.mxl lead sheet or a YAML chart", file=source)
    tunes = []
    for title, got in pairs:
        if isinstance(got, UserError):
            tunes.append(Tune(title, None, got))
        else:
            tunes.append(Tune(title, got))
    if not tunes:
        raise SourceError("no tune in this source", file=display_name(source))
    return tunes


def _titled(sheet: LeadSheet) -> tuple[str, LeadSheet]:
    return sheet.title, sheet


def _read(path: Path) -> bytes:
    try:
        return read_bytes(path, "an imported chart file", IMPORT_MAX_BYTES, SourceError)
    except FileNotFoundError:
        raise SourceError("no such file: give a YAML chart, an irealb:// link, a playlist or "
                           "a MusicXML lead sheet", file=str(path)) from None
    except IsADirectoryError:
        raise SourceError("is a directory, not a chart file", file=str(path)) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}", file=str(path)) from None


def pick(tunes: list[Tune], tune: str | None, source: str) -> Tune:
    """The tune named by --tune (exact title, any case; else the one title holding it)."""
    if tune is None:
        if len(tunes) == 1:
            return tunes[0]
        raise UserError(f"{len(tunes)} tunes here: pick one with --tune TITLE ("
                        f"{_listing(tunes)})", file=display_name(source))
    wanted = tune.strip().lower()
    exact = [t for t in tunes if t.title.lower() == wanted]
    if exact:
        return exact[0]
    partial = [t for t in tunes if wanted in t.title.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        raise UserError(f"--tune {tune!r} matches {len(partial)} tunes: {_listing(partial)}",
                        file=display_name(source))
    raise UserError(f"no tune titled {tune!r}: tunes here are {_listing(tunes)}",
                    file=display_name(source))


def _listing(tunes: list[Tune], most: int = 12) -> str:
    names = [t.title for t in tunes[:most]]
    more = f", ... ({len(tunes) - most} more; `melodyflow check` lists them all)" \
        if len(tunes) > most else ""
    return ", ".join(names) + more


def load_chart(source: str, tune: str | None = None) -> Chart:
    """The chart to play from any source; --tune picks a tune of a playlist."""
    if not is_import_source(source):
        if tune is not None:
            raise ChartError("--tune needs a playlist, an iReal Pro link or a MusicXML file; "
                             "this is a YAML chart", file=source)
        return chart_module.load_chart(source)
    return pick(read_tunes(source), tune, source).chart(source)

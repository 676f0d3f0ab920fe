"""iReal Pro links (irealb://, irealbook://) -> LeadSheets in playing order. Pure, no I/O.

A link is percent-encoded text. Songs are separated by ``===`` (a playlist
ends with its name); a song's fields by ``=``: title, composer, (unused),
style, key, (unused), music, then in newer links the accompaniment style, the
tempo and a repeat count. The old ``irealbook://`` form has title, composer,
style, key, (unused), music. In ``irealb://`` the music starts with the marker
``1r34LbKcu7`` and is scrambled in blocks of 50 characters (``_unscramble``).

The music, once unscrambled, is a string of cells, 16 to a row::

    *A *B *i *v ...   rehearsal marks (i intro, v verse)
    T44 T34 T68 T12   time signatures (T12 is 12/8)
    | [ ] { } Z       bar lines: single, double open/close, repeat open/close, final
    N1 N2 N3          first, second, third ending
    x  r              repeat the previous bar / the previous two bars
    n  p  W/C         no chord / a slash (the chord holds a beat) / bass note only
    s  l              small / large chord size (print only)
    (Db7)             an alternate chord above the one before it
    <text>            a comment: D.C. al Coda, D.S. al Fine, 3x, Fine ...
    S  Q  U  f  Y     segno / coda / end / fermata / vertical spacer
    ' ' ,             an empty cell / a separator between chords

with the abbreviations ``XyQ`` (three empty cells), ``LZ`` (a bar line) and
``Kcl`` (a bar line and a repeated bar). A chord's cell gives its place in the
bar when the bar has one cell a beat; otherwise the chords share it evenly
(slashes ``p`` count as beats of the chord before them).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser

from melodyflowd.errors import UserError
from melodyflowd.music.form import FormError, Signs, playing_order
from melodyflowd.music.leadsheet import LeadSheet, SheetBar, SheetChord, SourceError

MARKER = "1r34LbKcu7"
LINK_RE = re.compile(r"irealb(?:ook)?://[^\s\"<>]+")

# iReal Pro style (lower case, matched as a substring in this order) -> adapter name in the
# embedded model's adapters/ (None: no adapter, the base model plays). docs/charts.md shows it.
STYLE_ADAPTERS: tuple[tuple[str, str | None], ...] = (
    ("bebop", "bebop"),
    ("up tempo", "bebop"),
    ("medium up", "bebop"),
    ("hard bop", "hardbop"),
    ("hardbop", "hardbop"),
    ("funk", "hardbop"),
    ("soul", "hardbop"),
    ("post bop", "postbop"),
    ("postbop", "postbop"),
    ("modal", "postbop"),
    ("afro", "postbop"),
    ("cool", "cool"),
    ("ballad", "cool"),
    ("bossa", "cool"),
    ("samba", "cool"),
    ("latin", "cool"),
    ("even 8", "cool"),
    ("waltz", "swing"),
    ("swing", "swing"),
    ("shuffle", "swing"),
    ("gypsy", "swing"),
    ("dixie", "swing"),
    ("blues", "swing"),
)

SECTION_NAMES = {"i": "Intro", "v": "Verse"}
TIMES = {"12": (12, 8)}
_CHORD_RE = re.compile(r"([A-G][b#]?|W)((?:sus|alt|add|[-+^ohb#0-9])*)(?:/([A-G][b#]?))?")
_CUSTOM_RE = re.compile(r"\*([^*|\[\]{}<>]{0,16})\*")
_JUMP_RE = re.compile(r"(?:^|[^a-z])d\.?([cs])(?:\.|al|$)")   # D.C., D.S. al ..., DC
_TIMES_RE = re.compile(r"(?:^|\D)(\d{1,2})\s*x|x\s*(\d{1,2})|^\s*(\d{1,2})\s*$", re.I)


def style_adapter(style: str | None) -> str | None:
    """The adapter for an iReal Pro style name (STYLE_ADAPTERS), or None."""
    if not style:
        return None
    lowered = style.lower()
    for needle, adapter in STYLE_ADAPTERS:
        if needle in lowered:
            return adapter
    return None


# --------------------------------------------------------------------------- links

@dataclass(slots=True)
class IrealSong:
    title: str
    composer: str
    style: str
    key: str
    music: str                  # unscrambled
    tempo: float | None = None
    accompaniment: str = ""


def _unscramble_block(block: str) -> str:
    chars = list(block)
    for i in (*range(5), *range(10, 24)):
        chars[i], chars[49 - i] = block[49 - i], block[i]
    return "".join(chars)


def _unscramble(text: str) -> str:
    out: list[str] = []
    while len(text) > 50:
        block, text = text[:50], text[50:]
        out.append(block if len(text) < 2 else _unscramble_block(block))
    out.append(text)
    return "".join(out)


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "href" and value and value.startswith(("irealb://", "irealbook://")):
                self.links.append(value)


def find_links(text: str) -> list[str]:
    """Every irealb:// or irealbook:// link in a text: the href of each link in an HTML
    export, else each link in plain text (a playlist file: links end at a blank)."""
    if re.search(r"<a\s[^>]*href", text, re.I):
        parser = _Hrefs()
        parser.feed(text)
        parser.close()
        if parser.links:
            return parser.links
    return [m.group() for m in LINK_RE.finditer(text)]


def parse_link(link: str) -> list[IrealSong]:
    """The songs of one link (one song, or a playlist). Raises SourceError when none."""
    scheme, _, body = link.strip().partition("://")
    text = urllib.parse.unquote(body)
    songs: list[IrealSong] = []
    for chunk in text.split("==="):
        fields = chunk.split("=")
        song = _song(fields, old=scheme == "irealbook")
        if song is not None:
            songs.append(song)
    if not songs:
        raise SourceError(f"no song in this {scheme}:// link: expected title=composer=...="
                           f"music fields")
    return songs


def _song(fields: list[str], old: bool) -> IrealSong | None:
    music_at = next((k for k, f in enumerate(fields) if f.startswith(MARKER)), None)
    if music_at is not None:
        music = _unscramble(fields[music_at][len(MARKER):])
        style = fields[3] if len(fields) > 3 else ""
        key = fields[4] if len(fields) > 4 else ""
    elif old and len(fields) >= 6:
        music_at = 5
        music = fields[5]
        style, key = fields[2], fields[3]
    else:
        return None
    rest = fields[music_at + 1:]
    tempo = None
    if len(rest) > 1 and rest[1].strip().isdigit() and int(rest[1]) > 0:
        tempo = float(int(rest[1]))
    return IrealSong(title=fields[0].strip() or "untitled",
                     composer=fields[1].strip() if len(fields) > 1 else "",
                     style=style.strip(), key=key.strip(), music=music, tempo=tempo,
                     accompaniment=rest[0] if rest else "")


# --------------------------------------------------------------------------- written bars

@dataclass(slots=True)
class _Cell:
    kind: str                   # chord | blank | hold | nc
    symbol: str = ""
    alternate: str | None = None


@dataclass(slots=True)
class _Bar(Signs):
    """A bar of the iReal string: its cells, and its signs (times from a "3x" comment,
    coda_start for Q before any cell, coda_after for Q after one, end for U)."""

    cells: list[_Cell] = field(default_factory=list)
    time: tuple[int, int] = (4, 4)
    mark: str | None = None                 # rehearsal mark starting here
    opener: str = "|"                       # the bar line before it
    repeats: int = 0                        # x: 1, r: 2

    def has_music(self) -> bool:
        return any(c.kind != "blank" for c in self.cells) or self.repeats > 0


def _expand(music: str) -> str:
    return music.replace("XyQ", "   ").replace("Kcl", "| x").replace("LZ", " |")


def _comment(bar: _Bar, text: str) -> None:
    text = re.sub(r"^\*\d\d", "", text).strip()
    compact = text.replace(" ", "").lower()
    jump = _JUMP_RE.search(compact)
    if jump:
        bar.jump = "D.C." if jump.group(1) == "c" else "D.S."
        if "coda" in compact:
            bar.jump_to = "Coda"
        elif "fine" in compact:
            bar.jump_to = "Fine"
        return
    if compact.rstrip(".!") == "fine":
        bar.fine = True
        return
    match = _TIMES_RE.search(text)
    if match:
        count = int(next(g for g in match.groups() if g))
        if 2 <= count <= 64:
            bar.times = count


def _written_bars(music: str) -> list[_Bar]:
    s = _expand(music)
    bars: list[_Bar] = []
    time = (4, 4)
    bar = _Bar(time=time, opener="[")
    pending_start = False

    def close(closer: str) -> None:
        nonlocal bar, pending_start
        blank_cells = sum(1 for c in bar.cells if c.kind == "blank")
        empty_bar = (not bar.has_music() and blank_cells >= 1 and bar.opener in "|[{"
                     and closer in "|]}Z")
        keep = bar.has_music() or empty_bar or (bar.mark is not None and blank_cells > 0)
        if keep:
            bars.append(bar)
            bar = _Bar(time=time, opener=closer)
            return
        # signs written in a gap between bar lines belong to the bar after it (*A, S, N2,
        # Q ...) or, for those that end something, to the bar before it
        carry = bar
        bar = _Bar(time=time, opener=closer)
        bar.segno, bar.coda_start, bar.ending = carry.segno, carry.coda_start, carry.ending
        bar.mark, bar.jump, bar.jump_to = carry.mark, carry.jump, carry.jump_to
        bar.repeat_start = carry.repeat_start
        if bars:
            last = bars[-1]
            last.coda_after = last.coda_after or carry.coda_after
            last.fine = last.fine or carry.fine
            last.end = last.end or carry.end
            last.times = carry.times or last.times

    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in "|[]{}Z":
            close(c)
            if c == "}" and bars:
                bars[-1].repeat_end = True
            if c == "{":
                bar.repeat_start = True
            i += 1
            continue
        if c == "*" and i + 1 < n:
            label = s[i + 1]
            bar.mark = SECTION_NAMES.get(label, label.upper())
            i += 2
            continue
        if c == "T" and i + 2 < n:
            digits = s[i + 1:i + 3]
            if digits.isdigit():
                time = TIMES.get(digits, (int(digits[0]), int(digits[1])))
                if time[0] == 0 or time[1] not in (1, 2, 4, 8, 16):
                    time = (4, 4)
                bar.time = time
                i += 3
                continue
            i += 1
            continue
        if c == "N" and i + 1 < n and s[i + 1].isdigit():
            bar.ending = int(s[i + 1]) or 0
            i += 2
            continue
        if c == "<":
            end = s.find(">", i)
            end = n if end < 0 else end
            _comment(bar, s[i + 1:end])
            i = end + 1
            continue
        if c == "(":
            end = s.find(")", i)
            end = n if end < 0 else end
            inner = s[i + 1:end].strip()
            match = _CHORD_RE.fullmatch(inner)
            if match and not inner.startswith("W"):
                target = next((x for x in reversed(bar.cells) if x.kind == "chord"), None)
                if target is not None:
                    target.alternate = inner
            i = end + 1
            continue
        if c == " ":
            bar.cells.append(_Cell("blank"))
        elif c == "p":
            bar.cells.append(_Cell("hold"))
        elif c == "n":
            bar.cells.append(_Cell("nc", "NC"))
        elif c == "x":
            bar.repeats = 1
        elif c == "r":
            bar.repeats = 2
        elif c == "S":
            bar.segno = True
        elif c == "Q":
            if any(x.kind != "blank" for x in bar.cells) or bar.repeats:
                bar.coda_after = True
            else:
                bar.coda_start = True
        elif c == "U":
            bar.end = True
        elif c in "ABCDEFGW":
            match = _CHORD_RE.match(s, i)
            if match is not None and match.end() > i:
                symbol, i = match.group(), match.end()
                custom = _CUSTOM_RE.match(s, i)
                if custom is not None:          # C*m7*: a quality written as free text
                    symbol, i = _custom_chord(symbol, custom.group(1)), custom.end()
                bar.cells.append(_Cell("chord", symbol))
                continue
        # s l f Y , and anything unknown: print-only signs
        i += 1
    close("Z")
    return bars


# --------------------------------------------------------------------------- chords of a bar

def _custom_chord(symbol: str, text: str) -> str:
    """A chord with its quality as free text: kept when the chord reader knows it (A*m7* ->
    Am7), else the chord without it (the text is a performance note)."""
    from melodyflowd.music.theory import ChordError, parse_chord

    root, slash, bass = symbol.partition("/")
    text = text.replace(" ", "")
    if text[:1] in ("b", "#"):
        text = f"({text})"
    candidate = root + text + slash + bass
    try:
        parse_chord(candidate)
    except ChordError:
        return symbol
    return candidate


def _without_bass(symbol: str) -> str:
    return symbol.split("/", 1)[0]


def _resolve(bars: list[_Bar]) -> list[tuple[list[SheetChord], bool]]:
    """Each written bar's chords with weights (x, r, W and held chords taken), and whether
    the weights are the beats of its meter."""
    out: list[tuple[list[SheetChord], bool]] = []
    last = "NC"                      # the chord sounding at the end of the previous bar
    pending: tuple[list[SheetChord], bool] | None = None     # the second bar of an 'r'
    for bar in bars:
        if bar.repeats and out:
            if bar.repeats == 2 and len(out) >= 2:
                chosen, pending = out[-2], out[-1]
            else:
                chosen, pending = out[-1], None
            copy = [SheetChord(c.symbol, c.weight, c.alternate) for c in chosen[0]]
            out.append((copy, chosen[1]))
            last = copy[-1].symbol if copy else last
            continue
        if pending is not None and not bar.has_music():
            copy = [SheetChord(c.symbol, c.weight, c.alternate) for c in pending[0]]
            out.append((copy, pending[1]))
            pending = None
            last = copy[-1].symbol if copy else last
            continue
        pending = None
        chords: list[SheetChord] = []
        lead = 0
        holds = False
        for cell in bar.cells:
            if cell.kind in ("chord", "nc"):
                symbol = cell.symbol
                if symbol.startswith("W"):
                    base = _without_bass(last)
                    bass = symbol.partition("/")[2]
                    symbol = f"{base}/{bass}" if bass and base != "NC" else base
                chords.append(SheetChord(symbol, 1.0, cell.alternate))
                last = symbol
            elif chords:
                chords[-1].weight += 1
                holds = holds or cell.kind == "hold"
            else:
                lead += 1
        if not chords:
            out.append(([], False))
            continue
        beats = bar.time[0]
        total = sum(c.weight for c in chords) + lead
        if lead and abs(total - beats) < 1e-9 and out:
            previous = out[-1][0][-1].symbol if out[-1][0] else None
            if previous:
                chords.insert(0, SheetChord(previous, float(lead)))
        exact = abs(sum(c.weight for c in chords) - beats) < 1e-9
        if not exact and not holds:
            for chord in chords:
                chord.weight = 1.0
        out.append((chords, exact))
    return out


# --------------------------------------------------------------------------- sheets

def song_to_sheet(song: IrealSong) -> LeadSheet:
    written = _written_bars(song.music)
    if not written:
        raise SourceError(f"{song.title!r}: the song has no bars")
    resolved = _resolve(written)
    labels: list[str] = []
    current = "A" if not any(b.mark for b in written) else "Top"
    jump_bar = next((k for k, b in enumerate(written) if b.jump), len(written))
    coda = max((k for k, b in enumerate(written) if b.coda_start and k > jump_bar),
               default=None)
    for k, bar in enumerate(written):
        if bar.mark:
            current = bar.mark
        elif k == coda:
            current = "Coda"
        labels.append(current)
    notes: list[str] = []
    try:
        order = playing_order(written)
    except FormError as exc:
        order, notes = [], [exc.detail]
    if not order:
        # signs a band could not follow either: the bars as written, once
        order = list(range(len(written)))
        notes = [*notes, "the repeats and jumps could not be followed: the bars are "
                         "as written, once"]
    bars: list[SheetBar] = []
    for k in order:
        chords, exact = resolved[k]
        bars.append(SheetBar(
            chords=[SheetChord(c.symbol, c.weight, c.alternate) for c in chords],
            time=written[k].time, section=labels[k], origin=k,
            starts_section=written[k].mark is not None, exact=exact))
    key = _key(song.key)
    adapter = style_adapter(song.style)
    return LeadSheet(title=song.title, bars=bars, composer=song.composer or None, key=key,
                     tempo=song.tempo, style=adapter, source_style=song.style or None,
                     notes=notes)


def _key(key: str) -> str | None:
    match = re.fullmatch(r"([A-G][b#]?)(-?)", key.strip())
    if not match:
        return None
    return match.group(1) + ("m" if match.group(2) else "")


def read_link_text(text: str) -> list[tuple[str, LeadSheet | UserError]]:
    """Every song of every link in a text (a link, a playlist file, an HTML export): its
    title and its sheet, or the error that stopped it (one bad song spoils no other)."""
    out: list[tuple[str, LeadSheet | UserError]] = []
    links = find_links(text)
    for link in links:
        try:
            songs = parse_link(link)
        except SourceError:
            if len(links) == 1:
                raise
            continue                  # a link in prose, without a song: not a tune
        for song in songs:
            try:
                out.append((song.title, song_to_sheet(song)))
            except UserError as exc:
                out.append((song.title, exc))
    return out

"""MusicXML lead sheets (.musicxml, .xml, compressed .mxl) -> a LeadSheet. Pure but for
unzipping bytes already read.

Read with the standard library's xml.etree (no DTD or entity is fetched). What is read:

- ``<harmony>``: root (step, alter), kind (its text, as the musician saw it, where
  no ``<degree>`` adds to it and the chord reader knows it; else its value with the
  degrees added, altered or subtracted), bass; ``<offset>`` and the
  notes before it give its place in the bar;
- ``<time>`` (meter changes), ``<key>``, ``<sound tempo>`` / ``<metronome>``;
- ``<repeat>`` (with ``times``), ``<ending>`` numbers, ``<segno>``, ``<coda>``, ``<sound>``
  dacapo / dalsegno / tocoda / fine, and the words D.C., D.S., Fine, To Coda;
- ``<rehearsal>`` marks as section names.

The first part that has chords is the lead sheet; a bar without a chord is an empty bar
(the chord before it holds).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field

from melodyflowd.files import UNPACKED_MAX_BYTES
from melodyflowd.music.form import Signs, playing_order
from melodyflowd.music.leadsheet import LeadSheet, SheetBar, SheetChord, SourceError
from melodyflowd.music.meter import bar_beats, quarters_per_unit
from melodyflowd.music.theory import ChordError, parse_chord

# MusicXML <kind> values -> the chord suffix in chart notation.
KINDS = {
    "major": "", "minor": "m", "augmented": "+", "diminished": "o",
    "dominant": "7", "dominant-seventh": "7", "major-seventh": "maj7",
    "minor-seventh": "m7", "diminished-seventh": "o7", "augmented-seventh": "7#5",
    "half-diminished": "m7b5", "major-minor": "m(maj7)", "major-sixth": "6",
    "minor-sixth": "m6", "dominant-ninth": "9", "major-ninth": "maj9", "minor-ninth": "m9",
    "dominant-11th": "11", "major-11th": "maj9(11)", "minor-11th": "m11",
    "dominant-13th": "13", "major-13th": "maj13", "minor-13th": "m13",
    "suspended-second": "sus2", "suspended-fourth": "sus4", "power": "5", "pedal": "",
    "augmented-ninth": "9#5", "none": "NC",
}
MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
MINOR_KEYS = ("Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#")


@dataclass(slots=True)
class _Measure(Signs):
    time: tuple[int, int]
    length: float                      # in divisions
    divisions: float
    harmonies: list[tuple[float, str]] = field(default_factory=list)   # (position, symbol)
    mark: str | None = None


def read_mxl(data: bytes, source: str) -> LeadSheet:
    """A compressed MusicXML file: the score its META-INF/container.xml names."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise SourceError("not a compressed MusicXML file (.mxl is a zip archive)",
                           file=source) from None
    with archive:
        names = archive.namelist()
        target = None
        if "META-INF/container.xml" in names:
            if archive.getinfo("META-INF/container.xml").file_size > 1 << 20:
                raise SourceError("META-INF/container.xml in this .mxl archive is over 1 MB",
                                   file=source)
            container = _parse(archive.read("META-INF/container.xml"), source)
            target = next((e.get("full-path") for e in container.iter()
                           if _local(e.tag) == "rootfile" and e.get("full-path")), None)
        if target is None or target not in names:
            target = next((n for n in names if not n.startswith("META-INF")
                           and n.lower().endswith((".xml", ".musicxml"))), None)
        if target is None:
            raise SourceError("no MusicXML score inside this .mxl archive", file=source)
        size = archive.getinfo(target).file_size
        if size > UNPACKED_MAX_BYTES:
            raise SourceError(f"the score inside this .mxl archive unpacks to {size} bytes, "
                               f"over the limit of {UNPACKED_MAX_BYTES // (1 << 20)} MB",
                               file=source)
        return read_root(_parse(archive.read(target), source), source)


def read_text(text: str, source: str) -> LeadSheet:
    return read_root(_parse(text.encode("utf-8"), source, declared=False), source)


def read_bytes(data: bytes, source: str) -> LeadSheet:
    """A MusicXML file as read: its XML declaration (or byte order mark) names the encoding."""
    return read_root(_parse(data, source), source)


def _parse(data: bytes, source: str, declared: bool = True) -> ET.Element:
    if not declared:                 # text already decoded: its declaration no longer holds
        data = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", data)
    probe = data.decode("utf-16", errors="ignore") if data[:2] in (b"\xff\xfe", b"\xfe\xff") \
        else data.decode("latin-1")
    if "<!ENTITY" in probe:
        raise SourceError("MusicXML with entity declarations is not read", file=source)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise SourceError(f"not well-formed XML: {exc}", file=source, line=line) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element | None, name: str, default: str = "") -> str:
    if element is None:
        return default
    child = _child(element, name)
    return (child.text or "").strip() if child is not None and child.text else default


def _number(text: str, default: float = 0.0) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def read_root(root: ET.Element, source: str) -> LeadSheet:
    kind = _local(root.tag)
    if kind == "score-timewise":
        raise SourceError("a timewise MusicXML score: export it as partwise MusicXML",
                           file=source)
    if kind != "score-partwise":
        raise SourceError(f"not a MusicXML score (the root element is <{kind}>)",
                           file=source)
    parts = _children(root, "part")
    part = next((p for p in parts if any(_local(e.tag) == "harmony" for e in p.iter())), None)
    if part is None:
        raise SourceError("no chord symbols (<harmony>) in this MusicXML score: only lead "
                           "sheets with chords can be played", file=source)
    title = (_text(root, "movement-title") or _text(_child(root, "work"), "work-title")
             or "untitled")
    composer = None
    identification = _child(root, "identification")
    if identification is not None:
        for creator in _children(identification, "creator"):
            if creator.get("type") == "composer" and creator.text:
                composer = creator.text.strip()
    measures, key, tempo = _measures(part, source)
    bars = _bars(measures)
    return LeadSheet(title=title, bars=bars, composer=composer, key=key, tempo=tempo)


def _measures(part: ET.Element, source: str) -> tuple[list[_Measure], str | None, float | None]:
    divisions = 1.0
    time = (4, 4)
    key: str | None = None
    tempo: float | None = None
    out: list[_Measure] = []
    for element in _children(part, "measure"):
        position = 0.0
        furthest = 0.0
        last_note_start = 0.0
        measure = _Measure(time=time, length=0.0, divisions=divisions)
        for item in element:
            tag = _local(item.tag)
            if tag == "attributes":
                divisions = _number(_text(item, "divisions"), divisions) or divisions
                time_element = _child(item, "time")
                if time_element is not None:
                    beats = _text(time_element, "beats")
                    beat_type = _text(time_element, "beat-type")
                    if beats.isdigit() and beat_type.isdigit():
                        time = (int(beats), int(beat_type))
                key_element = _child(item, "key")
                if key_element is not None and key is None:
                    key = _key(key_element)
                measure.time, measure.divisions = time, divisions
            elif tag == "harmony":
                offset = _number(_text(item, "offset"), 0.0)
                symbol = _harmony(item, source)
                if symbol is not None:
                    measure.harmonies.append((max(0.0, position + offset), symbol))
            elif tag == "note":
                duration = _number(_text(item, "duration"), 0.0)
                if _child(item, "chord") is not None:
                    position = last_note_start + duration
                else:
                    last_note_start = position
                    position += duration
            elif tag == "backup":
                position -= _number(_text(item, "duration"), 0.0)
            elif tag == "forward":
                position += _number(_text(item, "duration"), 0.0)
            elif tag == "barline":
                _barline(item, measure)
            elif tag == "direction":
                tempo = _direction(item, measure) or tempo
            elif tag == "sound":
                tempo = _sound(item, measure) or tempo
            furthest = max(furthest, position)
        nominal = divisions * bar_beats(time)
        measure.length = nominal if furthest <= 0 or element.get("implicit") != "yes" \
            else furthest
        out.append(measure)
    return out, key, tempo


def _key(element: ET.Element) -> str | None:
    fifths = _text(element, "fifths")
    try:
        index = int(fifths) + 7
    except ValueError:
        return None
    if not 0 <= index < 15:
        return None
    if _text(element, "mode") == "minor":
        return MINOR_KEYS[index] + "m"
    return MAJOR_KEYS[index]


def _note_name(step: str, alter: str) -> str:
    amount = round(_number(alter, 0.0))
    return step.upper() + ("#" * amount if amount > 0 else "b" * -amount)


def _harmony(element: ET.Element, source: str) -> str | None:
    root = _child(element, "root")
    kind = _child(element, "kind")
    kind_value = (kind.text or "").strip() if kind is not None and kind.text else "major"
    if kind_value == "none":
        return "NC"
    if root is None:
        return None                    # a function (roman numeral) without a root
    name = _note_name(_text(root, "root-step"), _text(root, "root-alter"))
    if not re.fullmatch(r"[A-G][#b]?", name):
        return None
    suffix = KINDS.get(kind_value)
    text = kind.get("text", "") if kind is not None else ""
    for degree in _children(element, "degree"):
        value = _text(degree, "degree-value")
        alter = round(_number(_text(degree, "degree-alter"), 0.0))
        kind_of = _text(degree, "degree-type")
        sign = "b" if alter < 0 else "#" if alter > 0 else ""
        if kind_of == "subtract":
            suffix = None if suffix is None else suffix + f"no{value}"
        elif kind_of == "add" and not sign:
            suffix = None if suffix is None else suffix + f"add{value}"
        else:
            suffix = None if suffix is None else suffix + f"{sign}{value}"
    bass = ""
    bass_element = _child(element, "bass")
    if bass_element is not None:
        bass = "/" + _note_name(_text(bass_element, "bass-step"),
                                _text(bass_element, "bass-alter"))
    # the kind's text is what the musician saw: it wins where no degree adds to it
    written = name + text.replace(" ", "") + bass if text else None
    degrees = bool(_children(element, "degree"))
    candidates = [written] if written and not degrees else []
    if suffix is not None:
        candidates.append(name + suffix + bass)
    if written and degrees:
        candidates.append(written)
    candidates.append(name + bass)
    for symbol in candidates:
        try:
            parse_chord(symbol)
        except ChordError:
            continue
        return symbol
    return name


def _barline(element: ET.Element, measure: _Measure) -> None:
    repeat = _child(element, "repeat")
    if repeat is not None:
        if repeat.get("direction") == "forward":
            measure.repeat_start = True
        elif repeat.get("direction") == "backward":
            measure.repeat_end = True
            times = repeat.get("times", "")
            if times.isdigit() and int(times) >= 2:
                measure.times = int(times)
    ending = _child(element, "ending")
    if ending is not None and ending.get("type") == "start":
        numbers = [int(n) for n in re.findall(r"\d+", ending.get("number", ""))]
        if numbers:
            measure.ending = numbers[0]
    if _child(element, "segno") is not None:
        measure.segno = True
    if _child(element, "coda") is not None:
        measure.coda_start = True


def _direction(element: ET.Element, measure: _Measure) -> float | None:
    tempo = None
    for item in element.iter():
        tag = _local(item.tag)
        if tag == "rehearsal" and item.text and item.text.strip():
            measure.mark = item.text.strip()
        elif tag == "segno":
            measure.segno = True
        elif tag == "coda":
            measure.coda_start = True
        elif tag == "words" and item.text:
            _words(item.text, measure)
        elif tag == "per-minute" and item.text:
            value = _number(item.text.strip(), 0.0)
            tempo = value if value > 0 else tempo
        elif tag == "sound":
            tempo = _sound(item, measure) or tempo
    return tempo


def _words(text: str, measure: _Measure) -> None:
    compact = text.replace(" ", "").lower()
    if "tocoda" in compact:
        measure.coda_after = True
        return
    match = re.search(r"d\.?([cs])\.?", compact)
    if match and (compact.startswith("d") or "al" in compact):
        measure.jump = "D.C." if match.group(1) == "c" else "D.S."
        measure.jump_to = "Coda" if "coda" in compact else "Fine" if "fine" in compact else None
    elif compact == "fine":
        measure.fine = True


def _sound(element: ET.Element, measure: _Measure) -> float | None:
    if element.get("dacapo") == "yes":
        measure.jump = measure.jump or "D.C."
    if element.get("dalsegno"):
        measure.jump = "D.S."
    if element.get("tocoda"):
        measure.coda_after = True
    if element.get("coda"):
        measure.coda_start = True
    if element.get("segno"):
        measure.segno = True
    if element.get("fine"):
        measure.fine = True
    tempo = _number(element.get("tempo", ""), 0.0)
    return tempo if tempo > 0 else None


def _bars(measures: list[_Measure]) -> list[SheetBar]:
    written: list[tuple[list[SheetChord], bool]] = []
    held: str | None = None
    for measure in measures:
        beat = measure.divisions * quarters_per_unit(measure.time[1])
        chords: list[SheetChord] = []
        points = sorted(measure.harmonies, key=lambda h: h[0])
        if points and points[0][0] > 1e-9 and held is not None:
            points.insert(0, (0.0, held))
        for k, (start, symbol) in enumerate(points):
            end = points[k + 1][0] if k + 1 < len(points) else measure.length
            chords.append(SheetChord(symbol, max(end - start, 0.0) / beat if beat else 1.0))
        chords = [c for c in chords if c.weight > 1e-9] or chords[-1:]
        exact = bool(chords) and all(abs(c.weight - round(c.weight)) < 1e-6 and c.weight >= 1
                                     for c in chords)
        if exact:
            for chord in chords:
                chord.weight = float(round(chord.weight))
            exact = abs(sum(c.weight for c in chords) - measure.time[0]) < 1e-9
        if not exact:
            for chord in chords:
                chord.weight = 1.0
        if chords:
            held = chords[-1].symbol
        written.append((chords, exact))
    labels: list[str] = []
    current = "A"
    for measure in measures:
        current = measure.mark or current
        labels.append(current)
    bars: list[SheetBar] = []
    for k in playing_order(measures):
        chords, exact = written[k]
        bars.append(SheetBar(chords=[SheetChord(c.symbol, c.weight) for c in chords],
                             time=measures[k].time, section=labels[k], origin=k,
                             starts_section=measures[k].mark is not None, exact=exact))
    if not bars:
        raise SourceError("the score has no measures")
    return bars

"""The model text format (llama-midi compatible) <-> notes. Pure, no I/O except ModelProfile.load.

A document is a prompt line, an optional header line, then one note a line:
``pitch duration wait velocity program`` (dx2102/llama-midi), or the subset of
those columns a model's profile names. ``wait`` is the time from this note's
onset to the next note's onset. Models trained here may put a chord marker
line (``@D:dorian``) at each chord change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from melodyflowd.errors import UserError
from melodyflowd.music.theory import Chord

PROFILE_FILE = "melodyflow.json"
PROFILE_FORMAT = "melodyflow-profile/1"
ALL_COLUMNS = ("pitch", "duration", "wait", "velocity", "program")
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MARKER_PREFIX = "@"


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What a model directory's melodyflow.json says about the text it speaks."""

    name: str
    prompt: str = "{title}"          # str.format template: title, style, key, tempo, time
    header: str = "pitch duration wait velocity instrument"  # "" for no header line
    columns: tuple[str, ...] = ALL_COLUMNS
    time_unit: str = "ms"            # "ms", or "ticks" (ticks_per_beat to a quarter note)
    ticks_per_beat: int = 12
    max_time: int = 10000            # durations and waits are clamped to this (in time_unit)
    chord_markers: bool = False
    default_program: int = 0
    default_velocity: int = 80

    def __post_init__(self) -> None:
        if not self.columns or self.columns[0] != "pitch":
            raise ValueError(f"profile {self.name}: columns must start with 'pitch'")
        unknown = set(self.columns) - set(ALL_COLUMNS)
        if unknown:
            raise ValueError(f"profile {self.name}: unknown columns {sorted(unknown)}; "
                             f"accepted: {', '.join(ALL_COLUMNS)}")
        if self.time_unit not in ("ms", "ticks"):
            raise ValueError(f"profile {self.name}: time_unit must be 'ms' or 'ticks'")

    @classmethod
    def from_dict(cls, data: dict) -> ModelProfile:
        data = dict(data)
        data.pop("format", None)
        if "columns" in data:
            data["columns"] = tuple(data["columns"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        out = {"format": PROFILE_FORMAT, **asdict(self)}
        out["columns"] = list(self.columns)
        return out

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelProfile:
        path = Path(model_dir) / PROFILE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except FileNotFoundError:
            raise UserError(f"model directory has no {PROFILE_FILE}; add one (see docs) or "
                            "pass a model trained by melodyflow", file=str(model_dir)) from None
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise UserError(f"bad model profile: {exc}", file=str(path)) from None

    def save(self, model_dir: str | Path) -> None:
        path = Path(model_dir) / PROFILE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    # -- time conversion: the bank and the engine speak ms and beats --------
    def to_units(self, ms: float, tempo: float) -> int:
        if self.time_unit == "ms":
            value = round(ms)
        else:
            value = round(ms * tempo / 60000.0 * self.ticks_per_beat)
        return max(0, min(self.max_time, value))

    def to_ms(self, units: float, tempo: float) -> float:
        if self.time_unit == "ms":
            return float(units)
        return units * 60000.0 / (tempo * self.ticks_per_beat)

    def to_beats(self, units: float, tempo: float) -> float:
        if self.time_unit == "ms":
            return units * tempo / 60000.0
        return units / self.ticks_per_beat


@dataclass(frozen=True, slots=True)
class TextNote:
    """One note line; duration and wait are in the profile's time unit."""

    pitch: int
    duration: int
    wait: int
    velocity: int = 80
    program: int = 0


@dataclass(frozen=True, slots=True)
class ChordMarker:
    marker: str      # the marker as written, without the "@"


def marker_for(chord: Chord) -> str:
    """Canonical chord marker: root name + chord-scale ("D:dorian"); "NC" for no chord.

    Spelled from the parsed chord, not the symbol, so every notation of the same
    harmony gives the same marker (a small, closed vocabulary for a small model).
    Spaces in a scale name become "-" ("C:whole-half-diminished"): a marker line is
    one word.
    """
    if chord.root is None:
        return "NC"
    return f"{PITCH_NAMES[chord.root]}:{'-'.join(chord.scale_name.split())}"


def render_prompt(profile: ModelProfile, *, title: str = "", style: str = "", key: str = "",
                  tempo: float = 120, time: str = "4/4") -> str:
    """Prompt line (and header line) that start a document; ends with a newline."""
    line = profile.prompt.format(title=title or "untitled", style=style or "jazz",
                                 key=key or "", tempo=round(tempo), time=time)
    text = " ".join(line.split()) + "\n"
    if profile.header:
        text += profile.header + "\n"
    return text


def format_note(note: TextNote, profile: ModelProfile) -> str:
    values = {"pitch": note.pitch, "duration": min(note.duration, profile.max_time),
              "wait": min(note.wait, profile.max_time), "velocity": note.velocity,
              "program": note.program}
    return " ".join(str(values[c]) for c in profile.columns) + "\n"


def format_marker(marker: str) -> str:
    return f"{MARKER_PREFIX}{marker}\n"


def parse_line(line: str, profile: ModelProfile) -> TextNote | ChordMarker | None:
    """One line -> a note, a marker, or None for anything else (prompt, header, junk)."""
    line = line.strip()
    if line.startswith(MARKER_PREFIX) and len(line) > 1 and " " not in line:
        return ChordMarker(line[1:])
    parts = line.split()
    if len(parts) != len(profile.columns) or not all(p.isdigit() for p in parts):
        return None
    values = dict(zip(profile.columns, (int(p) for p in parts), strict=True))
    pitch = values["pitch"]
    if not 0 <= pitch <= 127:
        return None
    return TextNote(pitch=pitch, duration=values.get("duration", 0), wait=values.get("wait", 0),
                    velocity=max(1, min(127, values.get("velocity", profile.default_velocity))),
                    program=values.get("program", profile.default_program))


def parse_text(text: str, profile: ModelProfile) -> list[TextNote | ChordMarker]:
    """All complete note and marker lines of a document, in order.

    The last line counts only if it ends with a newline: generation may stop
    mid-line, and a cut number ("6" of "67") must not become a note.
    """
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the final newline is unfinished (or empty)
    out: list[TextNote | ChordMarker] = []
    for line in complete:
        item = parse_line(line, profile)
        if item is not None:
            out.append(item)
    return out


def format_document(items: list[TextNote | ChordMarker], profile: ModelProfile, **prompt) -> str:
    text = render_prompt(profile, **prompt)
    for item in items:
        if isinstance(item, ChordMarker):
            if profile.chord_markers:
                text += format_marker(item.marker)
        else:
            text += format_note(item, profile)
    return text

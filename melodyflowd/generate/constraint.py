"""NoteTokenizer and MelodyControlLogitsProcessor: bend a language model toward the harmony.

The model writes note lines ``pitch duration wait velocity program`` (the columns of the
model's profile). The processor follows every row of the batch incrementally: each step
it reads only the tokens added since its last call, through a small per-row line parser,
and adds up the generated waits, so it knows the time and the chord sounding at the next
note. Where the next token starts (or continues) a pitch number it computes the allowed
pitches - the chord's pitch classes for the scale mode, within low..high, near the mean
of the last few pitches - and pushes every other pitch token down by a number of
standard deviations of the pitch-token logits (soft), or masks it (hard).

Numbers may take several tokens ("1" "27", or "12" "7" with single-digit tokenizers).
The constraint works on the digit string: a token is allowed when the digits written so
far plus its own digits are still the beginning of an allowed number, and the token that
ends the number (a space, a newline, or a " 200"-style token) only when the digits
written so far are a whole allowed number. So the first digit token is constrained and
every later one stays consistent with it.

With ``enforce_format`` (what compose uses) every position of a note line is held to the
grammar: digits where a number goes, the separator the profile expects, durations and
velocities in range, and waits bounded so that every bar gets at least
``min_notes_per_bar`` notes and at most ``max_notes_per_bar``: a wait that would leave a
bar short is never sampled, the model samples again among the waits that fit.

Per step the Python work is per row and small (the tokens added since the last call go
through the line parser; what the row may write next is a dictionary lookup on its
state); the scores of the whole batch are then changed by a few tensor operations, with
the masks gathered from a table built once per distinct constraint.

``MelodyControl`` is the processor itself and needs only torch; compose uses it as is.
``MelodyControlLogitsProcessor`` is the same class as a ``transformers.LogitsProcessor``
for ``model.generate(logits_processor=...)``; it is built on first use, so code that never
asks for it never imports transformers.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from melodyflowd.generate.metrical import metrical_choice, resolving
from melodyflowd.generate.textformat import ModelProfile
from melodyflowd.music.chart import Chart
from melodyflowd.music.instruments import CENTRE_SLACK
from melodyflowd.music.theory import Chord, pitch_classes

SCALE_MODES = ("chord-scale", "pentatonic", "chord-tones", "chromatic", "metrical")
MAX_DIGITS = 6          # longest number the parser follows; longer makes the line junk

# token kinds
OTHER, DIGITS, SPACE, NEWLINE, SPACE_DIGITS = range(5)


def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-level alphabet (printable stand-ins for raw bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _decoder_kinds(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    try:
        decoder = json.loads(backend.to_str()).get("decoder")
    except (ValueError, AttributeError):
        return set()
    kinds: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if "type" in node:
                kinds.add(str(node["type"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(decoder)
    return kinds


def token_texts(tokenizer) -> list[str]:
    """The text each token id stands for on its own (computed once per tokenizer).

    Byte-level BPE (GPT-2, Llama 3) maps the printable stand-ins back to bytes;
    sentencepiece-style pieces turn "▁" into a space and "<0x0A>" into a newline;
    word-level and other tokenizers give the token string itself.
    """
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    kinds = _decoder_kinds(tokenizer)
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    out: list[str] = []
    if "ByteLevel" in kinds:
        table = _byte_decoder()
        for tok in tokens:
            if tok is None or tok in special:
                out.append(tok or "")
                continue
            raw = bytes(table.get(ch, 63) for ch in tok) if all(ch in table for ch in tok) \
                else tok.encode("utf-8")
            out.append(raw.decode("utf-8", errors="replace"))
        return out
    sentencepiece = "Metaspace" in kinds or "ByteFallback" in kinds or "Replace" in kinds
    for tok in tokens:
        if tok is None:
            out.append("")
        elif tok in special:
            out.append(tok)
        elif sentencepiece:
            if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                try:
                    out.append(chr(int(tok[3:5], 16)))
                    continue
                except ValueError:
                    pass
            out.append(tok.replace("▁", " "))
        else:
            out.append(tok)
    return out


class NoteTokenizer:
    """Which token ids spell numbers, spaces and newlines, for any tokenizer.

    Built once per (tokenizer, profile); the per-step work then uses only small tensors
    of the digit tokens (about a thousand for Llama 3) and the per-row parser state.
    """

    def __init__(self, tokenizer, profile: ModelProfile) -> None:
        self.tokenizer = tokenizer
        self.profile = profile
        self.columns = profile.columns
        self.texts = token_texts(tokenizer)
        kinds = []
        for text in self.texts:
            if text.isascii() and text.isdigit():
                kinds.append(DIGITS)
            elif text == " ":
                kinds.append(SPACE)
            elif text == "\n":
                kinds.append(NEWLINE)
            elif len(text) > 1 and text[0] == " " and text[1:].isascii() and text[1:].isdigit():
                kinds.append(SPACE_DIGITS)
            else:
                kinds.append(OTHER)
        self.kinds = kinds
        self.implicit_space = self._detect_implicit_space()

        def group(kind: int, strip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
            ids = [i for i, k in enumerate(kinds) if k == kind]
            digits = [self.texts[i][1:] if strip else self.texts[i] for i in ids]
            return (torch.tensor(ids, dtype=torch.long),
                    torch.tensor([int(d) if len(d) <= 15 else 0 for d in digits],
                                 dtype=torch.long),
                    torch.tensor([len(d) for d in digits], dtype=torch.long),
                    torch.tensor([len(d) > 1 and d[0] == "0" for d in digits], dtype=torch.bool))

        self.dig_ids, self.dig_val, self.dig_len, self.dig_lead0 = group(DIGITS, False)
        self.sdig_ids, self.sdig_val, self.sdig_len, self.sdig_lead0 = group(SPACE_DIGITS, True)
        self.dig_ext = _Extensions(self.dig_val, self.dig_len, self.dig_lead0)
        self.sdig_ext = _Extensions(self.sdig_val, self.sdig_len, self.sdig_lead0)
        self.space_ids = torch.tensor([i for i, k in enumerate(kinds) if k == SPACE],
                                      dtype=torch.long)
        self.newline_ids = torch.tensor([i for i, k in enumerate(kinds) if k == NEWLINE],
                                        dtype=torch.long)
        if len(self.dig_ids) == 0 and len(self.sdig_ids) == 0:
            raise ValueError("this tokenizer has no number tokens; it cannot write note lines")
        if len(self.newline_ids) == 0:
            raise ValueError("this tokenizer has no newline token; it cannot write note lines")

    def _detect_implicit_space(self) -> bool:
        """True for word-level tokenizers that drop spaces (decode joins tokens with them)."""
        ids = self.tokenizer("12 34\n", add_special_tokens=False)["input_ids"]
        joined = "".join(self.texts[i] for i in ids)
        return " " not in joined and joined.replace("\n", "") == "1234"

    def text_of(self, token_id: int) -> str:
        """What a token adds to the line parser (with the implied space for word-level)."""
        if token_id >= len(self.texts):
            return "\x00"
        text = self.texts[token_id]
        if self.implicit_space and self.kinds[token_id] != NEWLINE:
            return text + " "
        return text

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        """Decode generated ids to text the profile parser reads."""
        text = "".join(self.text_of(i) for i in ids if i < len(self.texts)
                       and i not in self._special_ids)
        return text

    @property
    def _special_ids(self) -> frozenset[int]:
        cached = getattr(self, "_special_cache", None)
        if cached is None:
            cached = frozenset(getattr(self.tokenizer, "all_special_ids", []) or [])
            self._special_cache = cached
        return cached


# -- number-field constraints ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PitchSet:
    """A number field whose value must be one of `values` (the allowed pitches)."""

    values: frozenset[int]

    def accepts(self, value: int) -> bool:
        return value in self.values


@dataclass(frozen=True, slots=True)
class Range:
    """A number field whose value must be within lo..hi, with at most `digits` digits."""

    lo: int
    hi: int
    digits: int = MAX_DIGITS

    def accepts(self, value: int) -> bool:
        return self.lo <= value <= self.hi


ANY_PITCH = PitchSet(frozenset(range(128)))


class _Extensions:
    """For digit tokens at the start of a number: the values each can grow into.

    Row k holds [val * 10**k, (val + 1) * 10**k - 1], the numbers that start with the
    token's digits and have k more; computed once, so a range check is a few tensor ops.
    """

    def __init__(self, vals: torch.Tensor, lens: torch.Tensor, lead0: torch.Tensor) -> None:
        k = torch.arange(MAX_DIGITS, dtype=torch.long)
        power = torch.pow(torch.full_like(k, 10), k)
        self.low = vals[:, None] * power[None, :]
        self.high = (vals[:, None] + 1) * power[None, :] - 1
        self.length = lens[:, None] + k[None, :]
        self.usable = ((k[None, :] == 0) | (vals[:, None] > 0)) & ~lead0[:, None]

    def fits(self, field_: Range) -> torch.Tensor:
        return (self.usable & (self.length <= field_.digits) & (self.low <= field_.hi)
                & (self.high >= field_.lo)).any(dim=1)


def _prefix_ok(field_: PitchSet | Range, prefix: str, vals: torch.Tensor, lens: torch.Tensor,
               lead0: torch.Tensor, ext: _Extensions | None = None) -> torch.Tensor:
    """For digit tokens (vals, lens): is prefix + token the start of an accepted number?"""
    plen = len(prefix)
    if not plen and ext is not None and isinstance(field_, Range):
        return ext.fits(field_)
    if plen and prefix == "0":            # "0" is complete; no number continues a leading 0
        return torch.zeros_like(lead0)
    pval = int(prefix) if plen else 0
    new_len = lens + plen
    scale = torch.pow(torch.full_like(lens, 10), lens)
    new_val = pval * scale + vals
    ok = torch.ones_like(lead0) if plen else ~lead0
    if isinstance(field_, PitchSet):
        ok = ok & (new_len <= 3)
        table = _prefix_table(field_)
        key = torch.clamp(new_len, max=3) * 1000 + torch.clamp(new_val, max=999)
        return ok & table[key]
    ok = ok & (new_len <= field_.digits)
    any_fit = torch.zeros_like(ok)
    for extra in range(0, field_.digits):
        low = new_val * (10 ** extra)
        high = low + (10 ** extra - 1)
        fits = (new_len + extra <= field_.digits) & (low <= field_.hi) & (high >= field_.lo)
        if extra:
            fits = fits & (new_val > 0)     # "0" cannot be extended
        any_fit = any_fit | fits
    return ok & any_fit


_PREFIX_TABLES: dict[frozenset[int], torch.Tensor] = {}


def _prefix_table(pitches: PitchSet) -> torch.Tensor:
    table = _PREFIX_TABLES.get(pitches.values)
    if table is None:
        table = torch.zeros(4000, dtype=torch.bool)
        keys = [n * 1000 + int(str(p)[:n]) for p in pitches.values
                for n in range(1, len(str(p)) + 1)]
        if keys:
            table[torch.tensor(keys)] = True
        if len(_PREFIX_TABLES) > 4096:
            _PREFIX_TABLES.clear()
        _PREFIX_TABLES[pitches.values] = table
    return table


RANGE_SCAN = 5000      # ranges up to this many values are scanned in Python


def _range_continuations(nt: NoteTokenizer, field_: PitchSet | Range, prefix: str
                         ) -> torch.Tensor | None:
    """Digit tokens that continue `prefix` toward a number of a small Range, found from the
    numbers themselves (what _prefix_ok computes, without a dozen tensor operations a
    call); None where _prefix_ok must do it (no prefix, a pitch set, a large range)."""
    if not isinstance(field_, Range) or not prefix or prefix[0] == "0" or \
            field_.hi - field_.lo > RANGE_SCAN:
        return None
    by_text = nt.__dict__.get("_digit_ids_by_text")
    if by_text is None:
        by_text = {}
        for token_id in nt.dig_ids.tolist():
            by_text.setdefault(nt.texts[token_id], []).append(token_id)
        nt._digit_ids_by_text = by_text
    plen = len(prefix)
    pieces: set[str] = set()
    for n in range(max(field_.lo, 0), field_.hi + 1):
        text = str(n)
        if plen < len(text) <= field_.digits and text.startswith(prefix):
            rest = text[plen:]
            pieces.update(rest[:k] for k in range(1, len(rest) + 1))
    ids = sorted(i for piece in pieces for i in by_text.get(piece, ()))
    return torch.tensor(ids, dtype=torch.long)


def _whole_ok(field_: PitchSet | Range, vals: torch.Tensor, lens: torch.Tensor,
              lead0: torch.Tensor) -> torch.Tensor:
    """For word-level tokenizers: is each digit token a whole accepted number?"""
    ok = ~lead0
    if isinstance(field_, PitchSet):
        allowed = torch.tensor(sorted(field_.values), dtype=torch.long)
        return ok & (lens <= 3) & torch.isin(vals, allowed)
    return ok & (lens <= field_.digits) & (vals >= field_.lo) & (vals <= field_.hi)


# -- per-row state ----------------------------------------------------------------------

@dataclass(slots=True)
class LineState:
    """Where a row is inside the current line: column, digits of the number being written."""

    col: int = 0                 # column being written; -1 = not a note line (until "\n")
    digits: str = ""
    values: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.col = 0
        self.digits = ""
        self.values = []


@dataclass(slots=True)
class RowState:
    line: LineState = field(default_factory=LineState)
    time: float = 0.0            # onset (beats from the chart start) of the note being written
    notes: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    bar_counts: dict[int, int] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=16))
    done: bool = False           # reached the end time: no more constraint
    end: float | None = None     # the row is done when its time reaches this beat
    pitch_field: PitchSet | None = None   # allowed pitches for the note being written
    wait_field: Range | None = None       # allowed waits for it (both change only per note)


class Timeline:
    """The chart's chords on one beat axis (the form unrolled once, looping after)."""

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self.beats_per_bar = chart.beats_per_bar
        self.n_bars = len(chart.bars)
        self.total_beats = self.n_bars * self.beats_per_bar
        spans: list[tuple[float, Chord]] = []
        for bar in chart.bars:
            base = bar.index * self.beats_per_bar
            for span in bar.chords:
                spans.append((base + span.start_beat, span.chord))
        self.span_starts = [s for s, _ in spans]
        self.span_chords = [c for _, c in spans]

    def bar_of(self, t: float) -> int:
        return int(math.floor(t / self.beats_per_bar + 1e-9))

    def span_index(self, t: float) -> int:
        """Index of the chord span sounding at absolute beat t (counting on across loops)."""
        loops, local = divmod(t + 1e-9, self.total_beats)
        lo, hi = 0, len(self.span_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.span_starts[mid] <= local:
                lo = mid
            else:
                hi = mid - 1
        return int(loops) * len(self.span_starts) + lo

    def chord_at(self, t: float) -> Chord:
        return self.span_chords[self.span_index(t) % len(self.span_chords)]


def allowed_pitch_classes(chord: Chord, mode: str) -> tuple[int, ...]:
    """The pitch classes a scale mode allows over a chord (theory.pitch_classes)."""
    return pitch_classes(chord, mode)


class MelodyControl:
    """Constrain pitches (and with enforce_format, the whole note-line grammar) per row.

    The prompt must end at the start of a line (a newline). The first call only notes
    the prompt length; later calls read the tokens added since. Called like a
    transformers LogitsProcessor: ``scores = proc(input_ids, scores)``.
    """

    def __init__(self, note_tokenizer: NoteTokenizer, chart: Chart, *,
                 scale: str = "chord-scale", hard: bool = False, penalty: float = 2.0,
                 low: int = 55, high: int = 84, trend_notes: int = 4, trend_range: int = 5,
                 centre: int | None = None,
                 tempo: float | None = None, start_beat: float | Sequence[float] = 0.0,
                 end_beat: float | Sequence[float] | None = None,
                 enforce_format: bool = False,
                 min_notes_per_bar: int = 0, max_notes_per_bar: int | None = None,
                 min_wait_beats: float = 0.0) -> None:
        if scale not in SCALE_MODES:
            raise ValueError(f"scale must be one of {', '.join(SCALE_MODES)}, not {scale!r}")
        if not 0 <= low <= high <= 127:
            raise ValueError(f"pitch range {low}..{high} is not within 0..127")
        self.nt = note_tokenizer
        self.profile = note_tokenizer.profile
        self.columns = self.profile.columns
        self.timeline = Timeline(chart)
        self.scale = scale
        self.hard = hard
        self.penalty = penalty
        self.low, self.high = low, high
        self.centre = centre            # the register's median: the trend stays near it
        self.trend_notes = trend_notes
        self.trend_range = trend_range
        self.tempo = float(tempo if tempo is not None else chart.tempo)
        self.start_beat = start_beat
        self.end_beat = end_beat
        self.enforce_format = enforce_format
        self.min_notes = min_notes_per_bar
        self.max_notes = max_notes_per_bar
        self.min_wait_beats = min_wait_beats
        self.units_per_beat = (60000.0 / self.tempo if self.profile.time_unit == "ms"
                               else float(self.profile.ticks_per_beat))
        self.rows: list[RowState] = []
        self._seen: int | None = None
        # What a state allows depends only on these settings and the tokenizer: the caches
        # live on the NoteTokenizer, so the next run (a regeneration) starts warm.
        shared = note_tokenizer.__dict__.setdefault("_constraint_caches", {})
        self._mask_cache: dict[tuple, Any] = shared.setdefault("allowed", {})
        self._pitch_cache: dict[tuple, PitchSet] = shared.setdefault(
            ("pitch", low, high, trend_notes, trend_range, centre), {})
        self._plan_cache: dict[tuple, tuple[int, int, int]] = shared.setdefault(
            ("plan", hard, enforce_format), {})
        self._masks: _MaskTable = shared.setdefault(("masks", hard, enforce_format),
                                                    _MaskTable())
        self._chars: dict[int, str] = shared.setdefault("chars", {})
        max_time = self.profile.max_time
        self._fixed_fields = {
            "duration": Range(1, max_time, len(str(max_time))),
            "velocity": Range(1, 127, 3),
            "program": Range(0, 127, 3),
        }

    # -- following the rows -------------------------------------------------------------
    def reset(self) -> None:
        self.rows = []
        self._seen = None

    def _start(self, batch: int, length: int) -> None:
        """Rows start at start_beat (one value, or one a row: a batch may hold parts of the
        chart side by side) and are done at end_beat."""
        starts = self.start_beat if isinstance(self.start_beat, Sequence) else \
            [self.start_beat] * batch
        ends = self.end_beat if isinstance(self.end_beat, Sequence) else [self.end_beat] * batch
        if len(starts) != batch or len(ends) != batch:
            raise ValueError(f"{len(starts)} start and {len(ends)} end beats for {batch} rows")
        self.rows = [RowState(time=float(s), end=e) for s, e in zip(starts, ends, strict=True)]
        self._seen = length

    def feed(self, row: int, token_id: int) -> None:
        """Advance one row by one token (characters through the line parser)."""
        state = self.rows[row]
        text = self._chars.get(token_id)
        if text is None:
            text = self._chars[token_id] = self.nt.text_of(token_id)
        line = state.line
        if 0 <= line.col < len(self.columns) and text.isascii() and text.isdigit() and \
                len(line.digits) + len(text) <= MAX_DIGITS:
            line.digits += text                     # the common case: a digit group
            return
        for ch in text:
            self._feed_char(state, ch)

    def _feed_char(self, state: RowState, ch: str) -> None:
        line = state.line
        if ch == "\n":
            if line.col >= 0:
                if line.digits:
                    line.values.append(int(line.digits))
                if len(line.values) == len(self.columns) and line.values[0] <= 127:
                    self._note_done(state, tuple(line.values))
            line.reset()
            return
        if line.col < 0:
            return
        if "0" <= ch <= "9":
            if len(line.digits) >= MAX_DIGITS or line.col >= len(self.columns):
                line.col = -1
            else:
                line.digits += ch
        elif ch == " ":
            if line.digits:
                line.values.append(int(line.digits))
                line.digits = ""
                line.col += 1
        else:
            line.col = -1

    def _note_done(self, state: RowState, values: tuple[int, ...]) -> None:
        named = dict(zip(self.columns, values, strict=True))
        onset = state.time
        state.notes.append((onset, values))
        bar = self.timeline.bar_of(onset)
        state.bar_counts[bar] = state.bar_counts.get(bar, 0) + 1
        state.recent.append(named["pitch"])
        wait = min(named.get("wait", 0), self.profile.max_time)
        state.time = onset + self.profile.to_beats(wait, self.tempo)
        state.pitch_field = state.wait_field = None
        if state.end is not None and state.time >= state.end - 1e-9:
            state.done = True

    # -- what is allowed ----------------------------------------------------------------
    def pitches_for(self, state: RowState) -> PitchSet:
        """Allowed pitches for the note a row is writing (chord at its onset, range, trend)."""
        if state.pitch_field is not None:
            return state.pitch_field
        chord = self.timeline.chord_at(state.time)
        resolve_from = None
        if self.scale == "metrical":
            pcs, resolve_from = self._metrical(state, chord)
        else:
            pcs = frozenset(allowed_pitch_classes(chord, self.scale))
        recent = list(state.recent)[-self.trend_notes:] if self.trend_notes > 0 else []
        center = round(sum(recent) / len(recent)) if recent else None
        if self.centre is not None:
            center = self.centre if center is None else \
                min(max(center, self.centre - CENTRE_SLACK), self.centre + CENTRE_SLACK)
        key = (pcs, center, resolve_from)
        cached = self._pitch_cache.get(key)
        if cached is None:
            candidates = [p for p in range(self.low, self.high + 1) if p % 12 in pcs] or \
                list(range(self.low, self.high + 1))
            if resolve_from is not None:
                candidates = resolving(candidates, resolve_from)
            elif center is not None:
                near = [p for p in candidates if abs(p - center) <= self.trend_range]
                if not near:
                    near = sorted(candidates, key=lambda p: (abs(p - center), p))[:3]
                candidates = near
            cached = PitchSet(frozenset(candidates))
            self._pitch_cache[key] = cached
        state.pitch_field = cached
        return cached

    def _metrical(self, state: RowState, chord: Chord) -> tuple[frozenset[int], int | None]:
        """The metrical mode's favoured pitch classes at this note (generate/metrical.py)."""
        tl = self.timeline
        previous = None
        new_span = True
        if state.notes:
            onset = state.notes[-1][0]
            new_span = tl.span_index(onset) != tl.span_index(state.time)
            previous = (state.recent[-1], tl.chord_at(onset))
        return metrical_choice(chord, state.time, tl.beats_per_bar, new_span, previous)

    def wait_range(self, state: RowState) -> Range:
        """Waits (in profile units) that keep every bar at min..max notes."""
        upb = self.units_per_beat
        now = state.time
        tl = self.timeline
        bar = tl.bar_of(now)
        count = state.bar_counts.get(bar, 0) + 1         # including the note being written
        mw = self.min_wait_beats
        end = (bar + 1) * tl.beats_per_bar
        if self.min_notes and count < self.min_notes:
            limit = end - (self.min_notes - count - 1) * mw
        elif self.min_notes:
            limit = end + tl.beats_per_bar - (self.min_notes - 1) * mw
        else:
            limit = now + self.profile.max_time / upb + 1
        hi = math.ceil((limit - now) * upb - 1e-6) - 1
        lo = math.ceil(mw * upb - 1e-6)
        if self.max_notes is not None and count >= self.max_notes:
            lo = max(lo, math.ceil((end - now) * upb - 1e-6))
        hi = min(hi, self.profile.max_time)
        lo = max(0, min(lo, hi))
        hi = max(hi, lo)
        return Range(lo, hi, len(str(self.profile.max_time)))

    def _field(self, state: RowState, col: int) -> PitchSet | Range:
        name = self.columns[col]
        if name == "pitch":
            return self.pitches_for(state)
        if name == "wait" and self.enforce_format:
            if state.wait_field is None:
                state.wait_field = self.wait_range(state)
            return state.wait_field
        return self._fixed_fields.get(name, _ANY_NUMBER)

    def allowed_tokens(self, state: RowState, field_: PitchSet | Range, col: int
                       ) -> torch.Tensor:
        """Token ids that keep the current number (col, digits) within `field_`."""
        nt = self.nt
        line = state.line
        last = col == len(self.columns) - 1
        nxt = None if last or nt.implicit_space else self._field(state, col + 1)
        key = (field_, col, line.digits, nxt)
        cached = self._mask_cache.get(key)
        if cached is not None:
            return cached
        parts: list[torch.Tensor] = []
        if nt.implicit_space:
            parts.append(self._digit_tokens("whole", field_, ""))
        else:
            parts.append(self._digit_tokens("digits", field_, line.digits))
            if line.digits and field_.accepts(int(line.digits)) and \
                    not (len(line.digits) > 1 and line.digits[0] == "0"):
                if last:
                    parts.append(nt.newline_ids)
                else:
                    parts.append(nt.space_ids)
                    parts.append(self._digit_tokens("space-digits", nxt, ""))
        result = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        if len(self._mask_cache) > 20000:
            self._mask_cache.clear()
        self._mask_cache[key] = result
        return result

    def _digit_tokens(self, group: str, field_: PitchSet | Range, prefix: str
                      ) -> torch.Tensor:
        """Digit tokens of a group that fit a field after `prefix` (memoised: the same
        field and prefix come back under many line states)."""
        key = ("tokens", group, field_, prefix)
        found = self._mask_cache.get(key)
        if found is None:
            nt = self.nt
            if group == "whole":
                found = nt.dig_ids[_whole_ok(field_, nt.dig_val, nt.dig_len, nt.dig_lead0)]
            elif group == "digits":
                found = _range_continuations(nt, field_, prefix)
                if found is None:
                    found = nt.dig_ids[_prefix_ok(field_, prefix, nt.dig_val, nt.dig_len,
                                                  nt.dig_lead0, nt.dig_ext)]
            else:
                found = nt.sdig_ids[_prefix_ok(field_, prefix, nt.sdig_val, nt.sdig_len,
                                               nt.sdig_lead0, nt.sdig_ext)]
            self._mask_cache[key] = found
        return found

    def _implicit_line_end(self, state: RowState) -> bool:
        return self.nt.implicit_space and state.line.col >= len(self.columns)

    def _pitch_tokens(self, state: RowState, col: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(allowed, candidates, candidates that are not allowed) for a pitch position."""
        field_ = self.pitches_for(state)
        nxt = None if col + 1 >= len(self.columns) else self._field(state, col + 1)
        key = ("pitch", field_, col, state.line.digits, nxt)
        cached = self._mask_cache.get(key)
        if cached is None:
            allowed = self.allowed_tokens(state, field_, col)
            candidates = self.allowed_tokens(state, ANY_PITCH, col)
            if len(allowed):
                ok = set(allowed.tolist())
                bad = torch.tensor([c for c in candidates.tolist() if c not in ok],
                                   dtype=torch.long)
            else:
                bad = allowed
            cached = (allowed, candidates, bad)
            self._mask_cache[key] = cached
        return cached

    # -- the step -----------------------------------------------------------------------
    def update(self, input_ids: torch.Tensor) -> None:
        """Read the tokens added since the last call (the first call marks the prompt end)."""
        batch, length = input_ids.shape
        if self._seen is None or len(self.rows) != batch:
            self._start(batch, length)
        elif length > self._seen:
            self.feed_ids(input_ids[:, self._seen:].tolist())
            self._seen = length

    def feed_ids(self, new: list[list[int]]) -> None:
        """Advance every row by its new tokens (one list a row)."""
        for row, ids in enumerate(new):
            for token_id in ids:
                self.feed(row, token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor
                 ) -> torch.FloatTensor:
        self.update(input_ids)
        return self.apply(scores)

    def plan(self, state: RowState) -> tuple[int, int, int]:
        """What a row's next token may be: (keep, candidates, penalized) mask ids, -1 none.

        keep: only these tokens stay (others -inf); candidates/penalized: the soft penalty
        (std of the candidates' logits) applies to the penalized ones.
        """
        line = state.line
        if state.done or line.col < 0:
            return _NO_PLAN
        if self._implicit_line_end(state):
            if not self.enforce_format:
                return _NO_PLAN
            return (self._masks.keep(("newline",), self.nt.newline_ids), -1, -1)
        col = line.col
        if col >= len(self.columns):
            return _NO_PLAN
        if self.columns[col] == "pitch":
            field_ = self.pitches_for(state)
            nxt = None if col + 1 >= len(self.columns) else self._field(state, col + 1)
            key = ("pitch", field_, col, line.digits, nxt)
        elif self.enforce_format:
            key = ("other", self._field(state, col), col, line.digits,
                   None if col + 1 >= len(self.columns) or self.nt.implicit_space
                   else self._field(state, col + 1))
        else:
            return _NO_PLAN
        cached = self._plan_cache.get(key)
        if cached is None:
            if len(self._plan_cache) > 50000:
                self._plan_cache.clear()
            cached = self._plan_cache[key] = self._make_plan(state, col, key)
        return cached

    def _make_plan(self, state: RowState, col: int, key: tuple) -> tuple[int, int, int]:
        masks = self._masks
        if self.columns[col] != "pitch":
            keep = self.allowed_tokens(state, self._field(state, col), col)
            # nothing fits (cannot happen with the bounds above): end the line, drop the note
            ids = keep if len(keep) else self.nt.newline_ids
            return (masks.keep(key, ids), -1, -1)
        allowed, candidates, bad = self._pitch_tokens(state, col)
        if self.hard:
            if self.enforce_format:
                if not len(allowed):
                    return _NO_PLAN
                return (masks.keep(("allowed", *key), allowed), -1, -1)
            if not len(bad):
                return _NO_PLAN
            return (masks.drop(("bad", *key), bad), -1, -1)
        keep = -1
        if self.enforce_format and len(candidates):
            keep = masks.keep(("candidates", *key), candidates)
        if len(candidates) < 2 or not len(bad):
            return (keep, -1, -1)
        return (keep, masks.keep(("candidates", *key), candidates),
                masks.keep(("bad", *key), bad))

    def apply(self, scores: torch.Tensor, rows: Sequence[int] | None = None
              ) -> torch.Tensor:
        """Constrain `scores` ([batch, vocab]) in place for the rows' current states.

        `rows` (optional): the row of `self.rows` for each row of `scores`, when scores
        hold only some rows (compose drops finished rows).
        """
        states = self.rows if rows is None else [self.rows[r] for r in rows]
        keep_rows: list[int] = []
        keep_ids: list[int] = []
        soft_rows: list[int] = []
        soft_ids: list[int] = []
        try:
            plans = [self.plan(state) for state in states]
        except _TableFull:
            self._masks.clear()
            self._plan_cache.clear()
            plans = [self.plan(state) for state in states]
        for i, (keep, cand, bad) in enumerate(plans):
            if cand >= 0:
                soft_rows.append(i)
                soft_ids += (cand, bad)
            if keep >= 0:
                keep_rows.append(i)
                keep_ids.append(keep)
        if not keep_rows and not soft_rows:
            return scores
        table = self._masks.dense(scores.shape[1])
        if soft_rows:
            index = torch.tensor(soft_rows)
            masks = table[torch.tensor(soft_ids)].view(len(soft_rows), 2, -1)
            scores[index] = _penalized(scores[index], masks[:, 0], masks[:, 1], self.penalty)
        if keep_rows:
            if len(keep_rows) == scores.shape[0]:
                scores.masked_fill_(~table[torch.tensor(keep_ids)], -math.inf)
            else:
                index = torch.tensor(keep_rows)
                scores[index] = scores[index].masked_fill(~table[torch.tensor(keep_ids)],
                                                          -math.inf)
        return scores


_NO_PLAN = (-1, -1, -1)
_ANY_NUMBER = Range(0, 10 ** MAX_DIGITS - 1)


def _penalized(scores: torch.Tensor, candidates: torch.Tensor, bad: torch.Tensor,
               penalty: float) -> torch.Tensor:
    """scores - penalty * (std of each row's finite candidate scores) on the bad tokens."""
    finite = candidates & torch.isfinite(scores)
    n = finite.sum(dim=1, keepdim=True)
    values = torch.where(finite, scores, 0.0)
    mean = values.sum(dim=1, keepdim=True) / n.clamp(min=1)
    var = torch.where(finite, (scores - mean) ** 2, 0.0).sum(dim=1, keepdim=True) \
        / (n - 1).clamp(min=1)
    std = var.sqrt()
    std = torch.where(torch.isfinite(std) & (std > 0), std, 1.0)
    std = torch.where(n >= 2, std, 0.0)
    return scores - bad * (penalty * std)


class _MaskTable:
    """Token masks by key, as rows of one boolean table (one table a vocabulary width)."""

    LIMIT = 1 << 16          # distinct masks kept; past that the table starts again

    def __init__(self) -> None:
        self._index: dict[tuple, int] = {}
        self._specs: list[tuple[torch.Tensor, bool]] = []   # (ids, True: keep / False: drop)
        self._dense: dict[int, tuple[torch.Tensor, int]] = {}  # width -> (table, rows built)

    def keep(self, key: tuple, ids: torch.Tensor) -> int:
        """A mask that is True on `ids` only."""
        return self._add(("keep", *key), ids, True)

    def drop(self, key: tuple, ids: torch.Tensor) -> int:
        """A mask that is True everywhere but on `ids`."""
        return self._add(("drop", *key), ids, False)

    def _add(self, key: tuple, ids: torch.Tensor, keep: bool) -> int:
        found = self._index.get(key)
        if found is None:
            if len(self._specs) >= self.LIMIT:
                raise _TableFull
            found = self._index[key] = len(self._specs)
            self._specs.append((ids, keep))
        return found

    def clear(self) -> None:
        self._index.clear()
        self._specs.clear()
        self._dense.clear()

    def dense(self, width: int) -> torch.Tensor:
        table, built = self._dense.get(width, (None, 0))
        need = len(self._specs)
        if table is None or table.shape[0] < need:       # grow by doubling
            bigger = torch.zeros(max(64, 2 * need), width, dtype=torch.bool)
            if table is not None:
                bigger[:built] = table[:built]
            table = bigger
        for row in range(built, need):
            ids, keep = self._specs[row]
            table[row].fill_(not keep)
            table[row, ids[ids < width]] = keep
        self._dense[width] = (table, need)
        return table


class _TableFull(Exception):
    """More distinct masks than the table keeps: clear the caches and plan again."""


def __getattr__(name: str):
    """MelodyControlLogitsProcessor: built (and transformers imported) on first use."""
    if name == "MelodyControlLogitsProcessor":
        cls = _logits_processor_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _logits_processor_class() -> type:
    from transformers import LogitsProcessor

    class MelodyControlLogitsProcessor(MelodyControl, LogitsProcessor):
        """MelodyControl as a transformers LogitsProcessor, for model.generate()."""

    MelodyControlLogitsProcessor.__module__ = __name__
    MelodyControlLogitsProcessor.__qualname__ = "MelodyControlLogitsProcessor"
    return MelodyControlLogitsProcessor

"""MelodyControl: follows every row's note lines and bends (or masks) its next token's
scores toward the harmony and the note-line grammar (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from melodyflowd.generate.constraint.masks import MaskTable, TableFull, penalized
from melodyflowd.generate.constraint.numbers import (
    ANY_NUMBER,
    ANY_PITCH,
    MAX_DIGITS,
    PitchSet,
    Range,
    _prefix_ok,
    _range_continuations,
    _whole_ok,
)
from melodyflowd.generate.constraint.state import RowState
from melodyflowd.generate.constraint.tokens import NoteTokenizer
from melodyflowd.generate.metrical import metrical_choice, resolving
from melodyflowd.music.chart import Chart
from melodyflowd.music.instruments import CENTRE_SLACK, SEAM_BEATS, SEAM_RANGE, arc_offset
from melodyflowd.music.scale_modes import SCALE_MODES
from melodyflowd.music.theory import Chord, pitch_classes
from melodyflowd.music.timeline import Timeline


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
        shared = note_tokenizer.constraint_caches
        self._mask_cache: dict[tuple, Any] = shared.setdefault("allowed", {})
        self._pitch_cache: dict[tuple, PitchSet] = shared.setdefault(
            ("pitch", low, high, trend_notes, trend_range, centre), {})
        self._plan_cache: dict[tuple, tuple[int, int, int]] = shared.setdefault(
            ("plan", hard, enforce_format), {})
        self._masks: MaskTable = shared.setdefault(("masks", hard, enforce_format),
                                                    MaskTable())
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

    def start(self, batch: int, length: int) -> None:
        """Begin `batch` rows after a prompt of `length` tokens. Rows start at start_beat
        (one value, or one a row: a batch may hold parts of the chart side by side) and are
        done at end_beat."""
        starts = self.start_beat if isinstance(self.start_beat, Sequence) else \
            [self.start_beat] * batch
        ends = self.end_beat if isinstance(self.end_beat, Sequence) else [self.end_beat] * batch
        if len(starts) != batch or len(ends) != batch:
            raise ValueError(f"{len(starts)} start and {len(ends)} end beats for {batch} rows")
        total = self.timeline.total_beats
        self.rows = [RowState(time=float(s), end=e, seam_start=s > 0,
                              seam_end=e - SEAM_BEATS if e is not None and e < total else None)
                     for s, e in zip(starts, ends, strict=True)]
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
        resolve_from = back = None
        if self.scale == "metrical":
            pcs, resolve_from = self._metrical(state, chord)
            if resolve_from is not None and len(state.recent) >= 2:
                back = state.recent[-2]
        else:
            pcs = frozenset(allowed_pitch_classes(chord, self.scale))
        recent = list(state.recent)[-self.trend_notes:] if self.trend_notes > 0 else []
        center = round(sum(recent) / len(recent)) if recent else None
        reach = self.trend_range
        if self.centre is not None:
            middle = self.centre + arc_offset(state.time)
            center = middle if center is None else \
                min(max(center, middle - CENTRE_SLACK), middle + CENTRE_SLACK)
            if (state.seam_start and not state.notes) or \
                    (state.seam_end is not None and state.time >= state.seam_end):
                center, reach = middle, SEAM_RANGE    # where parts meet: near the same pitch
        key = (pcs, center, resolve_from, back, reach)
        cached = self._pitch_cache.get(key)
        if cached is None:
            candidates = [p for p in range(self.low, self.high + 1) if p % 12 in pcs] or \
                list(range(self.low, self.high + 1))
            if resolve_from is not None:
                candidates = resolving(candidates, resolve_from, back)
            elif center is not None:
                near = [p for p in candidates if abs(p - center) <= reach]
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
        beat, bar_len = tl.in_bar(state.time)          # in its own bar, at its length
        return metrical_choice(chord, beat, bar_len, new_span, previous)

    def wait_range(self, state: RowState) -> Range:
        """Waits (in profile units) that keep every bar at min..max notes."""
        upb = self.units_per_beat
        now = state.time
        tl = self.timeline
        bar = tl.bar_of(now)
        count = state.bar_counts.get(bar, 0) + 1         # including the note being written
        mw = self.min_wait_beats
        end = tl.bar_start(bar + 1)                  # each bar at its own meter's length
        if self.min_notes and count < self.min_notes:
            limit = end - (self.min_notes - count - 1) * mw
        elif self.min_notes:
            limit = tl.bar_start(bar + 2) - (self.min_notes - 1) * mw
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
        return self._fixed_fields.get(name, ANY_NUMBER)

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
            self.start(batch, length)
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
        except TableFull:
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
            scores[index] = penalized(scores[index], masks[:, 0], masks[:, 1], self.penalty)
        if keep_rows:
            if len(keep_rows) == scores.shape[0]:
                scores.masked_fill_(~table[torch.tensor(keep_ids)], -math.inf)
            else:
                index = torch.tensor(keep_rows)
                scores[index] = scores[index].masked_fill(~table[torch.tensor(keep_ids)],
                                                          -math.inf)
        return scores


_NO_PLAN = (-1, -1, -1)

"""The metrical scale mode: chord tones and tensions where the harmony is heard, passing and
approach tones between, resolving by step; and the processor holding a line to it."""

from __future__ import annotations

import pytest
import torch

from melodyflowd.generate.constraint import MelodyControlLogitsProcessor, NoteTokenizer
from melodyflowd.generate.metrical import (
    avoid_notes,
    is_strong,
    metrical_choice,
    resolving,
    strong_pitch_classes,
    weak_pitch_classes,
)
from melodyflowd.generate.textformat import ModelProfile, TextNote, parse_text
from melodyflowd.music.theory import parse_chord
from tests.support.tiny_model import build_tokenizer, hand_chart

C, D, E, F, G, A, B = 0, 2, 4, 5, 7, 9, 11


def test_avoid_notes_are_scale_notes_a_half_step_above_a_chord_tone():
    assert avoid_notes(parse_chord("Cmaj7")) == {F}
    assert avoid_notes(parse_chord("C7")) == {F}
    assert avoid_notes(parse_chord("Dm7")) == set()
    assert avoid_notes(parse_chord("NC")) == set()


def test_strong_notes_take_chord_tones_and_tensions_weak_ones_also_approach_tones():
    cmaj7 = parse_chord("Cmaj7")
    assert strong_pitch_classes(cmaj7) == {C, D, E, G, A, B}
    weak = weak_pitch_classes(cmaj7)
    assert set(cmaj7.scale) <= weak
    assert 1 in weak and 3 in weak and 6 in weak          # Db, D# / Eb, F#: approaches
    assert 8 in weak                                       # Ab: a half step above G
    assert strong_pitch_classes(parse_chord("NC")) == set(range(12))


@pytest.mark.parametrize("onset, new_span, strong", [
    (0.0, False, True), (2.0, False, True), (4.0, False, True), (1.0, False, False),
    (0.5, False, False), (3.5, False, False), (1.5, True, True)])
def test_strong_is_beat_1_beat_3_or_a_new_chord(onset, new_span, strong):
    assert is_strong(onset, 4.0, new_span) is strong


def test_a_note_outside_the_scale_resolves_by_step_into_it():
    c7 = parse_chord("C7")
    pcs, source = metrical_choice(c7, 1.5, 4.0, False, (61, c7))      # Db4 over C7
    assert source == 61
    assert pcs <= set(c7.scale)
    assert resolving([55, 57, 60, 62, 64], 61) == [60, 62]
    assert resolving([50, 70], 61) == [50, 70]                        # none near: all
    assert resolving([55, 57, 60, 62, 64], 61, back=60) == [62]       # on, not back: no trill
    assert resolving([60, 64], 61, back=60) == [60]                   # back when it must
    pcs, source = metrical_choice(c7, 1.5, 4.0, False, (64, c7))      # E: in the scale
    assert source is None and pcs == weak_pitch_classes(c7)


@pytest.fixture(scope="module")
def nt() -> NoteTokenizer:
    return NoteTokenizer(build_tokenizer(), ModelProfile(name="t"))


def test_hard_metrical_line_lands_on_the_chord_and_resolves_its_chromatic_notes(nt):
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), scale="metrical", hard=True,
                                        low=55, high=84, enforce_format=True,
                                        min_notes_per_bar=2, max_notes_per_bar=8,
                                        min_wait_beats=0.125)
    gen = torch.Generator().manual_seed(3)
    prompt = nt.encode("Test\n")
    ids = torch.tensor([prompt] * 3)
    for _ in range(200):
        scores = proc(ids, torch.randn(3, len(nt.texts) + 5, generator=gen) * 3)
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
    proc.update(ids)
    tl = proc.timeline
    checked = strong_seen = outside_seen = 0
    for r, row in enumerate(ids.tolist()):
        notes = [n for n in parse_text(nt.decode(row[len(prompt):]), nt.profile)
                 if isinstance(n, TextNote)]
        tracked = proc.rows[r].notes
        assert [n.pitch for n in notes] == [v[0] for _, v in tracked]
        for k, (onset, values) in enumerate(tracked):
            pitch = values[0]
            chord = tl.chord_at(onset)
            new_span = k == 0 or tl.span_index(tracked[k - 1][0]) != tl.span_index(onset)
            previous = tracked[k - 1][1][0] if k else None
            before = tl.chord_at(tracked[k - 1][0]) if k else None
            if previous is not None and previous % 12 not in before.scale:
                outside_seen += 1
                assert 0 < abs(pitch - previous) <= 2 or not any(
                    0 < abs(p - previous) <= 2 and p % 12 in chord.scale
                    for p in range(55, 85)), (onset, previous, pitch)
            elif is_strong(*tl.in_bar(onset), new_span):
                strong_seen += 1
                assert pitch % 12 in strong_pitch_classes(chord), (onset, pitch)
            else:
                assert pitch % 12 in weak_pitch_classes(chord), (onset, pitch)
            checked += 1
    assert checked >= 20 and strong_seen >= 3

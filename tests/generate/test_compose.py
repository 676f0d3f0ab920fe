"""compose_bank with tiny random models: reproducible, every bar played, pitches in range
and in scale, chord markers at chord changes, short-context models, ticks profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from melodyflowd.generate import compose
from melodyflowd.generate.compose import compose_bank, generate_rows
from melodyflowd.generate.constraint import Timeline, allowed_pitch_classes
from melodyflowd.generate.model import load_model
from melodyflowd.generate.textformat import (
    ChordMarker,
    ModelProfile,
    TextNote,
    marker_for,
    parse_text,
)
from melodyflowd.music.phrases import bank_to_json
from melodyflowd.settings import GenerationSettings
from tests.support.tiny_model import build_tiny_model, hand_chart


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny")))


@pytest.fixture(scope="module")
def loaded_plain(tmp_path_factory):
    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("p") / "plain",
                                           chord_markers=False, seed=5)))


SETTINGS = GenerationSettings(variations=3, seed=11)


def _chord_of(chart, bar, beat):
    return chart.chord_at(bar, beat)


def test_reproducible_with_seed_and_different_without(loaded):
    chart = hand_chart(6)
    first = compose_bank(chart, loaded, SETTINGS)
    again = compose_bank(chart, loaded, SETTINGS)
    other = compose_bank(chart, loaded, replace(SETTINGS, seed=12))
    assert first == again
    assert bank_to_json(first) == bank_to_json(again)
    assert first.variations != other.variations
    assert first.seed == 11 and other.seed == 12
    unseeded = compose_bank(chart, loaded, replace(SETTINGS, seed=None, variations=1))
    assert isinstance(unseeded.seed, int)     # the seed used is recorded, so it can be replayed
    replay = compose_bank(chart, loaded, replace(SETTINGS, seed=unseeded.seed, variations=1))
    assert replay.variations == unseeded.variations


@pytest.mark.parametrize("time", [(4, 4), (3, 4)])
def test_every_bar_has_notes_in_range_and_in_scale_with_hard_mask(loaded, time):
    chart = hand_chart(8, time=time)
    settings = replace(SETTINGS, constraint="hard", scale="chord-scale", instrument=None,
                       low=60, high=79, variations=4)
    bank = compose_bank(chart, loaded, settings)
    assert bank.n_variations == 4 and len(bank.bars) == 8
    assert bank.time == time
    bpb = chart.beats_per_bar
    for variation in bank.variations:
        assert [p.bar for p in variation] == list(range(8))
        for phrase in variation:
            assert len(phrase.notes) >= compose.MIN_NOTES_PER_BAR
            beats = [n.beat for n in phrase.notes]
            assert beats == sorted(beats) and beats[0] >= 0 and beats[-1] < bpb
            for note in phrase.notes:
                chord = _chord_of(chart, phrase.bar, note.beat)
                assert note.chord == chord.symbol
                assert 60 <= note.pitch <= 79
                assert note.pitch % 12 in allowed_pitch_classes(chord, "chord-scale")
                assert 1 <= note.velocity <= 127 and note.duration_ms >= 1


def test_soft_penalty_keeps_most_notes_in_scale(loaded):
    # A random model's pitch logits are nearly flat (tiny std), so it takes many std devs
    # to matter; a trained model's logits spread far wider.
    chart = hand_chart(8)
    soft = compose_bank(chart, loaded, replace(SETTINGS, scale="chord-tones", penalty=40.0))
    free = compose_bank(chart, loaded, replace(SETTINGS, scale="chord-tones", penalty=0.0))

    def share(bank):
        notes = [(p.bar, n) for v in bank.variations for p in v for n in p.notes]
        hits = sum(n.pitch % 12 in allowed_pitch_classes(_chord_of(chart, bar, n.beat),
                                                         "chord-tones") for bar, n in notes)
        return hits / len(notes)

    assert share(soft) >= 0.75
    assert share(soft) > share(free) + 0.2


def test_chord_markers_are_forced_at_chord_changes(loaded):
    chart = hand_chart(8)
    rows = generate_rows(chart, loaded, SETTINGS, 2, seed=3)
    assert len(rows) == 2                            # a long context: one part a variation
    timeline = Timeline(chart)
    for row in rows:
        text = row.text
        assert text.startswith("@" + marker_for(timeline.chord_at(0.0)) + "\n")
        onset = 0.0
        current = None
        for item in parse_text(text, loaded.profile):
            if isinstance(item, ChordMarker):
                assert item.marker != current
                current = item.marker
                continue
            assert isinstance(item, TextNote)
            if onset < timeline.total_beats:
                assert current == marker_for(timeline.chord_at(onset)), onset
            onset += loaded.profile.to_beats(item.wait, chart.tempo)
        assert onset >= timeline.total_beats


def test_no_markers_for_a_model_without_them(loaded_plain):
    rows = generate_rows(hand_chart(4), loaded_plain, SETTINGS, 1, seed=3)
    assert "@" not in rows[0].text
    items = parse_text(rows[0].text, loaded_plain.profile)
    assert items and all(isinstance(i, TextNote) for i in items)


def test_progress_reports_bars(loaded):
    seen = []
    compose_bank(hand_chart(6), loaded, SETTINGS, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6)
    assert all(total == 6 for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) >= 3


def test_long_chart_on_a_short_context_is_written_in_parts_side_by_side(tmp_path):
    tiny = load_model(str(build_tiny_model(tmp_path / "short", context=200)))
    chart = hand_chart(8)
    chart = replace(chart, bars=tuple(replace(b, section="AB"[b.index // 4])
                                      for b in chart.bars))
    parts = compose.plan_segments(chart, tiny)
    assert len(parts) > 1
    assert parts[0].start == 0 and parts[-1].end == 8
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert 4 in [p.start for p in parts]             # the B section starts a part
    composed = compose.compose(chart, tiny, replace(SETTINGS, variations=2))
    bank = composed.bank
    assert composed.stats.segments == len(parts)
    for variation in bank.variations:
        for phrase in variation:
            assert len(phrase.notes) >= compose.MIN_NOTES_PER_BAR
            for note in phrase.notes:
                assert note.chord == chart.chord_at(phrase.bar, note.beat).symbol


METERS = """\
title: Meters
tempo: 160
time: 4/4
sections:
  A: "| Dm7 G7 | 2/4 Cmaj7 | 3/4 A7alt Dm7:1 | 4/4 Fmaj7 Bb7 |"
  B: "| Dm7 | 2/4 G7 | 4/4 Cmaj7 | A7alt |"
"""


@pytest.mark.parametrize("context", [None, 200])
def test_a_bank_for_a_chart_that_changes_meter_keeps_its_notes_inside_their_bars(
        tmp_path, context):
    """A 2/4 and a 3/4 bar inside 4/4: every note lies inside its own bar's length, under
    the chord there; whole and in parts (a short context), and the bank reads back."""
    from melodyflowd.music.chart import parse_chart
    from melodyflowd.music.phrases import bank_from_json

    chart = parse_chart(METERS, "meters.yaml")
    assert [chart.bar_beats(i) for i in range(8)] == [4, 2, 3, 4, 4, 2, 4, 4]
    tiny = load_model(str(build_tiny_model(tmp_path / "m", context=context or 8192)))
    if context:
        assert len(compose.plan_segments(chart, tiny)) > 1
    bank = compose_bank(chart, tiny, replace(SETTINGS, constraint="hard", scale="chord-scale"))
    assert [bar.time for bar in bank.bars] == [None, (2, 4), (3, 4), None,
                                               None, (2, 4), None, None]
    assert bank.bar_starts == chart.bar_starts
    last_beats = []
    for variation in bank.variations:
        for phrase in variation:
            length = chart.bar_beats(phrase.bar)
            assert len(phrase.notes) >= compose.MIN_NOTES_PER_BAR
            beats = [n.beat for n in phrase.notes]
            assert beats == sorted(beats) and beats[0] >= 0 and beats[-1] < length, \
                (phrase.bar, beats)
            last_beats.append((length, beats[-1]))
            for note in phrase.notes:
                chord = chart.chord_at(phrase.bar, note.beat)
                assert note.chord == chord.symbol
                assert note.pitch % 12 in allowed_pitch_classes(chord, "chord-scale")
    # the 4/4 bars use their whole length: some phrase goes on past beat 3
    assert any(last > 3 for length, last in last_beats if length == 4)
    assert bank_from_json(bank_to_json(bank)) == bank


def test_a_row_longer_than_the_context_rereads_a_window(tmp_path):
    tiny = load_model(str(build_tiny_model(tmp_path / "short", context=96)))
    rows = generate_rows(hand_chart(3), tiny, replace(SETTINGS, variations=1), 1, seed=2,
                         stats=(stats := compose.ComposeStats()),
                         segments=[compose.Segment(0, 3)])
    assert stats.prefills > 1
    bars = compose.phrases_from_text(rows[0].text, hand_chart(3), tiny)
    assert all(len(notes) >= compose.MIN_NOTES_PER_BAR for notes in bars)


def test_ticks_profile(tmp_path):
    profile = ModelProfile(name="ticks", columns=("pitch", "duration", "wait"),
                           time_unit="ticks", ticks_per_beat=12, max_time=96,
                           chord_markers=True, header="")
    tiny = load_model(str(build_tiny_model(tmp_path / "ticks", profile=profile)))
    chart = hand_chart(4, tempo=120)
    bank = compose_bank(chart, tiny, replace(SETTINGS, variations=2))
    for variation in bank.variations:
        for phrase in variation:
            assert len(phrase.notes) >= compose.MIN_NOTES_PER_BAR
            for note in phrase.notes:
                # 12 ticks a beat at 120 bpm: every onset lies on the 1/12-beat grid
                assert abs(note.beat * 12 - round(note.beat * 12)) < 1e-3
                assert note.wait_ms % 1 == 0 and note.velocity == profile.default_velocity


@pytest.mark.parametrize("bad", [{"scale": "lydian-ish"}, {"low": 90, "high": 60},
                                 {"constraint": "medium"}])
def test_bad_generation_settings_are_user_errors(loaded, bad):
    from melodyflowd.errors import UserError

    with pytest.raises(UserError):
        compose_bank(hand_chart(2), loaded, replace(SETTINGS, **bad))


def test_profile_without_wait_is_a_user_error(tmp_path):
    from melodyflowd.errors import UserError

    profile = ModelProfile(name="nowait", columns=("pitch", "duration"))
    tiny = load_model(str(build_tiny_model(tmp_path / "nowait", profile=profile)))
    with pytest.raises(UserError, match="wait"):
        compose_bank(hand_chart(2), tiny, SETTINGS)


def test_transformers_forward_gives_the_same_bank(loaded, monkeypatch):
    """The lean forward is an optimisation only: transformers' own gives the same phrases."""
    chart = hand_chart(3)
    loaded.fast_forward.use_matmul("fp32")      # float32 products, as transformers' forward
    try:
        composed = compose.compose(chart, loaded, SETTINGS)
    finally:
        loaded.fast_forward.use_matmul("auto")
    fast = composed.bank
    assert composed.stats.dropped > 0          # rows that finished first were dropped
    monkeypatch.setattr(compose, "USE_FAST_FORWARD", False)
    slow = compose_bank(chart, loaded, SETTINGS)
    assert slow == fast


def test_generation_benchmark_runs():
    """bench/generate.py end to end on a tiny model (the numbers are for people, not tests)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "bench.generate", "--tiny",
                           "--bars", "2", "--variations", "2"], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for label in ("load:", "(b) ours:", "(a) original:", "(b) again:", "ratio:"):
        assert label in proc.stdout, proc.stdout
    assert "same bank: True" in proc.stdout
    assert " 0 empty bars" in proc.stdout


def test_sample_draws_only_tokens_that_can_be_drawn():
    import torch

    from melodyflowd.generate.compose import sample

    scores = torch.full((3, 300), -float("inf"))
    scores[0, [5, 7]] = 0.0
    scores[1, :4] = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    scores[2, :200] = 0.0                    # 200 equal tokens: top-p needs more than top-k
    seen: list[set[int]] = [set(), set(), set()]
    for k in range(1001):
        u = torch.full((3,), min(k / 1000, 1 - 1e-7))
        for row, token in enumerate(sample(scores, u, temperature=1.0, top_p=0.9).tolist()):
            seen[row].add(token)
    assert seen[0] == {5, 7}
    assert seen[1] == {0, 1, 2}             # 0.05 lies outside the top 0.9 of the mass
    assert len(seen[2]) >= 170 and max(seen[2]) < 200
    # temperature sharpens; top_p = 1 draws from everything that has a probability
    full = {sample(scores[1:2], torch.tensor([k / 100]), 1.0, 1.0).item() for k in range(100)}
    assert full == {0, 1, 2, 3}
    cold = {sample(scores[1:2], torch.tensor([k / 100]), 0.05, 1.0).item() for k in range(100)}
    assert cold == {0}


def test_generation_benchmark_measures_fresh_load_and_starts(tmp_path):
    """bench/generate.py's fresh-process load, cold start and cache start, on a tiny model."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "gen.json"
    proc = subprocess.run([sys.executable, "-m", "bench.generate", "--tiny",
                           "--chart", str(root / "examples" / "blues.yaml"), "--variations", "1",
                           "--skip-original", "--json", str(out)], capture_output=True,
                          text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "transformers imported: no" in proc.stdout
    assert "cache start:" in proc.stdout and "(from cache: True)" in proc.stdout
    data = json.loads(out.read_text())
    assert data["lean"] is True and data["load_imports_transformers"] is False
    assert data["cache_start_from_cache"] is True
    assert data["cache_start_s"] > 0 and data["cold_start_s"] > 0
    assert data["ours_empty_bars"] == 0 and "cold start:" in data["text"]


def test_parts_are_linked_so_that_each_variation_leaps_least_at_a_seam():
    """At a seam between parts each variation takes the next part's row whose first note
    lies nearest its own last note (sorted to sorted: the least total leap); the first part
    keeps its variations and no note changes."""
    from itertools import permutations

    from melodyflowd.generate.compose import Row, Segment, link_parts
    from melodyflowd.music.phrases import PhraseNote

    def bars(segment, first, last):
        out = [[] for _ in range(6)]
        out[segment.start] = [PhraseNote(first, 100, 100, 80, 0.0, "C7")]
        out[segment.end - 1] = [PhraseNote(64, 100, 100, 80, 0.0, "C7"),
                                PhraseNote(last, 100, 100, 80, 1.0, "C7")]
        return out

    a, b, c = Segment(0, 2), Segment(2, 4), Segment(4, 6)
    lasts = [60, 72, 65]
    part_a = [(Row(v, a), bars(a, 62, last)) for v, last in enumerate(lasts)]
    firsts_b = [71, 61, 66]
    part_b = [(Row(v, b), bars(b, first, last)) for v, (first, last)
              in enumerate(zip(firsts_b, [55, 80, 70], strict=True))]
    part_c = [(Row(v, c), bars(c, first, 70)) for v, first in enumerate([79, 69, 56])]
    parsed = part_a + part_b + part_c
    notes_before = {id(bars_): [n for bar in bars_ for n in bar] for _, bars_ in parsed}
    linked = link_parts(parsed)
    assert len(linked) == len(parsed)
    assert [row.variation for row, _ in linked[:3]] == [0, 1, 2]       # the first part stays
    chain = {v: [b_ for row, b_ in linked if row.variation == v] for v in range(3)}

    def leaps(assign):
        return sum(abs(lasts[v] - firsts_b[i]) for v, i in enumerate(assign))
    best = min(leaps(p) for p in permutations(range(3)))
    got = [next(i for i, (_, b_) in enumerate(part_b) if b_ is chain[v][1]) for v in range(3)]
    assert leaps(got) == best == 3                    # 60->61, 72->71, 65->66
    # the second seam follows the new chains: 61's row ends on 55 and takes 56, and so on
    ends_b = {v: chain[v][1][3][-1].pitch for v in range(3)}
    starts_c = {v: chain[v][2][4][0].pitch for v in range(3)}
    assert sorted(abs(ends_b[v] - starts_c[v]) for v in range(3)) == [1, 1, 1]
    for _, bars_ in linked:                           # nothing the model wrote changed
        assert [n for bar in bars_ for n in bar] == notes_before[id(bars_)]


def test_a_chart_longer_than_one_run_is_written_run_after_run_first_bars_first(tmp_path):
    """Memory follows one run, not the chart: a chart of more parts x variations than
    MAX_ROWS_AT_ONCE is written the first part alone, then RUN_ROWS rows a run; after each
    run but the last the bank so far (its bars written, the rest empty) is handed over."""
    tiny = load_model(str(build_tiny_model(tmp_path / "short", context=200)))
    chart = hand_chart(40)
    settings = replace(SETTINGS, variations=2)
    parts = compose.plan_segments(chart, tiny)
    runs = compose.plan_runs(parts, settings.variations)
    assert len(parts) * settings.variations > compose.MAX_ROWS_AT_ONCE
    assert runs[0] == parts[:1] and [p for run in runs for p in run] == parts
    assert all(len(run) * settings.variations <= compose.RUN_ROWS for run in runs)
    seen: list[int] = []

    def partial(bank) -> None:
        filled = [all(row[i].notes for row in bank.variations) for i in range(len(chart.bars))]
        written = filled.index(False) if False in filled else len(filled)
        assert not any(filled[written:]), "a partial bank holds bars after a gap"
        seen.append(written)

    composed = compose.compose(chart, tiny, settings, partial=partial)
    assert composed.stats.runs == len(runs)
    assert seen == [run[-1].end for run in runs[:-1]]        # each run's bars, in order
    assert all(len(p.notes) >= compose.MIN_NOTES_PER_BAR
               for row in composed.bank.variations for p in row)
    again = compose.compose(chart, tiny, settings)            # the same seed, the same bank
    assert bank_to_json(again.bank) == bank_to_json(composed.bank)


def test_a_chart_that_fits_one_run_is_one_run(loaded):
    chart = hand_chart(8)
    parts = compose.plan_segments(chart, loaded)
    assert compose.plan_runs(parts, SETTINGS.variations) == [parts]
    assert compose.compose(chart, loaded, SETTINGS).stats.runs == 1

"""Phrase bank JSON (validation errors), atomic save, bank_bars, MIDI export."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import mido
import pytest

from melodyflowd.errors import UserError
from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.phrases import (
    BANK_FORMAT,
    BankBar,
    BankChord,
    BankError,
    BarPhrase,
    PhraseBank,
    PhraseNote,
    bank_bars,
    bank_from_json,
    bank_to_json,
    bank_to_midi,
    check_bank_for_chart,
    load_bank,
    save_bank,
)
from melodyflowd.music.theory import Chord


def chord(symbol: str, root: int = 0) -> Chord:
    tones = tuple((root + i) % 12 for i in (0, 4, 7, 10))
    return Chord(symbol=symbol, root=root, bass=root, tones=tones,
                 scale=tuple((root + i) % 12 for i in (0, 2, 4, 5, 7, 9, 10)),
                 pentatonic=tuple((root + i) % 12 for i in (0, 2, 4, 7, 9)))


def make_chart() -> Chart:
    bars = (
        Bar(0, "A", (ChordSpan(chord("Dm7", 2), 0.0, 2.0), ChordSpan(chord("G7", 7), 2.0, 2.0))),
        Bar(1, "A", (ChordSpan(chord("Cj7", 0), 0.0, 4.0),)),
    )
    return Chart(title="Drill", tempo=120.0, time=(4, 4), key="C", style=None, bars=bars,
                 source="drill.yaml")


def make_bank() -> PhraseBank:
    bars = bank_bars(make_chart())
    v0 = (BarPhrase(0, (PhraseNote(62, 180, 250, 80, 0.0, "Dm7"),
                        PhraseNote(65, 180, 250, 70, 0.5, "Dm7"),
                        PhraseNote(71, 200, 300, 90, 2.0, "G7"))),
          BarPhrase(1, (PhraseNote(64, 400, 500, 60, 0.25, "Cj7"),)))
    v1 = (BarPhrase(0, (PhraseNote(69, 100, 100, 100, 1.5, "Dm7"),)),
          BarPhrase(1, ()))
    return PhraseBank(title="Drill", tempo=120.0, time=(4, 4), bars=bars, variations=(v0, v1),
                      model="tiny", adapter=None, seed=7,
                      settings={"scale": "chord-scale", "temperature": 0.9})


def test_bank_bars_follow_chart() -> None:
    bars = bank_bars(make_chart())
    assert bars == (BankBar(0, (BankChord("Dm7", 0.0, 2.0), BankChord("G7", 2.0, 2.0))),
                    BankBar(1, (BankChord("Cj7", 0.0, 4.0),)))


def test_json_round_trip_and_shape() -> None:
    bank = make_bank()
    data = bank_to_json(bank)
    assert data["format"] == BANK_FORMAT
    assert data["chart"] == {"title": "Drill", "tempo": 120, "time": [4, 4]}
    assert data["bars"][0]["chords"][1] == {"symbol": "G7", "start_beat": 2, "beats": 2}
    assert data["variations"][0][0]["notes"][1] == {
        "pitch": 65, "duration_ms": 180, "wait_ms": 250, "velocity": 70, "beat": 0.5,
        "chord": "Dm7"}
    text = json.dumps(data)                       # plain JSON data
    again = bank_from_json(json.loads(text))
    assert again == bank
    assert again.n_variations == 2


def test_design_example_reads() -> None:
    example = {"format": "melodyflow-bank/1",
               "chart": {"title": "Blues for Alice", "tempo": 180, "time": [4, 4]},
               "model": "default", "adapter": None, "seed": 7,
               "settings": {"scale": "chord-scale", "temperature": 0.9},
               "bars": [{"index": 0, "chords": [{"symbol": "Fj7", "start_beat": 0,
                                                 "beats": 4}]}],
               "variations": [[{"bar": 0, "notes": [
                   {"pitch": 69, "duration_ms": 180, "wait_ms": 200, "velocity": 80,
                    "beat": 0.0, "chord": "Fj7"}]}]]}
    bank = bank_from_json(example)
    assert bank.tempo == 180.0 and bank.bars[0].chords[0].symbol == "Fj7"
    assert bank.variations[0][0].notes[0].pitch == 69


def _error(data: object, source: str = "bank.json") -> str:
    with pytest.raises(BankError) as info:
        bank_from_json(data, source=source)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(source + ": ")
    return message


def _broken(edit) -> dict:
    data = copy.deepcopy(bank_to_json(make_bank()))
    edit(data)
    return data


def test_error_names_path_value_and_accepted() -> None:
    msg = _error(_broken(lambda d: d["variations"][1][0]["notes"][0].update(pitch=130)))
    assert "variations[1][0].notes[0].pitch" in msg
    assert "130" in msg and "0 to 127" in msg


@pytest.mark.parametrize(("edit", "path", "bad", "accepted"), [
    (lambda d: d.update(format="other/2"), "format", '"other/2"', BANK_FORMAT),
    (lambda d: d["chart"].update(tempo=0), "chart.tempo", "0", "greater than 0"),
    (lambda d: d["chart"].update(tempo="fast"), "chart.tempo", '"fast"', "a number"),
    (lambda d: d["chart"].update(time=[4, 3]), "chart.time", "a list", "unit one of"),
    (lambda d: d["bars"][1].update(index=5), "bars[1].index", "5", "playing order"),
    (lambda d: d["bars"][0]["chords"][1].update(beats=-1), "bars[0].chords[1].beats", "-1",
     "greater than 0"),
    (lambda d: d["bars"][0]["chords"][1].update(start_beat=0), "bars[0].chords[1].start_beat",
     "0", "chords in order"),
    (lambda d: d["bars"][0]["chords"][0].update(symbol=""), "bars[0].chords[0].symbol", '""',
     "non-empty text"),
    (lambda d: d["variations"][0][1].update(bar=0), "variations[0][1].bar", "0", "bar order"),
    (lambda d: d["variations"][0][0]["notes"][2].update(velocity=0),
     "variations[0][0].notes[2].velocity", "0", "1 to 127"),
    (lambda d: d["variations"][0][0]["notes"][2].update(velocity=True),
     "variations[0][0].notes[2].velocity", "true", "whole number"),
    (lambda d: d["variations"][0][0]["notes"][0].update(duration_ms=12.5),
     "variations[0][0].notes[0].duration_ms", "12.5", "whole number"),
    (lambda d: d["variations"][0][0]["notes"][0].update(beat=9),
     "variations[0][0].notes[0].beat", "9", "0 to 4"),
    (lambda d: d["variations"][0][0]["notes"][0].update(chord=None),
     "variations[0][0].notes[0].chord", "null", "text"),
    (lambda d: d.update(seed=-3), "seed", "-3", "at least 0"),
    (lambda d: d.update(variations=[]), "variations", "a list", "non-empty list"),
    (lambda d: d["variations"][0][0].update(notes="62 64"), "variations[0][0].notes",
     '"62 64"', "list of notes"),
])
def test_validation_errors(edit, path, bad, accepted) -> None:
    msg = _error(_broken(edit))
    assert f"{path}: " in msg
    assert bad in msg
    assert accepted in msg


def test_missing_and_unknown_keys() -> None:
    msg = _error(_broken(lambda d: d["variations"][0][0]["notes"][0].pop("wait_ms")))
    assert "variations[0][0].notes[0].wait_ms: missing" in msg
    msg = _error(_broken(lambda d: d["variations"][0][0]["notes"][0].update(pich=3)))
    assert "variations[0][0].notes[0].pich: unknown key" in msg and "pitch" in msg
    msg = _error(_broken(lambda d: d.pop("bars")))
    assert "bars: missing" in msg


def test_variation_with_wrong_bar_count() -> None:
    msg = _error(_broken(lambda d: d["variations"][1].pop()))
    assert "variations[1]: 1 bar phrases; expected 2" in msg


def test_not_a_mapping() -> None:
    msg = _error([1, 2, 3])
    assert "a list is not accepted" in msg


def test_load_bank_errors(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not found"):
        load_bank(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "melodyflow-bank/1",\n "chart": [1,, 2]}\n')
    with pytest.raises(BankError) as info:
        load_bank(bad)
    assert str(info.value).startswith(f"{bad}:2:")
    assert "not valid JSON" in str(info.value)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BankError, match="not UTF-8"):
        load_bank(binary)
    wrong = tmp_path / "wrong.json"
    data = bank_to_json(make_bank())
    data["variations"][0][1]["notes"][0]["pitch"] = -1
    wrong.write_text(json.dumps(data))
    with pytest.raises(BankError) as info:
        load_bank(wrong)
    assert str(info.value).startswith(f"{wrong}: variations[0][1].notes[0].pitch: -1")


def test_save_bank_atomic(tmp_path: Path) -> None:
    bank = make_bank()
    target = tmp_path / "bank.json"
    target.write_text("old contents")
    assert save_bank(bank, target) == target
    assert load_bank(target) == bank
    assert sorted(os.listdir(tmp_path)) == ["bank.json"]       # no temp file left behind


def test_save_bank_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "bank.json"
    save_bank(make_bank(), target)
    before = target.read_text()
    broken = PhraseBank(title="x", tempo=120.0, time=(4, 4), bars=make_bank().bars,
                        variations=make_bank().variations, settings={"bad": object()})
    with pytest.raises(TypeError):
        save_bank(broken, target)
    assert target.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["bank.json"]


def test_check_bank_for_chart() -> None:
    bank = make_bank()
    check_bank_for_chart(bank, make_chart(), "bank.json")
    chart = make_chart()
    short = Chart(chart.title, chart.tempo, chart.time, chart.key, chart.style, chart.bars[:1],
                  chart.source)
    with pytest.raises(BankError, match="2 bars but the chart drill.yaml has 1"):
        check_bank_for_chart(bank, short, "bank.json")
    other = Chart(chart.title, chart.tempo, chart.time, chart.key, chart.style,
                  (chart.bars[1], chart.bars[0]), chart.source)
    with pytest.raises(BankError, match=r"bars\[0\]: chords Dm7 G7 but the chart"):
        check_bank_for_chart(bank, other, "bank.json")


def _abs_notes(track: mido.MidiTrack) -> list[tuple[int, str, int, int]]:
    now = 0
    out = []
    for msg in track:
        now += msg.time
        if msg.type in ("note_on", "note_off"):
            kind = "on" if msg.type == "note_on" and msg.velocity > 0 else "off"
            out.append((now, kind, msg.note, msg.velocity))
    return out


def test_bank_to_midi_tracks(tmp_path: Path) -> None:
    bank = make_bank()
    midi = bank_to_midi(bank, tracks=True)
    assert midi.type == 1
    assert len(midi.tracks) == 1 + bank.n_variations
    tpb = midi.ticks_per_beat
    conductor = midi.tracks[0]
    tempos = [m for m in conductor if m.type == "set_tempo"]
    assert [mido.tempo2bpm(m.tempo) for m in tempos] == [pytest.approx(120.0)]
    now, markers = 0, []
    for msg in conductor:
        now += msg.time
        if msg.type == "marker":
            markers.append((now, msg.text))
    assert markers == [(0, "Dm7"), (2 * tpb, "G7"), (4 * tpb, "Cj7")]
    notes = _abs_notes(midi.tracks[1])
    ons = [(t, p, v) for t, kind, p, v in notes if kind == "on"]
    assert ons == [(0, 62, 80), (tpb // 2, 65, 70), (2 * tpb, 71, 90),
                   (4 * tpb + tpb // 4, 64, 60)]
    # 180 ms at 120 bpm = 0.36 beats
    offs = {p: t for t, kind, p, _ in notes if kind == "off"}
    assert offs[62] == round(0.36 * tpb)
    assert [(t, p) for t, kind, p, _ in _abs_notes(midi.tracks[2]) if kind == "on"] == [
        (int(1.5 * tpb), 69)]
    # Writes and reads back as a real file.
    path = tmp_path / "bank.mid"
    midi.save(path)
    again = mido.MidiFile(path)
    assert len(again.tracks) == 3
    assert sum(1 for m in again.tracks[1] if m.type == "note_on") == 4


def test_bank_to_midi_plays_the_variations_one_after_another() -> None:
    bank = make_bank()
    midi = bank_to_midi(bank)
    tpb = midi.ticks_per_beat
    form = len(bank.bars) * bank.beats_per_bar * tpb
    assert len(midi.tracks) == 2
    now, markers = 0, []
    for msg in midi.tracks[0]:
        now += msg.time
        if msg.type == "marker":
            markers.append((now, msg.text))
    assert markers == [(0, "variation 1"), (0, "Dm7"), (2 * tpb, "G7"), (4 * tpb, "Cj7"),
                       (form, "variation 2"), (form, "Dm7"), (form + 2 * tpb, "G7"),
                       (form + 4 * tpb, "Cj7")]
    ons = [(t, p) for t, kind, p, _ in _abs_notes(midi.tracks[1]) if kind == "on"]
    tracks = bank_to_midi(bank, tracks=True)
    first = [(t, p) for t, kind, p, _ in _abs_notes(tracks.tracks[1]) if kind == "on"]
    second = [(t + form, p) for t, kind, p, _ in _abs_notes(tracks.tracks[2]) if kind == "on"]
    assert ons == first + second
    assert {m.channel for m in midi.tracks[1] if m.type == "note_on"} == {0}


def test_bank_to_midi_repeated_pitch_does_not_overlap() -> None:
    bars = (BankBar(0, (BankChord("C7", 0.0, 4.0),)),)
    notes = (PhraseNote(60, 2000, 100, 90, 0.0, "C7"), PhraseNote(60, 2000, 100, 90, 1.0, "C7"))
    bank = PhraseBank("t", 60.0, (4, 4), bars, ((BarPhrase(0, notes),),))
    events = _abs_notes(bank_to_midi(bank).tracks[1])
    tpb = bank_to_midi(bank).ticks_per_beat
    assert [(t, k) for t, k, _, _ in events] == [(0, "on"), (tpb, "off"), (tpb, "on"),
                                                (3 * tpb, "off")]


def test_a_bank_with_too_many_notes_in_a_bar_is_refused(tmp_path):
    from melodyflowd.music.phrases import MAX_NOTES_PER_BAR, BankError, load_bank
    from tests.support.jack import write_bank

    notes = [(60, i * 4 / (MAX_NOTES_PER_BAR + 1), "C") for i in range(MAX_NOTES_PER_BAR + 1)]
    path = write_bank(tmp_path / "b.json", [[("C", 0, 4)]], [[notes]])
    with pytest.raises(BankError, match=f"{MAX_NOTES_PER_BAR + 1} notes in one bar"):
        load_bank(path)


def test_a_hard_constraint_bank_is_checked_against_the_pitch_range_it_claims(tmp_path):
    import json

    from melodyflowd.music.phrases import BankError, check_bank_pitches, load_bank
    from tests.support.jack import write_bank

    path = write_bank(tmp_path / "b.json", [[("C", 0, 4)]], [[[(40, 0, "C"), (60, 2, "C")]]])
    data = json.loads(path.read_text())
    for constraint, low, ok in (("hard", 55, False), ("hard", 40, True), ("soft", 55, True),
                                ("soft", 52, True)):
        data["settings"] = {"constraint": constraint, "low": low, "high": 84}
        path.write_text(json.dumps(data))
        bank = load_bank(path)
        if ok:
            check_bank_pitches(bank, str(path))
        else:
            with pytest.raises(BankError, match="pitch: 40 is outside"):
                check_bank_pitches(bank, str(path))

"""The on-disk bank cache: what its key depends on, round trips, damage, pruning."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest

from melodyflowd.generate import cache
from melodyflowd.generate.model import adapter_for
from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.phrases import (
    BankBar,
    BankChord,
    BarPhrase,
    PhraseBank,
    PhraseNote,
    bank_to_json,
    load_bank,
)
from melodyflowd.music.theory import Chord
from melodyflowd.settings import GenerationSettings


def chord(symbol: str, root: int) -> Chord:
    tones = tuple((root + i) % 12 for i in (0, 4, 7, 10))
    scale = tuple((root + i) % 12 for i in (0, 2, 4, 5, 7, 9, 10))
    return Chord(symbol, root, root, tones, scale, scale[:5], "mixolydian")


def make_chart(symbols=("C7", "F7", "C7", "G7"), *, tempo=120.0, title="Test blues",
               source="a.yaml", style=None) -> Chart:
    roots = {"C7": 0, "F7": 5, "G7": 7, "D7": 2}
    bars = tuple(Bar(i, "A", (ChordSpan(chord(s, roots[s]), 0.0, 4.0),))
                 for i, s in enumerate(symbols))
    return Chart(title, tempo, (4, 4), None, style, bars, source)


def make_bank(chart: Chart, variations: int = 2, seed: int | None = 5) -> PhraseBank:
    bars = tuple(BankBar(b.index, tuple(BankChord(s.chord.symbol, s.start_beat, s.beats)
                                        for s in b.chords)) for b in chart.bars)
    var = []
    for v in range(variations):
        var.append(tuple(
            BarPhrase(b.index, (PhraseNote(60 + v + b.index, 200, 250, 80, 0.0,
                                           b.chords[0].chord.symbol),
                                PhraseNote(64 + v, 180, 500, 90, 0.5,
                                           b.chords[0].chord.symbol)))
            for b in chart.bars))
    return PhraseBank(chart.title, chart.tempo, chart.time, bars, tuple(var), model="tiny",
                      seed=seed, settings={"scale": "chord-scale"})


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(b"x" * 100)
    return directory


def gen(model_dir: Path, **changes) -> GenerationSettings:
    return dataclasses.replace(GenerationSettings(model=str(model_dir), seed=1,
                                                  cache_dir="/unused"), **changes)


def test_key_depends_on_chart_content_not_its_file(model_dir):
    base = cache.cache_key(make_chart(), gen(model_dir))
    assert cache.cache_key(make_chart(source="elsewhere/b.yaml"), gen(model_dir)) == base
    assert cache.cache_key(make_chart(("C7", "F7", "C7", "D7")), gen(model_dir)) != base
    assert cache.cache_key(make_chart(tempo=140.0), gen(model_dir)) != base
    assert cache.cache_key(make_chart(title="Other"), gen(model_dir)) != base
    assert cache.cache_key(make_chart(("C7", "F7", "C7")), gen(model_dir)) != base


def test_key_depends_on_settings_that_change_output(model_dir):
    chart = make_chart()
    base = cache.cache_key(chart, gen(model_dir))
    for change in ({"temperature": 0.5}, {"variations": 3}, {"seed": 2}, {"seed": None},
                   {"scale": "pentatonic"}, {"constraint": "hard"}, {"low": 50},
                   {"top_p": 0.5}, {"adapter": "bebop"}):
        assert cache.cache_key(chart, gen(model_dir, **change)) != base, change
    # where the cache lives changes nothing about the bank
    assert cache.cache_key(chart, gen(model_dir, cache_dir="/elsewhere")) == base


def test_key_follows_the_metrical_rules_version(model_dir, monkeypatch):
    # a cache written by a build with older metrical rules must not serve its banks
    from melodyflowd.generate import metrical

    chart = make_chart()
    base = cache.cache_key(chart, gen(model_dir, scale="metrical"))
    monkeypatch.setattr(metrical, "RULES", metrical.RULES + 1)
    assert cache.cache_key(chart, gen(model_dir, scale="metrical")) != base
    monkeypatch.setattr(metrical, "RULES", metrical.RULES - 1)
    assert cache.cache_key(chart, gen(model_dir, scale="metrical")) == base


def test_key_follows_the_register_and_seam_rules(model_dir, monkeypatch):
    from melodyflowd.music import instruments

    chart = make_chart()
    base = cache.cache_key(chart, gen(model_dir))
    monkeypatch.setattr(instruments, "SEAM_RANGE", instruments.SEAM_RANGE + 1)
    assert cache.cache_key(chart, gen(model_dir)) != base


def test_key_follows_the_kind_of_matrix_products(model_dir, monkeypatch):
    chart = make_chart()
    monkeypatch.delenv("MELODYFLOW_MATMUL", raising=False)
    base = cache.cache_key(chart, gen(model_dir))
    monkeypatch.setenv("MELODYFLOW_MATMUL", "fp32")
    assert cache.cache_key(chart, gen(model_dir)) != base
    monkeypatch.setenv("MELODYFLOW_MATMUL", "auto")
    assert cache.cache_key(chart, gen(model_dir)) == base


def test_key_follows_the_kind_of_attention(model_dir, monkeypatch):
    """Compiled and torch attention round differently, so their banks are kept apart."""
    import importlib.util

    chart = make_chart()
    monkeypatch.delenv("MELODYFLOW_ATTENTION", raising=False)
    base = cache.cache_key(chart, gen(model_dir))
    monkeypatch.setenv("MELODYFLOW_ATTENTION", "torch")
    torch_key = cache.cache_key(chart, gen(model_dir))
    assert (torch_key != base) == (importlib.util.find_spec("numba") is not None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)   # numba missing
    monkeypatch.setenv("MELODYFLOW_ATTENTION", "auto")
    assert cache.cache_key(chart, gen(model_dir)) == torch_key


def test_key_follows_the_model_files(model_dir, tmp_path):
    chart = make_chart()
    base = cache.cache_key(chart, gen(model_dir))
    assert cache.cache_key(chart, gen(model_dir)) == base
    (model_dir / "model.safetensors").write_bytes(b"y" * 101)       # retrained: new size
    changed = cache.cache_key(chart, gen(model_dir))
    assert changed != base
    os.utime(model_dir / "model.safetensors", ns=(1, 1))            # same size, new mtime
    assert cache.cache_key(chart, gen(model_dir)) != changed
    # hub ids key on the id
    hub_a = cache.cache_key(chart, gen(model_dir, model="someone/model-a"))
    assert hub_a != cache.cache_key(chart, gen(model_dir, model="someone/model-b"))


def test_key_follows_the_style_adapter_a_chart_picks(model_dir):
    adapter = model_dir / "adapters" / "bebop"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"a" * 10)
    chart = make_chart(style="bebop")
    base = cache.cache_key(chart, gen(model_dir))
    assert adapter_for(str(model_dir), None, chart.style) == "bebop"
    assert adapter_for(str(model_dir), None, "swing") is None
    (adapter / "adapter_model.safetensors").write_bytes(b"b" * 11)   # new adapter weights
    assert cache.cache_key(chart, gen(model_dir)) != base


def test_store_and_load_round_trip(tmp_path, model_dir):
    chart = make_chart()
    bank = make_bank(chart)
    key = cache.cache_key(chart, gen(model_dir))
    path = cache.store(tmp_path / "c", key, bank)
    assert path is not None and path.exists()
    assert json.loads(path.read_text())["format"] == "melodyflow-bank/1"
    loaded = cache.load_cached(tmp_path / "c", key, bars=4, variations=2, seed=5)
    assert loaded is not None
    assert bank_to_json(loaded) == bank_to_json(bank)
    assert cache.load_cached(tmp_path / "c", "0" * 64) is None          # a miss


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"format": "melodyflow-bank/1"}',
                                    b"\x00\xff" * 50, "truncate"])
def test_damaged_file_is_ignored_and_rebuilt(tmp_path, model_dir, caplog, damage):
    chart = make_chart()
    bank = make_bank(chart)
    key = cache.cache_key(chart, gen(model_dir))
    path = cache.store(tmp_path, key, bank)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncate" else damage)
    with caplog.at_level(logging.WARNING, logger="melodyflowd.generate.cache"):
        assert cache.load_cached(tmp_path, key) is None
    assert "damaged cache file" in caplog.text and str(path) in caplog.text
    cache.store(tmp_path, key, bank)                                     # rebuilt
    assert bank_to_json(cache.load_cached(tmp_path, key)) == bank_to_json(bank)


def test_a_bank_of_the_wrong_shape_is_not_used(tmp_path, model_dir, caplog):
    chart = make_chart()
    key = cache.cache_key(chart, gen(model_dir))
    cache.store(tmp_path, key, make_bank(chart, variations=3, seed=9))
    with caplog.at_level(logging.WARNING):
        assert cache.load_cached(tmp_path, key, bars=4, variations=2) is None
        assert cache.load_cached(tmp_path, key, bars=5, variations=3) is None
        assert cache.load_cached(tmp_path, key, seed=8) is None
    assert "3 variations, expected 2" in caplog.text
    assert cache.load_cached(tmp_path, key, bars=4, variations=3, seed=9) is not None


def test_prune_keeps_the_most_recently_used(tmp_path, model_dir):
    chart = make_chart()
    bank = make_bank(chart)
    keys = [f"{i:064x}" for i in range(6)]
    for i, key in enumerate(keys):
        path = cache.store(tmp_path, key, bank)
        os.utime(path, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    assert cache.load_cached(tmp_path, keys[0]) is not None            # used: now the newest
    assert cache.prune(tmp_path, keep=3) == 3
    left = sorted(p.stem for p in cache.cache_root(tmp_path).glob("*.json"))
    assert left == sorted([keys[0], keys[4], keys[5]])


def test_unwritable_cache_is_logged_not_raised(tmp_path, model_dir, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        assert cache.store(blocker, "a" * 64, make_bank(make_chart())) is None
    assert "cannot write the bank cache" in caplog.text


def test_stored_file_is_a_bank_a_user_can_load(tmp_path, model_dir):
    chart = make_chart()
    path = cache.store(tmp_path, "b" * 64, make_bank(chart))
    assert load_bank(str(path)).n_variations == 2


def test_a_cached_hard_bank_outside_the_configured_pitch_range_is_not_played(tmp_path, model_dir,
                                                                         caplog):
    chart = make_chart()
    generation = gen(model_dir, low=55, high=84, constraint="hard", instrument=None)
    key = cache.cache_key(chart, generation)
    bank = make_bank(chart)                     # pitches 60-68: inside 55..84
    cache.store(tmp_path, key, bank)
    assert cache.load_cached(tmp_path, key, generation=generation) is not None
    wide = dataclasses.replace(bank, variations=(bank.variations[0][:-1] + (
        BarPhrase(3, (PhraseNote(0, 200, 250, 80, 0.0, "G7"),
                      PhraseNote(96, 200, 250, 80, 1.0, "G7"))),),), settings={})
    cache.store(tmp_path, key, wide)
    with caplog.at_level(logging.WARNING):
        assert cache.load_cached(tmp_path, key, generation=generation) is None
    assert "pitch: 0 is outside the range the bank was written for (55..84, hard" in caplog.text


@pytest.mark.parametrize("special", ["fifo", "symlink to /dev/zero"])
def test_a_cache_entry_that_is_a_fifo_or_device_is_ignored_without_blocking(
        tmp_path, model_dir, caplog, special):
    import threading

    chart = make_chart()
    key = cache.cache_key(chart, gen(model_dir))
    path = cache.cache_path(tmp_path, key)
    path.parent.mkdir(parents=True)
    if special == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result: list[object] = []
    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=lambda: result.append(cache.load_cached(tmp_path, key)),
                                  daemon=True)
        thread.start()
        thread.join(10)
    assert result == [None], "load_cached blocked or read forever"
    assert "must be a regular file" in caplog.text
    assert cache.store(tmp_path, key, make_bank(chart)) is not None        # replaced
    assert cache.load_cached(tmp_path, key) is not None


def test_a_cached_hard_bank_is_checked_against_its_instruments_register(tmp_path, model_dir,
                                                                        caplog):
    from melodyflowd.music.instruments import REGISTERS

    chart = make_chart()
    generation = gen(model_dir, low=0, high=127, constraint="hard", instrument="any")
    key = cache.cache_key(chart, generation)
    bank = make_bank(chart)                     # pitches 60-68: inside the register
    cache.store(tmp_path, key, bank)
    assert cache.load_cached(tmp_path, key, generation=generation) is not None
    register = REGISTERS["any"]
    high = dataclasses.replace(bank, variations=(bank.variations[0][:-1] + (
        BarPhrase(3, (PhraseNote(register.high + 1, 200, 250, 80, 0.0, "G7"),)),),))
    cache.store(tmp_path, key, high)
    with caplog.at_level(logging.WARNING):
        assert cache.load_cached(tmp_path, key, generation=generation) is None
    assert f"({register.low}..{register.high}, hard" in caplog.text

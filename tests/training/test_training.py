"""The training pipeline end to end on a small slice of WJazzD (a few solos, a tiny model,
a few steps): prepare -> pretrain -> finetune -> evaluate -> load in the generator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from melodyflowd.errors import UserError
from melodyflowd.generate.textformat import ChordMarker, TextNote, parse_text
from training import evaluate as ev
from training import prepare as prep
from training.histograms import js_distance

N_SOLOS = 6


@pytest.fixture(scope="module")
def data_dir(wjazzd_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("training") / "data"
    prep.prepare(wjazzd_path, out, limit=N_SOLOS, valid_fraction=0.2, log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def solos(data_dir):
    return prep.read_solos(data_dir)


def test_split_is_by_solo_and_fixed_by_the_seed(solos, wjazzd_path):
    assert len(solos) == N_SOLOS
    splits = {s.melid: s.split for s in solos}
    assert set(splits.values()) == {"train", "valid"}
    again = prep.load_solos(wjazzd_path, limit=N_SOLOS)
    prep.split_solos(again, valid_fraction=0.2)
    assert {s.melid: s.split for s in again} == splits
    prep.split_solos(again, valid_fraction=0.5, seed=99)
    assert sum(s.split == "valid" for s in again) == 3


def test_documents_follow_the_profile_and_the_chords(solos):
    docs = prep.documents(solos, prep.PROFILE, split="train")
    assert docs
    for doc in docs:
        prompt = doc.text.split("\n", 1)[0].split()
        assert prompt[0] in prep.STYLES.values() and prompt[-1].isdigit()
        items = parse_text(doc.text, prep.PROFILE)
        assert isinstance(items[0], ChordMarker), "a document starts with its chord"
        notes = [i for i in items if isinstance(i, TextNote)]
        assert len(notes) == doc.notes
        assert all(0 < n.duration <= prep.MAX_TIME and 0 <= n.wait <= prep.MAX_TIME
                   for n in notes)
        markers = [i.marker for i in items if isinstance(i, ChordMarker)]
        assert all(a != b for a, b in zip(markers, markers[1:], strict=False))
        assert all(" " not in m for m in markers)


def test_notes_sit_on_the_beat_grid(solos):
    solo = solos[0]
    onsets = [n.onset for n in solo.notes]
    assert onsets == sorted(onsets)
    downbeats = [n for n in solo.notes if n.downbeat]
    assert downbeats and all(n.onset % prep.TICKS_PER_BEAT == 0 for n in downbeats)
    chunk = prep.chunk_notes(solo.notes)[0]
    assert chunk[0].downbeat


def test_transposition_covers_keys_and_keeps_the_range(solos):
    plain = prep.documents(solos, prep.PROFILE, split="train")
    moved = prep.documents(solos, prep.PROFILE, split="train", transpose=True)
    assert len(moved) > 6 * len(plain)
    shifts = {d.shift for d in moved}
    assert len({s % 12 for s in shifts}) == 12
    lo, hi = prep.PITCH_RANGE
    for doc in moved:
        for item in parse_text(doc.text, prep.PROFILE):
            if isinstance(item, TextNote):
                assert lo <= item.pitch <= hi
    # a transposed marker follows the shift: the same chord a fifth up
    solo = next(s for s in solos if s.split == "train")
    chunk = prep.chunk_notes(solo.notes)[0]
    m0 = parse_text(prep.render_chunk(chunk, solo, prep.PROFILE), prep.PROFILE)[0].marker
    m7 = parse_text(prep.render_chunk(chunk, solo, prep.PROFILE, shift=-5),
                    prep.PROFILE)[0].marker
    names = list(prep.PITCH_NAMES)
    if m0 != "NC":
        assert names.index(m7.split(":")[0]) == (names.index(m0.split(":")[0]) + 7) % 12
        assert m0.split(":")[1] == m7.split(":")[1]


def test_tokenizer_round_trips_documents_without_unknowns(data_dir, solos):
    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(data_dir / "tokenizer")
    for doc in prep.documents(solos, prep.PROFILE, split="valid", transpose=True)[:30]:
        ids = tok(doc.text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == doc.text
        # a note line is 4 tokens: pitch, duration, wait, newline
        assert len(ids) <= 1 + 4 * doc.notes + 2 * (doc.notes + 1) + 4


def test_missing_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such database"):
        prep.load_solos(tmp_path / "nope.db")


def test_key_and_lead_sheet_parsing():
    assert prep.parse_key("Bb-maj") == (10, False)
    assert prep.parse_key("C-min") == (0, True)
    assert prep.parse_key("D-chrom") == (None, False)
    bars = ev.lead_sheet_bars("A1: ||Bb6 G7 |C-7 F7 |Db7 C7B7|Eb7NC  ||\nB: ||NC |")
    assert bars == [("A1", ["Bb6", "G7"]), ("A1", ["C-7", "F7"]),
                    ("A1", ["Db7", "C7", "B7"]), ("A1", ["Eb7", "NC"]), ("B", ["NC"])]


def test_trigram_is_a_distribution_and_js_distance_bounds():
    tri = ev.TrigramPitchModel()
    tri.fit_counts([[60, 62, 64, 65, 67, 65, 64, 62, 60], [60, 64, 67, 72]])
    tri.fit_lambdas([[60, 62, 64, 62, 60]])
    assert abs(sum(tri.lambdas) - 1) < 1e-6
    seq = [60, 62, 0]
    total = 0.0
    for p in range(128):
        seq[2] = p
        total += tri.prob(seq, 2)
    assert abs(total - 1) < 1e-9
    assert tri.prob([60, 62, 64], 2) > tri.prob([60, 62, 63], 2)
    assert js_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-9)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_pipeline_end_to_end(data_dir, solos, tmp_path):
    from melodyflowd.generate.model import load_model
    from training.finetune import FinetuneConfig, finetune
    from training.pretrain import PretrainConfig, pretrain

    quiet = lambda *a, **k: None  # noqa: E731
    model_dir = tmp_path / "model"
    report = pretrain(PretrainConfig(data=str(data_dir), out=str(model_dir), size="tiny",
                                     max_steps=4, eval_steps=2, budget_minutes=0, batch=4,
                                     train_docs=24, valid_docs=4), log=quiet)
    assert report["steps"] == 4 and math.isfinite(report["best_valid_loss"])
    for name in ("config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "melodyflow.json", "MODEL_CARD.md"):
        assert (model_dir / name).is_file(), name
    assert not list(model_dir.glob("*.bin")) and not list(model_dir.glob("*.pt"))

    style = next(s.style for s in solos if s.split == "train")
    finetune(FinetuneConfig(base=str(model_dir), data=str(data_dir),
                            out=str(model_dir / "adapters"), styles=(style,), max_steps=2,
                            eval_steps=1, budget_minutes=0, batch=4, train_docs=8,
                            valid_docs=4), log=quiet)
    adapter = model_dir / "adapters" / style
    assert (adapter / "adapter_model.safetensors").is_file()
    log = json.loads((adapter / "finetune_log.json").read_text())
    assert log["steps"] == 2 and log["style"] == style
    assert style in (model_dir / "MODEL_CARD.md").read_text()

    loaded = load_model(str(model_dir), adapter=style)
    assert loaded.profile == prep.PROFILE
    assert loaded.tokenizer.decode(loaded.tokenizer("@C:ionian\n60 6 12\n")["input_ids"],
                                   skip_special_tokens=True) == "@C:ionian\n60 6 12\n"

    out = tmp_path / "report"
    result = ev.evaluate(str(model_dir), str(data_dir), str(out), max_bars=2, variations=1,
                         max_solos=1, nll_docs=2, card=str(model_dir), log=quiet)
    nll = result["nll"]
    assert nll["notes"] > 0 and math.isfinite(nll["model_pitch_nll"])
    # renormalising over the number tokens can only raise the pitch's probability
    assert 0 < nll["model_pitch_nll_given_note"] <= nll["model_pitch_nll"]
    assert 0 < nll["trigram_pitch_nll"] < nll["uniform_pitch_nll"]
    rows = result["generation"]
    assert set(rows) >= {"humans", ev.RANDOM, *ev.CONDITIONS}
    assert rows[ev.RANDOM]["in_scale"] == 1.0
    for row in rows.values():
        assert row["notes"] > 0 and 0.0 <= row["js_pc"] <= 1.0
    for name in ("evaluation.md", "evaluation.json", "pc_relative.png", "intervals.png",
                 "nll.png"):
        assert (out / name).is_file(), name
    assert "pitch NLL" in (model_dir / "MODEL_CARD.md").read_text()


def test_llama_midi_documents_use_its_format_and_the_instrument(solos):
    from training.finetune import base_profile

    profile = base_profile("dx2102/llama-midi")
    assert profile.columns == ("pitch", "duration", "wait", "velocity", "program")
    solo = solos[0]
    doc = prep.documents([solo], profile)[0]
    title, header = doc.text.split("\n")[:2]
    assert title == solo.title and header == profile.header
    notes = [i for i in parse_text(doc.text, profile) if isinstance(i, TextNote)]
    assert {n.program for n in notes} == {prep.GM_PROGRAMS[solo.instrument]}
    assert {n.velocity for n in notes} == {prep.DEFAULT_VELOCITY}
    # milliseconds: an eighth note at the solo's tempo is 30000 / tempo ms
    chunk = prep.chunk_notes(solo.notes)[0]
    ticks = chunk[1].onset - chunk[0].onset
    assert notes[0].wait == round(ticks * 60000 / (solo.tempo * prep.TICKS_PER_BEAT))


def test_llama_midi_shaped_base_takes_the_same_finetune_command(data_dir, solos, tmp_path):
    """dx2102/llama-midi itself needs the hub and a GPU. A tiny stand-in with its shipped
    profile (title line, header, five columns in milliseconds, no chord markers) and a
    Llama-3-style digit-group tokenizer goes through the same command line; the adapter
    and the merged model then play in the generator."""
    from melodyflowd.generate.compose import compose_bank
    from melodyflowd.generate.model import load_model, shipped_profile
    from melodyflowd.settings import GenerationSettings
    from tests.support.tiny_model import build_tiny_model, hand_chart
    from training.finetune import main as finetune_main

    profile = shipped_profile("dx2102/llama-midi")
    base = build_tiny_model(tmp_path / "llama-midi", chord_markers=False, profile=profile)
    style = next(s.style for s in solos if s.split == "train")
    out, merged = tmp_path / "adapters", tmp_path / "merged"
    assert finetune_main(["--base", str(base), "--data", str(data_dir), "--styles", style,
                          "--out", str(out), "--max-steps", "2", "--eval-steps", "1",
                          "--budget-minutes", "0", "--batch", "2", "--train-docs", "4",
                          "--merge", str(merged), "--threads", "1"]) == 0
    log = json.loads((out / style / "finetune_log.json").read_text())
    assert log["steps"] == 2 and math.isfinite(log["valid_loss"])

    chart = hand_chart(2)
    for loaded in (load_model(str(base), adapter=str(out / style)),
                   load_model(str(merged / style))):
        assert loaded.profile == profile
        bank = compose_bank(chart, loaded, GenerationSettings(variations=1, seed=3))
        assert len(bank.variations) == 1 and len(bank.variations[0]) == len(chart.bars)
        assert all(phrase.notes for phrase in bank.variations[0])

"""NoteTokenizer and MelodyControlLogitsProcessor on synthetic logits, with four tokenizers
built here with `tokenizers`: digit groups (Llama 3 style), byte-level BPE (GPT-2 style
" 200" tokens), word-level that drops spaces, one digit a token, and word-level with
sentencepiece-style "▁200" tokens (like the models trained here)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from melodyflowd.generate.constraint import (
    MelodyControlLogitsProcessor,
    NoteTokenizer,
    allowed_pitch_classes,
)
from melodyflowd.generate.textformat import ModelProfile, TextNote, parse_text
from tests.support.tiny_model import build_tokenizer, hand_chart, hand_chords

PROFILE = ModelProfile(name="t")
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def _fast(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def _note_corpus(n: int = 400) -> list[str]:
    rng = random.Random(3)
    lines = []
    for _ in range(n):
        lines.append(f"{rng.randint(40, 90)} {rng.choice([90, 120, 180, 240, 333, 1000])} "
                     f"{rng.choice([0, 111, 166, 333, 500, 666, 1333])} {rng.randint(50, 110)} 0")
    return ["\n".join(lines[i:i + 20]) + "\n" for i in range(0, n, 20)]


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_note_corpus() + ["Test Changes\n@D:dorian\n"], trainer=trainer)
    return _fast(tok)


def wordlevel_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + ["\n"] + [str(n) for n in range(10001)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(" +"), behavior="removed"),
        pre_tokenizers.Split("\n", behavior="isolated")])
    return _fast(tok)


def digit_tokenizer() -> PreTrainedTokenizerFast:
    chars = ["\n", " "] + [chr(c) for c in range(33, 127)]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _fast(tok)


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level with the space glued to the number after it ("▁200"), a pitch a token."""
    words = SPECIALS + ["\n", "@G:mixolydian"] + [str(p) for p in range(128)] + \
        [f"\u2581{n}" for n in range(2001)]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)},
                                     unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    return _fast(tok)


TOKENIZERS = {"groups": lambda: build_tokenizer(True), "bpe": bpe_tokenizer,
              "wordlevel": wordlevel_tokenizer, "digits": digit_tokenizer,
              "metaspace": metaspace_tokenizer}


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def nt(request) -> NoteTokenizer:
    return NoteTokenizer(TOKENIZERS[request.param](), PROFILE)


DOC = "60 200 333 80 0\n@G:mixolydian\n127 90 1050 100 0\n55 1000 0 64 0\n7 8\n"


def test_classification_and_implicit_space(nt):
    assert len(nt.dig_ids) + len(nt.sdig_ids) > 0
    assert len(nt.newline_ids) >= 1
    ids = nt.encode(DOC)
    if nt.implicit_space:
        assert nt.tokenizer.convert_ids_to_tokens(ids)[:3] == ["60", "200", "333"]
    else:
        assert "".join(nt.text_of(i) for i in ids) == DOC


def test_processor_follows_the_text_like_parse_text(nt):
    """Fed one token at a time, the row parser sees exactly the notes parse_text reads."""
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), tempo=180)
    proc.start(1, 0)
    ids = nt.encode(DOC)
    for token_id in ids:
        proc.feed(0, token_id)
    notes = [n for n in parse_text(nt.decode(ids), PROFILE) if isinstance(n, TextNote)]
    assert [n.pitch for n in notes] == [60, 127, 55]
    assert [v[0] for _, v in proc.rows[0].notes] == [60, 127, 55]
    onsets = [t for t, _ in proc.rows[0].notes]
    assert onsets == pytest.approx([0.0, 333 * 180 / 60000, (333 + 1050) * 180 / 60000])


def _run_synthetic(nt: NoteTokenizer, proc: MelodyControlLogitsProcessor, batch: int,
                   steps: int, seed: int = 0) -> list[list[int]]:
    """A 'model' that answers random logits; the processor and argmax do the rest."""
    gen = torch.Generator().manual_seed(seed)
    width = len(nt.texts) + 5                      # models often pad their vocabulary
    prompt = nt.encode("Test\n")
    ids = torch.tensor([prompt] * batch)
    for _ in range(steps):
        scores = torch.randn(batch, width, generator=gen) * 3
        scores = proc(ids, scores)
        probs = torch.softmax(scores, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        ids = torch.cat([ids, nxt], dim=1)
    proc.update(ids)                                # read the last token too
    return [row[len(prompt):] for row in ids.tolist()]


def _in_scale(proc: MelodyControlLogitsProcessor, onset: float, pitch: int) -> bool:
    chord = proc.timeline.chord_at(onset)
    return pitch % 12 in allowed_pitch_classes(chord, proc.scale)


@pytest.mark.parametrize("scale", ["chord-scale", "pentatonic", "chord-tones"])
def test_hard_mask_with_format_keeps_every_pitch_in_scale_range_and_trend(nt, scale):
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), scale=scale, hard=True, low=55,
                                        high=84, enforce_format=True, min_notes_per_bar=2,
                                        max_notes_per_bar=8, min_wait_beats=0.125)
    rows = _run_synthetic(nt, proc, batch=3, steps=150)
    total = 0
    for r, ids in enumerate(rows):
        notes = [n for n in parse_text(nt.decode(ids), PROFILE) if isinstance(n, TextNote)]
        tracked = proc.rows[r].notes
        assert [n.pitch for n in notes] == [v[0] for _, v in tracked]
        assert len(notes) >= 3
        total += len(notes)
        for k, (onset, values) in enumerate(tracked):
            pitch = values[0]
            assert 55 <= pitch <= 84
            assert _in_scale(proc, onset, pitch), (onset, pitch)
            recent = [v[0] for _, v in tracked[max(0, k - 4):k]]
            if recent:
                center = round(sum(recent) / len(recent))
                near = [p for p in range(55, 85) if abs(p - center) <= 5
                        and _in_scale(proc, onset, p)]
                if near:
                    assert abs(pitch - center) <= 5
        for bar in range(proc.timeline.bar_of(proc.rows[r].time)):
            assert 2 <= proc.rows[r].bar_counts.get(bar, 0) <= 8, (bar, proc.rows[r].bar_counts)
    assert total >= 10


def test_soft_penalty_is_std_devs_of_pitch_logits(nt):
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), penalty=2.0, low=55, high=84)
    prompt = torch.tensor([nt.encode("Test\n")])
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(1, len(nt.texts), generator=gen)
    before = scores.clone()
    after = proc(prompt, scores.clone())
    allowed, candidates, bad = proc._pitch_tokens(proc.rows[0], 0)
    assert len(bad) > 0 and len(allowed) > 0
    std = float(before[0, candidates].std())
    assert torch.allclose(after[0, bad], before[0, bad] - 2.0 * std)
    untouched = torch.ones(len(nt.texts), dtype=torch.bool)
    untouched[bad] = False
    assert torch.equal(after[0, untouched], before[0, untouched])
    # the allowed tokens are exactly those that start a pitch of Dm7's scale in 55..84
    pcs = set(allowed_pitch_classes(hand_chords()["Dm7"], "chord-scale"))
    pitches = {p for p in range(55, 85) if p % 12 in pcs}
    for token_id in allowed.tolist():
        digits = nt.texts[token_id]
        assert any(str(p).startswith(digits) for p in pitches)
        if nt.implicit_space:
            assert int(digits) in pitches


def test_chord_change_follows_generated_waits(nt):
    """One bar of waits later, the allowed pitches are G7's (bar 0, beat 2), then Cmaj7's."""
    proc = MelodyControlLogitsProcessor(nt, hand_chart(tempo=120), scale="chord-tones",
                                        hard=True, low=48, high=84, trend_notes=0)
    proc.start(1, 0)
    for token_id in nt.encode("62 100 1000 80 0\n"):   # 1000 ms at 120 bpm = 2 beats
        proc.feed(0, token_id)
    assert proc.rows[0].time == pytest.approx(2.0)
    g7 = proc.pitches_for(proc.rows[0]).values
    assert {p % 12 for p in g7} == {7, 11, 2, 5}
    for token_id in nt.encode("67 100 1000 80 0\n"):
        proc.feed(0, token_id)
    assert {p % 12 for p in proc.pitches_for(proc.rows[0]).values} == {0, 4, 7, 11}


def test_multi_token_pitch_stays_consistent():
    """One digit a token: the first digit is constrained, the next ones agree with it."""
    nt = NoteTokenizer(digit_tokenizer(), PROFILE)
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), scale="chord-tones", hard=True,
                                        low=60, high=71, trend_notes=0)
    prompt = nt.encode("Test\n")
    scores = torch.zeros(1, len(nt.texts))
    out = proc(torch.tensor([prompt]), scores.clone())
    first = {nt.texts[i] for i in range(len(nt.texts)) if out[0, i] == 0 and nt.texts[i] in
             "0123456789"}
    assert first == {"6"}                               # Dm7 tones in 60..71: 60 62 65 69
    out = proc(torch.tensor([prompt + nt.encode("6")]), scores.clone())
    second = {nt.texts[i] for i in range(len(nt.texts)) if out[0, i] == 0 and nt.texts[i] in
              "0123456789 "}
    assert second == {"0", "2", "5", "9"}
    out = proc(torch.tensor([prompt + nt.encode("62")]), scores.clone())
    assert out[0, nt.encode(" ")[0]] == 0
    # with the grammar enforced, a space is the only thing that may follow "62"
    strict = MelodyControlLogitsProcessor(nt, hand_chart(), scale="chord-tones", hard=True,
                                          low=60, high=71, trend_notes=0, enforce_format=True)
    strict(torch.tensor([prompt]), scores.clone())
    out = strict(torch.tensor([prompt + nt.encode("62")]), scores.clone())
    assert [nt.texts[i] for i in torch.nonzero(out[0] == 0).flatten().tolist()] == [" "]
    out = strict(torch.tensor([prompt + nt.encode("62 ")]), scores.clone())
    assert out[0, nt.encode("0")[0]] == -math.inf      # no duration starts with 0


def test_processor_never_decodes(nt, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decode called during generation")

    monkeypatch.setattr(nt.tokenizer, "decode", refuse)
    monkeypatch.setattr(nt.tokenizer, "batch_decode", refuse)
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), hard=True, enforce_format=True,
                                        min_notes_per_bar=1)
    _run_synthetic(nt, proc, batch=2, steps=40)


def test_hf_generate_with_the_processor(tmp_path):
    """The processor as transformers designed it: model.generate(logits_processor=...)."""
    from transformers import LogitsProcessorList

    from melodyflowd.generate.model import load_model
    from tests.support.tiny_model import build_tiny_model

    loaded = load_model(str(build_tiny_model(tmp_path / "m")))
    proc = MelodyControlLogitsProcessor(loaded.note_tokenizer, hand_chart(), hard=True,
                                        enforce_format=True, min_notes_per_bar=2,
                                        min_wait_beats=0.125)
    prompt = loaded.tokenizer("Test\npitch duration wait velocity instrument\n",
                              add_special_tokens=False, return_tensors="pt")
    torch.manual_seed(0)
    out = loaded.model.generate(**prompt, logits_processor=LogitsProcessorList([proc]),
                                do_sample=True, max_new_tokens=120,
                                pad_token_id=loaded.tokenizer.pad_token_id)
    proc.update(out)
    text = loaded.tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])
    notes = [n for n in parse_text(text, loaded.profile) if isinstance(n, TextNote)]
    assert len(notes) >= 4
    assert [n.pitch for n in notes] == [v[0] for _, v in proc.rows[0].notes]
    for onset, values in proc.rows[0].notes:
        assert _in_scale(proc, onset, values[0])


def test_bad_settings_rejected(nt):
    with pytest.raises(ValueError, match="scale"):
        MelodyControlLogitsProcessor(nt, hand_chart(), scale="lydian-ish")
    with pytest.raises(ValueError, match="range"):
        MelodyControlLogitsProcessor(nt, hand_chart(), low=90, high=60)


def test_the_logits_processor_is_the_core_as_transformers_wants_it():
    from transformers import LogitsProcessor

    from melodyflowd.generate import constraint

    assert issubclass(MelodyControlLogitsProcessor, LogitsProcessor)
    assert issubclass(MelodyControlLogitsProcessor, constraint.MelodyControl)
    assert constraint.MelodyControlLogitsProcessor is MelodyControlLogitsProcessor
    with pytest.raises(AttributeError):
        constraint.NoSuchThing  # noqa: B018


def test_batched_masks_equal_row_by_row(nt):
    """The same states constrained as one batch or a row at a time give the same scores."""
    proc = MelodyControlLogitsProcessor(nt, hand_chart(), hard=False, enforce_format=True,
                                        min_notes_per_bar=2, max_notes_per_bar=8,
                                        min_wait_beats=0.125)
    rows = _run_synthetic(nt, proc, batch=4, steps=37, seed=5)
    assert all(rows)
    gen = torch.Generator().manual_seed(9)
    scores = torch.randn(4, len(nt.texts) + 3, generator=gen)
    together = proc.apply(scores.clone())
    for row in range(4):
        alone = proc.apply(scores[row:row + 1].clone(), [row])
        assert torch.equal(alone[0], together[row]), row


def test_range_continuations_equal_the_tensor_rule(nt):
    """The Python scan for a prefix in a small range finds exactly _prefix_ok's tokens."""
    from melodyflowd.generate.constraint.numbers import Range, _prefix_ok, _range_continuations

    rng = random.Random(4)
    for _ in range(60):
        lo = rng.randint(0, 400)
        field_ = Range(lo, lo + rng.randint(0, 1500), rng.choice([3, 4]))
        prefix = str(rng.randint(1, 150))
        fast = _range_continuations(nt, field_, prefix)
        assert fast is not None
        slow = nt.dig_ids[_prefix_ok(field_, prefix, nt.dig_val, nt.dig_len, nt.dig_lead0)]
        assert sorted(fast.tolist()) == sorted(slow.tolist()), (field_, prefix)
    assert _range_continuations(nt, Range(0, 10 ** 6 - 1), "1") is None
    assert _range_continuations(nt, Range(0, 99), "") is None


def test_parts_meet_near_the_register_median(nt):
    """Two parts written side by side: the first ends and the second begins within
    SEAM_RANGE of the register's centre where they meet (the median, moved by its arc),
    so the seam between them leaps little."""
    from melodyflowd.music.instruments import SEAM_BEATS, SEAM_RANGE, arc_offset

    chart = hand_chart()
    seam = 2 * chart.beats_per_bar
    total = len(chart.bars) * chart.beats_per_bar
    assert seam < total
    proc = MelodyControlLogitsProcessor(nt, chart, scale="chord-scale", hard=True, low=50,
                                        high=84, centre=66, trend_range=8,
                                        start_beat=[0.0, seam], end_beat=[seam, total],
                                        enforce_format=True, min_notes_per_bar=2,
                                        max_notes_per_bar=8, min_wait_beats=0.125)
    _run_synthetic(nt, proc, batch=2, steps=500)
    first, second = proc.rows[0].notes, proc.rows[1].notes
    ending = [(t, v[0]) for t, v in first if t >= seam - SEAM_BEATS]
    assert second                 # (the first part may have no note in its last beats)
    for onset, pitch in ending + [(second[0][0], second[0][1][0])]:
        centre = 66 + arc_offset(onset)
        near = [p for p in range(50, 85) if abs(p - centre) <= SEAM_RANGE
                and _in_scale(proc, onset, p)]
        if near:
            assert abs(pitch - centre) <= SEAM_RANGE, (onset, pitch)
    # elsewhere the trend's own reach holds: a part's inside is not pinned to the median
    inside = [v[0] for t, v in first if t < seam - SEAM_BEATS]
    assert max(abs(p - 66) for p in inside) > SEAM_RANGE


def test_the_register_centre_arcs_around_the_median():
    """Up ARC_DEPTH semitones a quarter of the way through each arc, down as far three
    quarters of the way, back at the median at its start and middle."""
    from melodyflowd.music.instruments import ARC_BEATS, ARC_DEPTH, arc_offset

    assert ARC_DEPTH > 0
    for start in (0.0, ARC_BEATS, 5 * ARC_BEATS):
        assert arc_offset(start) == 0
        assert arc_offset(start + ARC_BEATS / 4) == ARC_DEPTH
        assert arc_offset(start + ARC_BEATS / 2) == 0
        assert arc_offset(start + 3 * ARC_BEATS / 4) == -ARC_DEPTH
    steps = [arc_offset(i / 4) for i in range(4 * int(ARC_BEATS) + 1)]
    assert all(abs(a - b) <= 1 for a, b in zip(steps, steps[1:], strict=False))


def test_allowed_pitches_follow_the_arc(nt):
    """With no trend to follow (trend_notes 0) the allowed pitches are the register's
    centre at that beat, give or take trend_range: higher at the arc's top than at its
    bottom by twice its depth."""
    from melodyflowd.generate.constraint.state import RowState
    from melodyflowd.music.instruments import ARC_BEATS, ARC_DEPTH

    chart = hand_chart()
    proc = MelodyControlLogitsProcessor(nt, chart, scale="chromatic", hard=True, low=40,
                                        high=90, centre=66, trend_notes=0, trend_range=3)
    top = proc.pitches_for(RowState(time=ARC_BEATS / 4)).values
    bottom = proc.pitches_for(RowState(time=3 * ARC_BEATS / 4)).values
    assert top == frozenset(range(66 + ARC_DEPTH - 3, 66 + ARC_DEPTH + 4))
    assert bottom == frozenset(range(66 - ARC_DEPTH - 3, 66 - ARC_DEPTH + 4))

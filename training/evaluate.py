"""Evaluate a model on the validation solos; markdown report with PNG plots.

    python -m training.evaluate --model melodyflowd/models/default --data runs/data \\
        --out training/report --card melodyflowd/models/default

1. Likelihood. Per-note negative log-likelihood (nats) of the validation documents
   under the model - of the pitch alone, and of the whole note line - against an
   interpolated trigram pitch model (Jelinek-Mercer, weights fitted by EM on a slice
   of the training solos held out from counting) fitted on the training split in all
   keys. The trigram sees only the two previous pitches; the model also sees rhythm
   and chord markers, so it should beat it.
2. Generation. Each validation solo's own lead sheet (solo_info.chord_changes, first
   --bars bars) becomes a chart; melodyflowd's generator (compose_bank) writes
   --variations lines over it with
     a. the model + MelodyControlLogitsProcessor on the chord-scale (the shipped settings),
     b. the model + a hard pentatonic mask near the pitch trend (the original Melody Flow),
     c. the model with no pitch constraint (chromatic, whole range),
   and d. uniformly random chord-scale notes on the rhythm of (a). Each is compared with
   what the humans played over the same tunes: share of notes inside the chord-scale,
   and the Jensen-Shannon distance (base 2: 0 same, 1 disjoint) of the histogram of
   pitch class relative to the chord root and of the melodic interval histogram.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from melodyflowd.errors import UserError, run_reporting_user_errors
from melodyflowd.music.theory import Chord

from .common import set_threads, write_json
from .histograms import js_distance
from .prepare import (
    Solo,
    chord_of,
    chunk_notes,
    documents,
    key_name,
    read_solos,
    shifts_in_range,
)

N_PITCHES = 128
INTERVAL_CLIP = 12


# -- 1. likelihood --------------------------------------------------------------------

class TrigramPitchModel:
    """P(p | p2, p1) = l3 ML(p | p2 p1) + l2 ML(p | p1) + l1 ML(p) + l0 / 128, the weight of
    an unseen context given to the others in proportion; weights fitted by EM."""

    def __init__(self) -> None:
        self.c3: Counter = Counter()
        self.c2: Counter = Counter()
        self.c1: Counter = Counter()
        self.ctx2: Counter = Counter()
        self.ctx1: Counter = Counter()
        self.total = 0
        self.lambdas = [0.4, 0.3, 0.2, 0.1]   # trigram, bigram, unigram, uniform

    def fit_counts(self, sequences: Sequence[Sequence[int]]) -> None:
        for seq in sequences:
            for i, p in enumerate(seq):
                self.c1[p] += 1
                self.total += 1
                if i >= 1:
                    self.c2[(seq[i - 1], p)] += 1
                    self.ctx1[seq[i - 1]] += 1
                if i >= 2:
                    self.c3[(seq[i - 2], seq[i - 1], p)] += 1
                    self.ctx2[(seq[i - 2], seq[i - 1])] += 1

    def _components(self, seq: Sequence[int], i: int) -> list[float | None]:
        p = seq[i]
        tri = bi = None
        if i >= 2 and self.ctx2[(seq[i - 2], seq[i - 1])]:
            tri = self.c3[(seq[i - 2], seq[i - 1], p)] / self.ctx2[(seq[i - 2], seq[i - 1])]
        if i >= 1 and self.ctx1[seq[i - 1]]:
            bi = self.c2[(seq[i - 1], p)] / self.ctx1[seq[i - 1]]
        return [tri, bi, self.c1[p] / max(1, self.total), 1.0 / N_PITCHES]

    def prob(self, seq: Sequence[int], i: int) -> float:
        comps = self._components(seq, i)
        weights = [lam if c is not None else 0.0 for lam, c in zip(self.lambdas, comps,
                                                                   strict=True)]
        norm = sum(weights)
        return sum(w * (c or 0.0) for w, c in zip(weights, comps, strict=True)) / norm

    def fit_lambdas(self, sequences: Sequence[Sequence[int]], iterations: int = 30) -> None:
        events = [(seq, i) for seq in sequences for i in range(len(seq))]
        if not events:
            return
        for _ in range(iterations):
            totals = [0.0] * 4
            for seq, i in events:
                comps = self._components(seq, i)
                weights = [lam if c is not None else 0.0
                           for lam, c in zip(self.lambdas, comps, strict=True)]
                norm = sum(weights)
                parts = [w / norm * (c or 0.0) for w, c in zip(weights, comps, strict=True)]
                total = sum(parts)
                for k in range(4):
                    totals[k] += parts[k] / total
            self.lambdas = [max(t / len(events), 1e-6) for t in totals]

    def nll(self, sequences: Sequence[Sequence[int]]) -> tuple[float, int]:
        total, n = 0.0, 0
        for seq in sequences:
            for i in range(len(seq)):
                total -= math.log(self.prob(seq, i))
                n += 1
        return total, n


def pitch_sequences(solos: Sequence[Solo], split: str, transpose: bool) -> list[list[int]]:
    out = []
    for solo in solos:
        if solo.split != split:
            continue
        for chunk in chunk_notes(solo.notes):
            pitches = [n.pitch for n in chunk]
            for shift in (shifts_in_range(chunk) if transpose else [0]):
                out.append([p + shift for p in pitches])
    return out


def fit_trigram(solos: Sequence[Solo], seed: int = 0) -> TrigramPitchModel:
    """Counts from 90 % of the training solos, EM weights on the other 10 %, then the
    counts again from all training solos (all keys)."""
    train = [s for s in solos if s.split == "train"]
    ids = sorted(s.melid for s in train)
    random.Random(seed).shuffle(ids)
    held = set(ids[:max(1, len(ids) // 10)])
    part = [replace_split(s, "held" if s.melid in held else "train") for s in train]
    probe = TrigramPitchModel()
    probe.fit_counts(pitch_sequences(part, "train", transpose=True))
    probe.fit_lambdas(pitch_sequences(part, "held", transpose=False))
    model = TrigramPitchModel()
    model.fit_counts(pitch_sequences(train, "train", transpose=True))
    model.lambdas = probe.lambdas
    return model


def replace_split(solo: Solo, split: str) -> Solo:
    return Solo(**{**{f: getattr(solo, f) for f in solo.__dataclass_fields__}, "split": split})


def model_nll(loaded, docs: Sequence[str], log=print) -> dict:
    """Per-note NLL of the pitch token(s) and of the whole note line, summed over the
    tokens that start inside them (chord marker lines, given in generation, excluded).

    Two pitch figures: ``pitch_nll`` is the model's own probability of the pitch tokens;
    ``pitch_nll_given_note`` renormalises the first of them over the tokens that can
    start a number, i.e. it is the probability of the pitch *given that a note line comes
    next*. That is the like-for-like figure for the trigram, which models pitches only,
    and it is what generation samples from: there the chart supplies the chord markers
    and the end of the text, so the model's mass on "a marker or the end comes next" is
    never drawn from."""
    import torch

    from melodyflowd.generate.constraint import NoteTokenizer

    tokenizer, model, profile = loaded.tokenizer, loaded.model, loaded.profile
    note_tokens = NoteTokenizer(tokenizer, profile)
    number_starts = torch.cat([note_tokens.dig_ids, note_tokens.sdig_ids])
    pitch_total = given_total = line_total = 0.0
    notes = 0
    limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    with torch.inference_mode():
        for text in docs:
            # the `tokenizers` backend: the same ids, with character offsets, whether the
            # loader gave a transformers tokenizer or melodyflowd's lean one
            enc = tokenizer.backend_tokenizer.encode(text)
            ids = enc.ids[:limit]
            offsets = enc.offsets[:limit]
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            number_mass = torch.logsumexp(logp[:, number_starts], dim=-1).tolist()
            token_nll = [0.0] + [-logp[i - 1, ids[i]].item() for i in range(1, len(ids))]
            covered = offsets[-1][1] if offsets else 0
            spans = _note_spans(text, profile)
            starts = [o[0] if o[1] > o[0] else -1 for o in offsets]
            for line_start, pitch_end, line_end in spans:
                if line_end > covered:
                    break
                pitch_tokens = [k for k, s in enumerate(starts) if line_start <= s < pitch_end]
                p = sum(token_nll[k] for k in pitch_tokens)
                whole = sum(token_nll[k] for k, s in enumerate(starts)
                            if line_start <= s <= line_end)
                pitch_total += p
                first = pitch_tokens[0] if pitch_tokens else 0
                given_total += p + (number_mass[first - 1] if first > 0 else 0.0)
                line_total += whole
                notes += 1
    n = max(1, notes)
    return {"pitch_nll": pitch_total / n, "pitch_nll_given_note": given_total / n,
            "note_nll": line_total / n, "notes": notes}


def _note_spans(text: str, profile) -> list[tuple[int, int, int]]:
    """(line start, end of the pitch number, index of the newline) of each note line."""
    from melodyflowd.generate.textformat import TextNote, parse_line

    spans = []
    pos = 0
    for line in text.split("\n")[:-1]:
        if isinstance(parse_line(line, profile), TextNote):
            stripped = len(line) - len(line.lstrip())
            first = line.split()[0]
            start = pos + stripped
            spans.append((start, start + len(first), pos + len(line)))
        pos += len(line) + 1
    return spans


# -- 2. generation --------------------------------------------------------------------

_CHORD_RE = re.compile(r"NC|[A-G][^A-GN/]*(?:/[A-G][#b]?)?")


def lead_sheet_bars(lead_sheet: str) -> list[tuple[str, list[str]]]:
    """'A1: ||Bb6 G7 |C-7 F7 |...||' lines -> [(section, [symbols of a bar]), ...]."""
    bars = []
    for line in lead_sheet.splitlines():
        name, sep, body = line.partition(":")
        if not sep:
            continue
        for cell in body.split("|"):
            symbols = [m.group(0) for tok in cell.split() for m in _CHORD_RE.finditer(tok)]
            if symbols:
                bars.append((name.strip(), symbols))
    return bars


def lead_sheet_chart(solo: Solo, max_bars: int):
    """The solo's lead sheet as a melodyflowd Chart (first max_bars bars), or None."""
    from melodyflowd.music.chart import Bar, Chart, ChordSpan

    bars = []
    for index, (section, symbols) in enumerate(lead_sheet_bars(solo.lead_sheet)[:max_bars]):
        chords = [chord_of(s) for s in symbols]
        if any(c is None for c in chords):
            return None
        beats = 4.0 / len(chords)
        bars.append(Bar(index=index, section=section, chords=tuple(
            ChordSpan(chord=c, start_beat=i * beats, beats=beats)
            for i, c in enumerate(chords))))
    if not bars:
        return None
    return Chart(title=solo.title, tempo=solo.tempo, time=(4, 4),
                 key=key_name(solo.key_root, solo.key_minor) or None, style=solo.style,
                 bars=tuple(bars), source=f"wjazzd melid {solo.melid}")


@dataclass
class Line:
    """One melodic line: pitches with the chord at each onset."""

    pitches: list[int]
    chords: list[Chord]


def human_lines(solos: Sequence[Solo]) -> list[Line]:
    lines = []
    for solo in solos:
        if solo.split != "valid":
            continue
        for chunk in chunk_notes(solo.notes):
            chords = [chord_of(n.chord) for n in chunk]
            keep = [(n.pitch, c) for n, c in zip(chunk, chords, strict=True) if c is not None]
            lines.append(Line([p for p, _ in keep], [c for _, c in keep]))
    return lines


def bank_lines(bank) -> list[Line]:
    lines = []
    for variation in bank.variations:
        pitches, chords = [], []
        for bar in variation:
            for note in bar.notes:
                chord = chord_of(note.chord)
                if chord is not None:
                    pitches.append(note.pitch)
                    chords.append(chord)
        lines.append(Line(pitches, chords))
    return lines


def random_scale_lines(lines: Sequence[Line], low: int, high: int, rng: random.Random
                       ) -> list[Line]:
    """Same chords and note count, pitches uniform over the chord-scale in low..high."""
    out = []
    for line in lines:
        pitches = []
        for chord in line.chords:
            scale = set(chord.scale) if chord.root is not None else set(range(12))
            pitches.append(rng.choice([p for p in range(low, high + 1) if p % 12 in scale]))
        out.append(Line(pitches, list(line.chords)))
    return out


def line_metrics(lines: Sequence[Line]) -> dict:
    in_scale = total = 0
    pc_hist = [0] * 12
    iv_hist = [0] * (2 * INTERVAL_CLIP + 1)
    for line in lines:
        for i, (p, chord) in enumerate(zip(line.pitches, line.chords, strict=True)):
            if chord.root is not None:
                total += 1
                in_scale += p % 12 in chord.scale
                pc_hist[(p - chord.root) % 12] += 1
            if i:
                d = max(-INTERVAL_CLIP, min(INTERVAL_CLIP, p - line.pitches[i - 1]))
                iv_hist[d + INTERVAL_CLIP] += 1
    return {"notes": sum(len(x.pitches) for x in lines), "in_scale": in_scale / max(1, total),
            "pc_hist": pc_hist, "interval_hist": iv_hist,
            "repeat_share": iv_hist[INTERVAL_CLIP] / max(1, sum(iv_hist))}


# -- the run --------------------------------------------------------------------------

CONDITIONS = {
    "model + chord-scale processor": {},
    "model + pentatonic/trend (original)": {"scale": "pentatonic", "constraint": "hard"},
    "model, unconstrained": {"scale": "chromatic", "low": 21, "high": 108,
                             "trend_range": 127},
}
RANDOM = "random chord-scale notes"


def evaluate(model: str, data: str, out: str, *, adapter: str | None = None,
             max_bars: int = 8, variations: int = 4, max_solos: int | None = None,
             nll_docs: int | None = None, seed: int = 0, threads: int | None = None,
             card: str | None = None, log=print) -> dict:
    from melodyflowd.generate.compose import compose_bank
    from melodyflowd.generate.model import load_model
    from melodyflowd.settings import GenerationSettings

    set_threads(threads)
    started = time.monotonic()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    solos = read_solos(data)
    valid = [s for s in solos if s.split == "valid"][:max_solos]
    if not valid:
        raise UserError("no validation solos in the data", file=str(data))
    loaded = load_model(model, adapter)
    result: dict = {"model": model, "adapter": adapter, "validation_solos": len(valid),
                    "bars": max_bars, "variations": variations, "seed": seed}

    docs = [d.text for d in documents(valid, loaded.profile, split="valid")]
    if nll_docs:
        docs = docs[:nll_docs]
    nll = model_nll(loaded, docs)
    trigram = fit_trigram(solos, seed)
    valid_seqs = [[int(line.split()[0]) for line in d.split("\n")[1:]
                   if line and line[0].isdigit()] for d in docs]
    tri_total, tri_n = trigram.nll(valid_seqs)
    result["nll"] = {"documents": len(docs), "notes": nll["notes"],
                     "model_pitch_nll": round(nll["pitch_nll"], 4),
                     "model_pitch_nll_given_note": round(nll["pitch_nll_given_note"], 4),
                     "model_note_nll": round(nll["note_nll"], 4),
                     "trigram_pitch_nll": round(tri_total / max(1, tri_n), 4),
                     "uniform_pitch_nll": round(math.log(N_PITCHES), 4),
                     "trigram_lambdas": [round(x, 4) for x in trigram.lambdas]}
    log(f"evaluate: pitch NLL/note model {nll['pitch_nll']:.3f} "
        f"(given a note comes next {nll['pitch_nll_given_note']:.3f}) vs trigram "
        f"{tri_total / max(1, tri_n):.3f} nats ({nll['notes']} notes); whole note line "
        f"{nll['note_nll']:.3f}")

    humans = human_lines(valid)
    lines: dict[str, list[Line]] = defaultdict(list)
    charts = [(s, lead_sheet_chart(s, max_bars)) for s in valid]
    charts = [(s, c) for s, c in charts if c is not None]
    base = GenerationSettings(variations=variations, seed=seed)
    for name, change in CONDITIONS.items():
        settings = replace(base, **change)
        t0 = time.monotonic()
        for i, (_solo, chart) in enumerate(charts):
            bank = compose_bank(chart, loaded, replace(settings, seed=seed + i))
            lines[name] += bank_lines(bank)
        log(f"evaluate: {name}: {len(charts)} lead sheets in {time.monotonic() - t0:.0f} s")
    first = next(iter(CONDITIONS))
    lines[RANDOM] = random_scale_lines(lines[first], base.low, base.high,
                                       random.Random(seed))
    human = line_metrics(humans)
    table = {"humans": {"in_scale": round(human["in_scale"], 4), "js_pc": 0.0,
                        "js_interval": 0.0, "notes": human["notes"],
                        "repeat_share": round(human["repeat_share"], 4)}}
    hists = {"humans": human}
    for name, group in lines.items():
        m = line_metrics(group)
        hists[name] = m
        table[name] = {"in_scale": round(m["in_scale"], 4),
                       "js_pc": round(js_distance(m["pc_hist"], human["pc_hist"]), 4),
                       "js_interval": round(js_distance(m["interval_hist"],
                                                        human["interval_hist"]), 4),
                       "notes": m["notes"], "repeat_share": round(m["repeat_share"], 4)}
    result["generation"] = table
    result["lead_sheets"] = len(charts)
    result["histograms"] = {k: {"pc": v["pc_hist"], "interval": v["interval_hist"]}
                            for k, v in hists.items()}
    result["minutes"] = round((time.monotonic() - started) / 60, 2)
    write_json(out_dir / "evaluation.json", result)
    plots = make_plots(result, out_dir)
    report = markdown_report(result, plots)
    (out_dir / "evaluation.md").write_text(report, encoding="utf-8")
    if card:
        card_dir = Path(card)
        write_json(card_dir / "evaluation.json", {k: v for k, v in result.items()
                                                  if k != "histograms"})
        (card_dir / "evaluation.md").write_text(report.replace("](", f"]({_rel(out_dir)}/"),
                                                encoding="utf-8")
        from .card import write_model_card

        write_model_card(card_dir)
    log(f"evaluate: report -> {out_dir / 'evaluation.md'} ({result['minutes']} min)")
    return result


def _rel(path: Path) -> str:
    try:
        return "../../../" + str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def make_plots(result: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hists = result["histograms"]
    names = list(hists)
    files = []

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        h = hists[name]["pc"]
        total = sum(h) or 1
        ax.bar([i + k * width for i in range(12)], [x / total for x in h], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(12)])
    ax.set_xticklabels(["1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7"])
    ax.set_xlabel("pitch class relative to the chord root")
    ax.set_ylabel("share of notes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "pc_relative.png", dpi=90)
    files.append("pc_relative.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    xs = list(range(-INTERVAL_CLIP, INTERVAL_CLIP + 1))
    for name in names:
        h = hists[name]["interval"]
        total = sum(h) or 1
        ax.plot(xs, [x / total for x in h], marker="o", markersize=3, label=name)
    ax.set_xlabel(f"melodic interval, semitones (clipped at ±{INTERVAL_CLIP})")
    ax.set_ylabel("share of intervals")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "intervals.png", dpi=90)
    files.append("intervals.png")
    plt.close(fig)

    nll = result["nll"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = ["uniform", "trigram", "model,\nnote given", "model,\nraw"]
    values = [nll["uniform_pitch_nll"], nll["trigram_pitch_nll"],
              nll["model_pitch_nll_given_note"], nll["model_pitch_nll"]]
    ax.bar(labels, values, color=["#bbb", "#888", "#3a7", "#7c9"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    ax.set_ylabel("pitch NLL per note (nats)")
    ax.set_title("validation solos")
    fig.tight_layout()
    fig.savefig(out_dir / "nll.png", dpi=90)
    files.append("nll.png")
    plt.close(fig)
    return files


def _verdict(nll: dict) -> str:
    """Compares like with like: the trigram predicts a pitch knowing a note comes, so the
    model's figure is the one given that a note line comes next (see model_nll)."""
    given, raw, tri = (nll["model_pitch_nll_given_note"], nll["model_pitch_nll"],
                       nll["trigram_pitch_nll"])
    gap = tri - given
    if abs(raw - tri) < 0.005:
        standing = f"level with the trigram ({raw:.4f} vs {tri:.4f})"
    elif raw < tri:
        standing = "still better than the trigram"
    else:
        standing = ("worse than the trigram: that uncertainty is what generation never "
                    "samples, since the chart gives the markers")
    raw_part = (f"Counting also its uncertainty about whether a note, a chord marker or "
                f"the end comes next, the model's figure is {raw:.3f}, {standing}.")
    if gap > 0:
        return (f"Given that a note comes next, the model beats the trigram baseline by "
                f"{gap:.3f} nats per note (pitch perplexity {math.exp(given):.1f} vs "
                f"{math.exp(tri):.1f}). " + raw_part)
    return (f"The model does **not** beat the trigram baseline: given that a note comes "
            f"next it is {-gap:.3f} nats per note worse (pitch perplexity "
            f"{math.exp(given):.1f} vs {math.exp(tri):.1f}). " + raw_part)


def _reading(table: dict) -> str:
    """One data-driven sentence: which generated lines sit closest to the humans."""
    rows = {k: v for k, v in table.items() if k != "humans"}
    if not rows:
        return ""
    best_pc = min(rows, key=lambda k: rows[k]["js_pc"])
    best_iv = min(rows, key=lambda k: rows[k]["js_interval"])
    human = table["humans"]
    return (f"Closest to the humans: *{best_pc}* in pitch classes relative to the root "
            f"(JS {rows[best_pc]['js_pc']:.3f}) and *{best_iv}* in intervals "
            f"(JS {rows[best_iv]['js_interval']:.3f}). The humans play "
            f"{human['in_scale']:.0%} of their notes inside the chord-scale and repeat a "
            f"pitch {human['repeat_share']:.0%} of the time; a constraint that raises the "
            "first to 100 % moves the pitch-class histogram away from theirs.")


def markdown_report(result: dict, plots: list[str]) -> str:
    nll = result["nll"]
    lines = ["# Evaluation", "",
             f"Model `{result['model']}`" + (f" + adapter `{result['adapter']}`"
                                             if result["adapter"] else "") +
             f"; {result['validation_solos']} validation solos (held out from training by "
             f"the seeded split); seed {result['seed']}; {result['minutes']} min.", "",
             "### Likelihood", "",
             f"{nll['notes']} notes in {nll['documents']} validation documents, original keys.",
             "", "| | pitch NLL / note (nats) |", "|---|---|",
             f"| uniform over 128 pitches | {nll['uniform_pitch_nll']:.3f} |",
             f"| interpolated trigram on pitches (train split, all keys; λ = "
             f"{', '.join(f'{x:.2f}' for x in nll['trigram_lambdas'])}) | "
             f"{nll['trigram_pitch_nll']:.3f} |",
             f"| **this model**, given that a note comes next (sees rhythm and chord "
             f"markers too) | **{nll['model_pitch_nll_given_note']:.3f}** |",
             f"| this model, raw (also unsure whether a note, a marker or the end comes "
             f"next) | {nll['model_pitch_nll']:.3f} |", "",
             _verdict(nll),
             f"The model's NLL of the whole note line (pitch, duration, wait, newline) is "
             f"{nll['model_note_nll']:.3f} nats per note.", "",
             "### Generated lines vs the humans", "",
             f"Over the first {result['bars']} bars of each validation solo's own lead sheet "
             f"({result['lead_sheets']} tunes, {result['variations']} variations each), "
             "generated by melodyflowd's compose_bank; humans = every note of those solos "
             "with the chord annotated at its onset. JS = Jensen-Shannon distance to the "
             "humans (base 2; 0 = same histogram).", "",
             "| lines | notes | in chord-scale | JS pitch class rel. root | JS intervals | "
             "repeated notes |", "|---|---|---|---|---|---|"]
    for name, row in result["generation"].items():
        lines.append(f"| {name} | {row['notes']} | {row['in_scale']:.1%} | "
                     f"{row['js_pc']:.3f} | {row['js_interval']:.3f} | "
                     f"{row['repeat_share']:.1%} |")
    lines += ["", _reading(result["generation"])]
    lines += ["", "Conditions: *chord-scale processor* = the shipped generation settings "
              "(soft penalty on pitches outside the chord-scale and away from the recent "
              "trend); *pentatonic/trend (original)* = a hard mask to the chord's pentatonic "
              "near the trend, as the original Melody Flow did; *unconstrained* = the model "
              "alone; *random chord-scale notes* = uniform chord-scale pitches in the "
              "shipped range on the rhythm of the first condition.", ""]
    for plot in plots:
        lines.append(f"![{plot}]({plot})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model directory (or 'default')")
    parser.add_argument("--adapter", help="LoRA adapter directory or style")
    parser.add_argument("--data", default="runs/data", help="output of training.prepare")
    parser.add_argument("--out", default="training/report", help="report directory")
    parser.add_argument("--card", help="also put the numbers into this model dir's card")
    parser.add_argument("--bars", type=int, default=8, help="bars of each lead sheet")
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--solos", type=int, help="only the first N validation solos")
    parser.add_argument("--nll-docs", type=int, help="only the first N validation documents")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--musical-solos", type=int, default=0,
                        help="also measure the instrument under the solos' own rhythms "
                        "(bench/musical.py) on the first N validation solos; 0 = skip")
    parser.add_argument("--db", help="WJazzD SQLite file, for --musical-solos")
    args = parser.parse_args(argv)
    status = run_reporting_user_errors(
        "evaluate", evaluate, args.model, args.data, args.out, adapter=args.adapter,
        max_bars=args.bars, variations=args.variations, max_solos=args.solos,
        nll_docs=args.nll_docs, seed=args.seed, threads=args.threads, card=args.card)
    if status or not args.musical_solos:
        return status
    return run_reporting_user_errors("evaluate", musical, args.model, args.out,
                                     n_solos=args.musical_solos, db=args.db, card=args.card)


def musical(model: str, out: str, *, n_solos: int, db: str | None = None,
            card: str | None = None) -> Path:
    """bench/musical.py's measurement for this model: OUT/musical.md (+ plots); with a
    card, the model card's section "Under a human rhythm" too."""
    from bench.musical import DEFAULT_DB, run, write_card_section, write_report

    result = run(db=db or str(DEFAULT_DB), n_solos=n_solos,
                 model=None if model == "default" else model)
    report = write_report(result, Path(out))
    if card:
        write_card_section(report, Path(card))
    return report


if __name__ == "__main__":
    sys.exit(main())


"""Write a whole PhraseBank in one batched run: the chart from start to end, N variations.

One row of the batch is one variation: a single continuous document (prompt, header,
note lines, and chord markers if the model knows them), so phrases run on across bar
lines. When the chart is longer than the model's context can hold (the embedded model
reads 512 tokens, about 11 bars), the chart is cut into parts at section starts and
each variation's parts are written side by side as rows of the same batch; a single
row would only see its last few bars anyway. The rows of a part are then chained to the
variations so that each leaps as little as it can from one part into the next
(link_parts). The loop is ours, with a KV cache, because
chord markers are forced into each row at its own chord changes. A step: the model's
logits for the rows still writing, the constraint (MelodyControl, the core of
MelodyControlLogitsProcessor) on the rows that sample, temperature and top-p, one draw a
row from the seeded generator; rows with a forced token take it instead. Rows that are
done drop out of the batch. Every bar gets at least MIN_NOTES_PER_BAR
notes: the constraint never lets a wait skip past them (see the constraint package), and a
variation that still has an empty bar would be sampled again.

Same chart, model, settings and seed -> the same bank.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from melodyflowd.errors import UserError
from melodyflowd.generate.constraint import MelodyControl
from melodyflowd.generate.environment import environment
from melodyflowd.generate.model import LoadedModel
from melodyflowd.generate.textformat import (
    TextNote,
    format_marker,
    marker_for,
    parse_text,
    render_prompt,
)
from melodyflowd.music.chart import Chart
from melodyflowd.music.instruments import pitch_range
from melodyflowd.music.phrases import BarPhrase, PhraseBank, PhraseNote, bank_bars
from melodyflowd.music.timeline import Timeline
from melodyflowd.settings import GenerationSettings

MIN_NOTES_PER_BAR = 3       # "a few": a bar never ends with fewer
MAX_NOTES_PER_BAR = 16      # keeps the run bounded whatever the model does
MIN_WAIT_BEATS = 0.125      # no two onsets closer than a 32nd note
MAX_ATTEMPTS = 3
EXPECTED_NOTES_PER_BAR = 8  # for sizing parts of a long chart to the model's context
# Decoding runs small matrix products, one token a step: one intra-op thread is fastest
# (with two, the threads spin-wait on each other and, on a busy machine, on everything else).
DECODE_THREADS = environment().threads or 1
# The lean Llama forward (fastllama.py); MELODYFLOW_HF_FORWARD=1 uses transformers' own.
USE_FAST_FORWARD = not environment().hf_forward
MAX_CACHE = 4096            # tokens of KV cache a row; longer rows slide a window
TOP_K = 64                  # top-p looks at the 64 likeliest tokens first (all when needed)
# A chart whose parts x variations fit MAX_ROWS_AT_ONCE rows is written in one batched
# run. A longer one in runs of RUN_ROWS rows one after another, so that memory grows with
# that, not with the chart, the first part alone first (playable soonest). bench/long_chart
# (4 variations, embedded model): 1,000 bars in one run peaked at 1,437 MB; in runs of 16
# rows 544 MB, of 8 rows 498 MB (an 8-bar chart: 413 MB).
MAX_ROWS_AT_ONCE = 32
RUN_ROWS = 8
RUN_SEED_STEP = 104729      # run k of a long chart draws from seed + k * this


@dataclass
class ComposeStats:
    """What the last run did (for benchmarks and logs)."""

    steps: int = 0
    tokens: int = 0              # tokens written by rows still writing (forced ones included)
    forced: int = 0              # chord-marker tokens forced
    seconds: float = 0.0
    prefills: int = 0            # context windows read (1 + re-reads when a row overruns)
    segments: int = 1            # parts of the chart written side by side
    runs: int = 1                # batched runs one after another (plan_runs)
    dropped: int = 0             # rows the model stopped computing once they were done


@dataclass
class Composed:
    """A bank and what it took to write it."""

    bank: PhraseBank
    stats: ComposeStats


def sample(scores: torch.Tensor, uniform: torch.Tensor, temperature: float = 1.0,
           top_p: float = 1.0) -> torch.Tensor:
    """One token a row: temperature, then top-p (nucleus), then the inverse CDF at
    `uniform` (one number in [0, 1) a row). Tokens with probability 0 are never drawn."""
    if temperature != 1.0:
        scores = scores / temperature
    probs = torch.softmax(scores, dim=-1)
    if top_p < 1.0:
        k = min(scores.shape[1], TOP_K)
        top, index = torch.topk(probs, k, dim=-1)
        before = torch.cumsum(top, dim=-1) - top          # mass of the tokens above each
        if k < scores.shape[1] and bool((before[:, -1] + top[:, -1] < top_p).any()):
            top, index = torch.sort(probs, dim=-1, descending=True)
            before = torch.cumsum(top, dim=-1) - top
        keep = before < top_p
        keep[:, 0] = True
        probs = torch.where(keep, top, 0.0)
        # sorted: the tokens that can be drawn are a prefix; the last of them
        last = (probs > 0).sum(dim=-1, keepdim=True) - 1
    else:
        index = None
        last = (probs > 0).int().cumsum(dim=-1).argmax(dim=-1, keepdim=True)
    cdf = torch.cumsum(probs, dim=-1)
    point = (uniform * cdf[:, -1]).unsqueeze(1)
    pick = torch.searchsorted(cdf, point, right=True)
    # rounding can put the point at the very end: take the last token that can be drawn
    pick = torch.minimum(pick, last)
    if index is not None:
        pick = index.gather(1, pick)
    return pick[:, 0]


def _cache_argument(model) -> str:
    """The forward() keyword for the KV cache ("cache" in transformers 5, else the old one)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _prompt_text(chart: Chart, loaded: LoadedModel) -> str:
    num, den = chart.time
    return render_prompt(loaded.profile, title=chart.title, style=chart.style or "",
                         key=chart.key or "", tempo=chart.tempo, time=f"{num}/{den}")


def _settings_dict(settings: GenerationSettings) -> dict:
    return {"scale": settings.scale, "constraint": settings.constraint,
            "penalty": settings.penalty, "temperature": settings.temperature,
            "top_p": settings.top_p, "trend_notes": settings.trend_notes,
            "trend_range": settings.trend_range, "low": settings.low, "high": settings.high,
            "instrument": settings.instrument}


@dataclass(frozen=True, slots=True)
class Segment:
    """Bars start..end-1 of the chart, written by rows of their own."""

    start: int
    end: int


def plan_segments(chart: Chart, loaded: LoadedModel) -> list[Segment]:
    """The whole chart as one part when it fits the model's context; else parts that do,
    cut at section starts where possible, written side by side in the same batch.

    A row longer than the context would only see its last few bars anyway (the window
    slides), so cutting at a section start loses little and makes the run parallel.
    """
    n_bars = len(chart.bars)
    limit = loaded.context_length
    if not limit:
        return [Segment(0, n_bars)]
    profile = loaded.profile
    nt = loaded.note_tokenizer
    sample = {"pitch": 67, "duration": 12, "wait": 12, "velocity": 80, "program": 0}
    line = " ".join(str(sample[c]) for c in profile.columns) + "\n"
    per_note = len(nt.encode(line))
    per_bar = EXPECTED_NOTES_PER_BAR * per_note * chart.form_beats / n_bars / 4
    if profile.chord_markers:
        per_bar += 2 * len(nt.encode(format_marker("C:mixolydian")))
    prompt = len(loaded.encode(_prompt_text(chart, loaded)))
    max_bars = max(1, int((limit * 0.9 - prompt) // per_bar))
    if n_bars <= max_bars:
        return [Segment(0, n_bars)]
    starts = [0] + [i for i in range(1, n_bars)
                    if chart.bars[i].section != chart.bars[i - 1].section]
    sections = [Segment(a, b) for a, b in zip(starts, starts[1:] + [n_bars], strict=True)]
    chunks: list[Segment] = []
    for section in sections:              # a section longer than max_bars: even pieces
        length = section.end - section.start
        pieces = math.ceil(length / max_bars)
        edges = [section.start + round(k * length / pieces) for k in range(pieces + 1)]
        chunks += [Segment(a, b) for a, b in zip(edges, edges[1:], strict=False)]
    parts: list[Segment] = []
    for chunk in chunks:                  # short sections in a row: together when they fit
        if parts and chunk.end - parts[-1].start <= max_bars:
            parts[-1] = Segment(parts[-1].start, chunk.end)
        else:
            parts.append(chunk)
    return parts


@dataclass
class Row:
    variation: int
    segment: Segment
    text: str = ""


def generate_rows(chart: Chart, loaded: LoadedModel, settings: GenerationSettings,
                  variations: int, seed: int,
                  progress: Callable[[int, int], None] | None = None,
                  stats: ComposeStats | None = None,
                  segments: list[Segment] | None = None) -> list[Row]:
    """Generate `variations` documents over the whole chart (each possibly in parts)."""
    profile = loaded.profile
    nt = loaded.note_tokenizer
    timeline = Timeline(chart)
    segments = segments or plan_segments(chart, loaded)
    rows = [Row(v, seg) for v in range(variations) for seg in segments]
    batch = len(rows)
    if settings.constraint not in ("soft", "hard"):
        raise UserError(f"unknown constraint {settings.constraint!r}; accepted: soft, hard")
    try:
        low, high, centre = pitch_range(settings.instrument, settings.low, settings.high)
        proc = MelodyControl(
            nt, chart, scale=settings.scale, hard=settings.constraint == "hard",
            penalty=settings.penalty, low=low, high=high, centre=centre,
            trend_notes=settings.trend_notes, trend_range=settings.trend_range,
            tempo=chart.tempo, start_beat=[timeline.bar_start(r.segment.start) for r in rows],
            end_beat=[timeline.bar_start(r.segment.end) for r in rows], enforce_format=True,
            min_notes_per_bar=MIN_NOTES_PER_BAR, max_notes_per_bar=MAX_NOTES_PER_BAR,
            min_wait_beats=MIN_WAIT_BEATS)
    except ValueError as exc:
        raise UserError(f"generation settings: {exc}") from None

    prompt_ids = list(loaded.encode(_prompt_text(chart, loaded)))
    queues: list[list[int]] = [[] for _ in range(batch)]   # forced tokens a row
    last_marker: list[str | None] = [None] * batch
    if profile.chord_markers:                 # each row opens with its first chord's marker
        for i, row in enumerate(rows):
            last_marker[i] = marker_for(timeline.chord_at(timeline.bar_start(row.segment.start)))
            queues[i] = nt.encode(format_marker(last_marker[i]))
    pad = loaded.tokenizer.pad_token_id
    if pad is None:
        pad = int(nt.newline_ids[0])
    limit = loaded.context_length or 1 << 30
    if len(prompt_ids) + 32 > limit:
        raise UserError(f"the prompt needs {len(prompt_ids)} tokens but the model reads at "
                        f"most {limit}; use a shorter title", file=chart.source)
    longest = max(seg.end - seg.start for seg in segments)
    budget = longest * (MAX_NOTES_PER_BAR * (4 + 6 * len(profile.columns)) + 64) + 64

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, DECODE_THREADS))
    try:
        texts = _loop(_Run(
            loaded=loaded, proc=proc, settings=settings, timeline=timeline, rows=rows,
            prompt_ids=prompt_ids, queues=queues, last_marker=last_marker, pad=pad,
            window=min(limit, len(prompt_ids) + budget + 1, MAX_CACHE), budget=budget,
            seed=seed, progress=progress,
            stats=stats if stats is not None else ComposeStats()))
    finally:
        torch.set_num_threads(threads)
    for row, text in zip(rows, texts, strict=True):
        row.text = text
    return rows


class _Decoder:
    """One forward step a token: FastLlama with its in-place cache when the model is a
    plain Llama, else transformers' forward with its own cache."""

    def __init__(self, loaded: LoadedModel, batch: int, window: int) -> None:
        self.fast = loaded.fast_forward if USE_FAST_FORWARD else None
        self.window = window
        self.past = None
        if self.fast is not None:
            self.fast.new_cache(batch, window)
        else:
            self.model = loaded.model
            self.cache_arg = _cache_argument(self.model)

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        if self.fast is not None:
            return self.fast.forward(ids, 0)
        out = self.model(input_ids=ids, use_cache=True)
        self.past = _cache_of(out)
        return out.logits[:, -1, :].float()

    @property
    def can_select(self) -> bool:
        return self.fast is not None

    def select(self, rows: list[int], used: int) -> None:
        self.fast.select(rows, used)

    def step(self, ids: torch.Tensor, position: int) -> torch.Tensor:
        if self.fast is not None:
            return self.fast.forward(ids, position)
        out = self.model(input_ids=ids, use_cache=True, **{self.cache_arg: self.past})
        self.past = _cache_of(out)
        return out.logits[:, -1, :].float()


@dataclass
class _Run:
    """What one batched decoding run reads and writes (see _loop)."""

    loaded: LoadedModel
    proc: MelodyControl
    settings: GenerationSettings
    timeline: Timeline
    rows: list[Row]
    prompt_ids: list[int]
    queues: list[list[int]]             # tokens to force, a row (chord markers)
    last_marker: list[str | None]       # the last chord marker each row was given
    pad: int                            # the token fed to rows that are done
    window: int                         # tokens of KV cache a row
    budget: int                         # steps at most
    seed: int
    progress: Callable[[int, int], None] | None
    stats: ComposeStats
    marker_ids: dict[str, list[int]] = field(default_factory=dict)   # marker -> its tokens
    note_counts: list[int] = field(default_factory=list)   # notes each row has written
    done_bars: int = -1                 # the last progress reported


def _loop(run: _Run) -> list[str]:
    """Decode all rows side by side, one token a step, until every row is done (or the
    budget is spent); returns each row's text."""
    loaded, proc, stats = run.loaded, run.proc, run.stats
    batch = len(run.rows)
    generator = torch.Generator().manual_seed(run.seed)
    prompt_ids = run.prompt_ids
    n_prompt = len(prompt_ids)
    window = run.window
    decoder = _Decoder(loaded, batch, window)
    out_ids: list[list[int]] = [[] for _ in range(batch)]    # generated tokens a row
    proc.start(batch, n_prompt)
    states = proc.rows
    run.note_counts = [0] * batch
    started = time.perf_counter()
    active = list(range(batch))         # the rows the model still computes, in cache order
    with torch.inference_mode():
        out = decoder.prefill(torch.tensor([prompt_ids] * batch, dtype=torch.long))
        cache_len = n_prompt
        stats.prefills += 1
        for _ in range(run.budget):
            writing = [not s.done for s in states]
            stats.tokens += sum(writing)
            # one uniform number a row of the batch, whether it samples or not, so that the
            # draws do not depend on which rows the model still computes
            uniform = torch.rand(batch, generator=generator)
            nxt = _next_tokens(run, out, active, writing, uniform)
            stats.steps += 1
            for row in range(batch):
                out_ids[row].append(nxt[row])
            finished, changed = _feed(run, nxt, writing)
            if changed:
                _report_progress(run)
            if finished:
                break
            running = [i for i, r in enumerate(active) if not states[r].done]
            if decoder.can_select and len(active) - len(running) >= max(1, len(active) // 4):
                decoder.select(running, cache_len)  # stop computing rows that are done
                stats.dropped += len(active) - len(running)
                active = [active[i] for i in running]
            if cache_len + 1 >= window:
                # the context is full: re-read the prompt and the recent half of each row
                keep = max(1, window // 2 - n_prompt)
                context = torch.tensor([prompt_ids + out_ids[r][-keep:] for r in active],
                                       dtype=torch.long)
                out = decoder.prefill(context)
                cache_len = context.shape[1]
                stats.prefills += 1
            else:
                out = decoder.step(torch.tensor([[nxt[r]] for r in active], dtype=torch.long),
                                   cache_len)
                cache_len += 1
    stats.seconds += time.perf_counter() - started
    if run.progress is not None:
        run.progress(run.timeline.n_bars, run.timeline.n_bars)
    return [loaded.note_tokenizer.decode(ids) for ids in out_ids]


def _next_tokens(run: _Run, out: torch.Tensor, active: list[int], writing: list[bool],
                 uniform: torch.Tensor) -> list[int]:
    """The token each row takes this step: a forced one from its queue, else a sample from
    the model's scores (`out`, one row each of `active`) under the constraint; pad for the
    rows the model no longer computes."""
    nxt = [run.pad] * len(run.rows)
    sampled = []                    # (position in `out`, row)
    for i, row in enumerate(active):
        queue = run.queues[row]
        if queue:
            nxt[row] = queue.pop(0)
            if writing[row]:
                run.stats.forced += 1
        elif writing[row]:
            sampled.append((i, row))
    if sampled:
        if len(sampled) == out.shape[0]:
            scores = out
            sample_rows = active
        else:
            scores = out[torch.tensor([i for i, _ in sampled])]
            sample_rows = [row for _, row in sampled]
        run.proc.apply(scores, sample_rows)
        picks = sample(scores, uniform[torch.tensor(sample_rows)],
                       run.settings.temperature, run.settings.top_p).tolist()
        for row, token in zip(sample_rows, picks, strict=True):
            nxt[row] = token
    return nxt


def _feed(run: _Run, nxt: list[int], writing: list[bool]) -> tuple[bool, bool]:
    """Advance the constraint's rows by this step's tokens; a row that wrote a note under a
    new chord is given that chord's marker to force. Returns (every row done, a note was
    written)."""
    finished = True
    changed = False
    states = run.proc.rows
    markers = run.loaded.profile.chord_markers
    for row in range(len(run.rows)):
        if not writing[row]:
            continue
        run.proc.feed(row, nxt[row])
        state = states[row]
        if len(state.notes) != run.note_counts[row]:
            run.note_counts[row] = len(state.notes)
            changed = True
            if not state.done and markers:
                _queue_marker(run, row, marker_for(run.timeline.chord_at(state.time)))
        if not state.done:
            finished = False
    return finished, changed


def _queue_marker(run: _Run, row: int, marker: str) -> None:
    if marker == run.last_marker[row]:
        return
    run.last_marker[row] = marker
    ids = run.marker_ids.get(marker)
    if ids is None:
        ids = run.loaded.note_tokenizer.encode(format_marker(marker))
        run.marker_ids[marker] = ids
    run.queues[row] = list(ids)


def _report_progress(run: _Run) -> None:
    """Bars done (the slowest variation's), when it moved on."""
    if run.progress is None:
        return
    n_bars = run.timeline.n_bars
    per_variation = [0] * (max(r.variation for r in run.rows) + 1)
    for row, state in zip(run.rows, run.proc.rows, strict=True):
        bar = min(run.timeline.bar_of(state.time), row.segment.end)
        per_variation[row.variation] += bar - row.segment.start
    bars_done = min(per_variation)
    if bars_done != run.done_bars:
        run.done_bars = bars_done
        run.progress(min(bars_done, n_bars), n_bars)


def phrases_from_text(text: str, chart: Chart, loaded: LoadedModel,
                      segment: Segment | None = None) -> list[list[PhraseNote]]:
    """Parse a generated document into PhraseNotes per bar (beat in bar, chord at onset).

    Returns one list a bar of the chart; a part (segment) fills only its own bars.
    """
    profile = loaded.profile
    timeline = Timeline(chart)
    segment = segment or Segment(0, timeline.n_bars)
    bars: list[list[PhraseNote]] = [[] for _ in range(timeline.n_bars)]
    onset = timeline.bar_start(segment.start)
    for item in parse_text(text, profile):
        if not isinstance(item, TextNote):
            continue
        bar = timeline.bar_of(onset)
        wait = min(item.wait, profile.max_time)
        if bar >= segment.end:
            break
        beat = round(onset - timeline.bar_start(bar), 4)
        chord = chart.chord_at(bar, beat)
        bars[bar].append(PhraseNote(
            pitch=item.pitch, duration_ms=max(1, round(profile.to_ms(item.duration, chart.tempo))),
            wait_ms=round(profile.to_ms(wait, chart.tempo)), velocity=item.velocity, beat=beat,
            chord=chord.symbol))
        onset += profile.to_beats(wait, chart.tempo)
    return bars


def _with_empty_bar(variations: list[list[list[PhraseNote]]]) -> list[int]:
    return [i for i, bars in enumerate(variations) if any(not notes for notes in bars)]


def _assemble(rows: list[Row], chart: Chart, loaded: LoadedModel, variations: int
              ) -> list[list[list[PhraseNote]]]:
    out: list[list[list[PhraseNote]]] = [[[] for _ in chart.bars] for _ in range(variations)]
    parsed = [(row, phrases_from_text(row.text, chart, loaded, row.segment)) for row in rows]
    for row, bars in link_parts(parsed):
        for i in range(row.segment.start, row.segment.end):
            out[row.variation][i] = bars[i]
    return out


def link_parts(parsed: list[tuple[Row, list[list[PhraseNote]]]]
               ) -> list[tuple[Row, list[list[PhraseNote]]]]:
    """Chain the parts of a long chart so that each variation leaps as little as it can
    where one part ends and the next begins.

    The rows of a part were all written over the same bars, each without the part before
    it, so any of them may follow any row of the part before: at each seam the rows of the
    next part go to the variations by the pitch of their first note against the last note
    of each variation so far. Pairing both sorted by pitch makes the sum of the leaps the
    least possible (on a line, sorted to sorted is the best matching). The first part
    keeps its variations; nothing the model wrote changes, only which variation plays it.
    """
    segments = sorted({row.segment for row, _ in parsed}, key=lambda seg: seg.start)
    by_segment = {seg: [item for item in parsed if item[0].segment == seg] for seg in segments}
    linked = list(by_segment[segments[0]]) if segments else []
    for before, after in zip(segments, segments[1:], strict=False):
        ends = [(_edge_pitch(bars, before, last=True), row.variation)
                for row, bars in by_segment[before]]
        starts = [(_edge_pitch(bars, after, last=False), i)
                  for i, (_, bars) in enumerate(by_segment[after])]
        if len(ends) != len(starts):              # not one row a variation: leave as is
            linked += by_segment[after]
            continue
        for (_, variation), (_, i) in zip(sorted(ends), sorted(starts), strict=True):
            row, bars = by_segment[after][i]
            row.variation = variation
            linked.append((row, bars))
    return linked


def _edge_pitch(bars: list[list[PhraseNote]], segment: Segment, last: bool) -> int:
    """The pitch of a part's first or last note (60 when it has none)."""
    notes = [note for i in range(segment.start, segment.end) for note in bars[i]]
    if not notes:
        return 60
    return notes[-1].pitch if last else notes[0].pitch


def plan_runs(segments: list[Segment], variations: int) -> list[list[Segment]]:
    """The parts in playing order as batched runs: all in one when they fit
    MAX_ROWS_AT_ONCE rows; else the first part alone (playable while the rest is written),
    then runs of at most RUN_ROWS rows (all the variations of a part in the same run)."""
    if len(segments) * variations <= MAX_ROWS_AT_ONCE:
        return [list(segments)]
    per_run = max(1, RUN_ROWS // max(1, variations))
    rest = segments[1:]
    return [segments[:1]] + [rest[i:i + per_run] for i in range(0, len(rest), per_run)]


def compose_bank(chart: Chart, loaded: LoadedModel, settings: GenerationSettings,
                 progress: Callable[[int, int], None] | None = None,
                 partial: Callable[[PhraseBank], None] | None = None) -> PhraseBank:
    """The whole chart, settings.variations variations (see compose)."""
    return compose(chart, loaded, settings, progress, partial).bank


def compose(chart: Chart, loaded: LoadedModel, settings: GenerationSettings,
            progress: Callable[[int, int], None] | None = None,
            partial: Callable[[PhraseBank], None] | None = None) -> Composed:
    """The bank, with what the run took (steps, tokens, parts ...). A chart longer than
    one run (plan_runs) is written run after run; after each run but the last, `partial`
    gets the bank so far: the bars written, the others empty (the engine plays a chord's
    own tones there)."""
    if "wait" not in loaded.profile.columns:
        raise UserError("the model's profile has no 'wait' column, so phrases cannot follow "
                        "the chart; accepted: a profile whose columns include wait",
                        file=loaded.name)
    if not chart.bars:
        raise UserError("the chart has no bars", file=chart.source)
    seed = settings.seed if settings.seed is not None else secrets.randbelow(2 ** 31)
    stats = ComposeStats()
    segments = plan_segments(chart, loaded)
    runs = plan_runs(segments, settings.variations)
    stats.segments, stats.runs = len(segments), len(runs)
    n_bars = len(chart.bars)
    variations: list[list[list[PhraseNote]]] = [[[] for _ in chart.bars]
                                                for _ in range(settings.variations)]
    last_part: list[tuple[Row, list[list[PhraseNote]]]] = []
    for k, run in enumerate(runs):
        run_seed = seed if k == 0 else (seed + RUN_SEED_STEP * k) % 2 ** 63
        start, end = run[0].start, run[-1].end
        rows = generate_rows(chart, loaded, settings, settings.variations, run_seed,
                             _run_progress(progress, start, end, n_bars), stats, run)
        last_part = _place(rows, last_part, variations, chart, loaded)
        _rewrite_empty_bars(variations, chart, loaded, settings, run_seed, stats, run)
        if k + 1 < len(runs):
            _give_back_memory()
            if partial is not None:
                partial(_bank(chart, loaded, settings, seed, variations))
    if _with_empty_bar(variations):
        raise RuntimeError(f"a variation still has an empty bar after {MAX_ATTEMPTS} "
                           "attempts")
    return Composed(_bank(chart, loaded, settings, seed, variations), stats)


def _give_back_memory() -> None:
    """Between two runs: free what the run left, and hand the heap's free pages back to the
    system (glibc keeps them otherwise, and the next run's peak adds to them)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _run_progress(progress: Callable[[int, int], None] | None, start: int, end: int,
                  n_bars: int) -> Callable[[int, int], None] | None:
    """A run's progress (bars of its own) as bars of the whole chart."""
    if progress is None:
        return None
    return lambda done, _total: progress(start + min(done, end - start), n_bars)


def _place(rows: list[Row], last_part: list[tuple[Row, list[list[PhraseNote]]]],
           variations: list[list[list[PhraseNote]]], chart: Chart, loaded: LoadedModel
           ) -> list[tuple[Row, list[list[PhraseNote]]]]:
    """Write a run's rows into `variations`, chained (link_parts) to the last part of the
    run before, which keeps its variations. Returns the rows of this run's last part."""
    parsed = [(row, phrases_from_text(row.text, chart, loaded, row.segment)) for row in rows]
    ours = {id(row) for row, _ in parsed}
    linked = [item for item in link_parts(last_part + parsed) if id(item[0]) in ours]
    for row, bars in linked:
        for i in range(row.segment.start, row.segment.end):
            variations[row.variation][i] = bars[i]
    last = max(row.segment.start for row, _ in linked)
    return [item for item in linked if item[0].segment.start == last]


def _rewrite_empty_bars(variations: list[list[list[PhraseNote]]], chart: Chart,
                        loaded: LoadedModel, settings: GenerationSettings, seed: int,
                        stats: ComposeStats, run: list[Segment]) -> None:
    """A variation with a bar of this run that has no notes is sampled again over the run
    (with another seed). The constraint's wait bounds make this rare; the loop makes "never
    silent" hold anyway."""
    start, end = run[0].start, run[-1].end
    for attempt in range(1, MAX_ATTEMPTS + 1):
        bad = [v for v, bars in enumerate(variations) if not all(bars[start:end])]
        if not bad:
            return
        redo = generate_rows(chart, loaded, settings, len(bad), seed + 7919 * attempt,
                             None, stats, run)
        again = _assemble(redo, chart, loaded, len(bad))
        for v, bars in zip(bad, again, strict=True):
            variations[v][start:end] = bars[start:end]


def _bank(chart: Chart, loaded: LoadedModel, settings: GenerationSettings, seed: int,
          variations: list[list[list[PhraseNote]]]) -> PhraseBank:
    return PhraseBank(
        title=chart.title, tempo=float(chart.tempo), time=tuple(chart.time),
        bars=bank_bars(chart),
        variations=tuple(tuple(BarPhrase(bar=i, notes=tuple(notes))
                               for i, notes in enumerate(bars)) for bars in variations),
        model=loaded.name, adapter=loaded.adapter, seed=seed,
        settings=_settings_dict(settings))

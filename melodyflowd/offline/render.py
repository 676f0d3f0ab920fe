"""`melodyflow render`: generate a phrase bank without ports and write it to a file.

``.json`` is the phrase bank (what ``melodyflowd --phrases`` plays), ``.mid`` a MIDI file
with the variations one after another (or a track a variation) and the chord names as
markers, ``.png`` a piano roll in lines of up to 8 bars: a chord lane, then one row a
variation. Generation runs in the same generator process and cache as the daemon's
(generate/worker.py), with progress on stderr. Files are written whole (files.atomic_file),
with the user's umask, so an error or Ctrl-C never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from melodyflowd.errors import UserError
from melodyflowd.files import atomic_file
from melodyflowd.settings import Settings

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank

FORMATS = {".json": "phrase bank", ".mid": "MIDI", ".midi": "MIDI", ".png": "piano roll"}


def render_file(settings: Settings, out: str,
                progress: Callable[[str], None] | None = None, tracks: bool = False) -> Path:
    """Generate a bank for settings.chart and write it to `out` (.json, .mid or .png).
    A .mid has the variations one after another, or with `tracks` one track a variation.

    A chart given without a seed renders new phrases each time (the bank records the
    seed it used); with a seed, a cached bank is used when there is one."""
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"unknown output type {target.suffix or '(none)'!r}; use .json "
                        "(phrase bank), .mid (MIDI) or .png (piano roll)", file=out)
    if settings.chart is None:
        raise UserError("no chart given: pass --chart song.yaml")
    if not target.parent.is_dir():
        raise UserError(f"cannot write here: the folder {str(target.parent)!r} does not exist",
                        file=out)
    if suffix == ".png":
        _matplotlib()                     # fail before generating, not after
    bank = generate_bank(settings, progress or _StderrProgress())
    with _atomic(target) as handle:
        if suffix == ".json":
            import json

            from melodyflowd.music.phrases import bank_to_json

            handle.write(json.dumps(bank_to_json(bank), indent=1).encode("utf-8") + b"\n")
        elif suffix in (".mid", ".midi"):
            from melodyflowd.music.phrases import bank_to_midi

            bank_to_midi(bank, tracks=tracks).save(file=handle)
        else:
            piano_roll(bank, handle)
    return target


def generate_bank(settings: Settings, progress: Callable[[str], None],
                  chart: Chart | None = None, fresh: bool | None = None) -> PhraseBank:
    """One bank through the generator process, for the settings' chart file or `chart`;
    a user error comes back as UserError. `fresh` (default: when no seed is set): a new
    bank, not the cache's latest."""
    from melodyflowd.generate.worker import BankReady, ChildDied, Failed, GeneratorClient, Progress

    generation = settings.generation
    client = GeneratorClient(settings)      # not started: the first request that misses the
    try:                                    # cache spawns the child
        fresh = generation.seed is None if fresh is None else fresh
        request_id = client.request(settings.chart, generation, fresh=fresh) \
            if chart is None else client.request_chart(chart, generation, fresh=fresh)
        while True:
            for event in client.poll():
                if isinstance(event, Progress):
                    if event.total:
                        progress(f"{event.message}: {event.done}/{event.total}")
                    else:
                        progress(event.message)
                elif isinstance(event, ChildDied):
                    progress(event.message)
                elif isinstance(event, Failed) and event.request_id == request_id:
                    raise UserError(event.message)
                elif isinstance(event, BankReady) and event.request_id == request_id:
                    bank = event.bank
                    progress(f"done{' (from the cache)' if event.from_cache else ''}: "
                             f"{bank.n_variations} variations x {len(bank.bars)} bars, "
                             f"seed {bank.seed}")
                    return bank
            time.sleep(0.05)
    finally:
        client.stop()


class _StderrProgress:
    """Progress lines on stderr: rewritten in place on a terminal, else one line each
    (repeats of the same step only every few seconds)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_kind = ""
        self.last_time = 0.0

    def __call__(self, text: str) -> None:
        kind = text.split(":", 1)[0]
        if self.tty:
            end = "\n" if text.startswith("done") else ""
            self.stream.write(f"\r\x1b[K{text}{end}")
        else:
            now = time.monotonic()
            if kind == self.last_kind and now - self.last_time < 2.0 and \
                    not text.startswith("done"):
                return
            self.last_kind, self.last_time = kind, now
            self.stream.write(text + "\n")
        self.stream.flush()


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[IO[bytes]]:
    """files.atomic_file, an OSError reported as the user's one line."""
    try:
        with atomic_file(target) as handle:
            yield handle
    except OSError as exc:
        raise UserError(f"cannot write: {exc.strerror or exc}", file=str(target)) from None


# -- the piano roll --------------------------------------------------------------------

def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise UserError("writing .png needs matplotlib, an optional extra: "
                        "pip install 'melodyflowd[plot]' (or write .json / .mid)") from None
    return matplotlib


BEATS_PER_LINE = 32          # a line of the roll: 8 bars of 4/4, as wide as a page reads
INCHES_PER_BEAT = 0.34
LANE_INCHES = 0.45           # the chord lane above each line
ROW_INCHES = 1.1             # one variation's row in a line


def _short_name(name: str) -> str:
    """A model or adapter as a reader knows it: a directory by its own name (the style, for
    the embedded adapters), a hub id or a name as it is."""
    path = Path(name).expanduser()
    return path.name if os.sep in name and path.exists() else name


def roll_title(bank: PhraseBank) -> str:
    title = bank.title or "untitled"
    return (f"{title} - {_short_name(bank.model)}"
            + (f" + {_short_name(bank.adapter)}" if bank.adapter else "")
            + (f", seed {bank.seed}" if bank.seed is not None else ""))


def piano_roll(bank: PhraseBank, handle: IO[bytes]) -> None:
    """Write a PNG that reads like a lead sheet: lines of up to 8 bars (BEATS_PER_LINE),
    each a chord lane with bar lines and chord symbols, then one piano-roll row a variation
    (x: beats, y: pitch, shade: velocity). The title names the chart, model, adapter (its
    style name) and seed."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    starts = bank.bar_starts                          # every bar at its own meter's length
    n_bars = max(1, len(bank.bars))
    bar_beats = starts[-1] / n_bars if bank.bars else bank.beats_per_bar   # on average
    most = max(1, int(BEATS_PER_LINE // bar_beats))
    lines = -(-n_bars // most)
    bars_per_line = -(-n_bars // lines)               # lines as even as they come (12: 6 + 6)
    line_beats = max((starts[min(len(starts) - 1, first + bars_per_line)] - starts[first]
                      for first in range(0, len(starts) - 1, bars_per_line)),
                     default=bank.beats_per_bar)
    beat_ms = 60000.0 / bank.tempo
    pitches = [n.pitch for var in bank.variations for bar in var for n in bar.notes]
    low = min(pitches, default=60) - 2
    high = max(pitches, default=72) + 2
    rows = bank.n_variations
    width = max(8.0, line_beats * INCHES_PER_BEAT + 0.8)
    gap = 0.35                                        # between two lines
    line_inches = LANE_INCHES + ROW_INCHES * rows
    height = 0.7 + lines * line_inches + (lines - 1) * gap + 0.2
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ratios: list[float] = []
    for line in range(lines):
        if line:
            ratios.append(gap)
        ratios += [LANE_INCHES] + [ROW_INCHES] * rows
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.0)
    fig.suptitle(roll_title(bank), x=0.01, y=1 - 0.12 / height, ha="left", va="top",
                 fontsize=10)

    slot = 0
    for line in range(lines):
        if line:
            slot += 1                                     # the gap
        first_bar = line * bars_per_line
        x0 = starts[first_bar]
        lane = fig.add_subplot(grid[slot])
        slot += 1
        lane.set_xlim(x0, x0 + line_beats)
        lane.set_ylim(0, 1)
        lane.set_yticks([])
        lane.tick_params(bottom=False, top=False, labelbottom=False, labeltop=True,
                         labelsize=7, pad=1)
        in_line = [bar for bar in bank.bars
                   if first_bar <= bar.index < first_bar + bars_per_line]
        lane.set_xticks([starts[bar.index] for bar in in_line],
                        [str(bar.index + 1) for bar in in_line])
        for bar in in_line:
            start = starts[bar.index]
            lane.axvline(start, color="black", linewidth=0.8)
            for chord in bar.chords:
                x = start + chord.start_beat
                lane.add_patch(Rectangle((x, 0.1), chord.beats, 0.8, facecolor="#e8eef8",
                                         edgecolor="#7a8db0", linewidth=0.5))
                lane.text(x + 0.1, 0.5, chord.symbol, va="center", ha="left", fontsize=8,
                          clip_on=True)
        for row, variation in enumerate(bank.variations):
            ax = fig.add_subplot(grid[slot], sharex=lane)
            slot += 1
            ax.set_ylim(low, high)
            ax.set_ylabel(f"var {row + 1}", fontsize=7)
            ax.tick_params(labelsize=6, bottom=False, labelbottom=False)
            for bar in in_line:
                ax.axvline(starts[bar.index], color="#bbbbbb", linewidth=0.5)
            for phrase in variation:
                if not first_bar <= phrase.bar < first_bar + bars_per_line:
                    continue
                start = starts[phrase.bar]
                for note in phrase.notes:
                    length = max(0.05, note.duration_ms / beat_ms)
                    shade = 0.35 + 0.65 * min(127, max(1, note.velocity)) / 127
                    ax.add_patch(Rectangle((start + note.beat, note.pitch - 0.4), length, 0.8,
                                           facecolor=(0.1, 0.3, 0.7, shade), edgecolor="none"))
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.1 / width, top=1 - 0.7 / height,
                        bottom=0.2 / height)
    fig.savefig(handle, format="png")

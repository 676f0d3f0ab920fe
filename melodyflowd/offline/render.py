"""`melodyflow render`: generate a phrase bank without ports and write it to a file.

``.json`` is the phrase bank (what ``melodyflowd --phrases`` plays), ``.mid`` a MIDI file
with a track a variation and the chord names as markers, ``.png`` a piano roll: a chord
lane on top, then one row a variation. Generation runs in the same generator process and
cache as the daemon's (generate/worker.py), with progress on stderr. Files are written
atomically: a temporary file beside the target, renamed over it when complete, so an error
or Ctrl-C never leaves half a file.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from melodyflowd.errors import UserError
from melodyflowd.files import atomic_file
from melodyflowd.service.config import Settings

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank

FORMATS = {".json": "phrase bank", ".mid": "MIDI", ".midi": "MIDI", ".png": "piano roll"}


def render_file(settings: Settings, out: str,
                progress: Callable[[str], None] | None = None) -> Path:
    """Generate a bank for settings.chart and write it to `out` (.json, .mid or .png).

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

            bank_to_midi(bank).save(file=handle)
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


def piano_roll(bank: PhraseBank, handle: IO[bytes]) -> None:
    """Write a PNG: a chord lane with bar lines and chord symbols, then one piano-roll row a
    variation (x: beats through the form, y: pitch, shade: velocity)."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    bar_beats = bank.beats_per_bar
    total = max(1, len(bank.bars)) * bar_beats
    beat_ms = 60000.0 / bank.tempo
    pitches = [n.pitch for var in bank.variations for bar in var for n in bar.notes]
    low = min(pitches, default=60) - 2
    high = max(pitches, default=72) + 2
    rows = bank.n_variations
    width = min(60.0, max(8.0, total * 0.22))
    fig = Figure(figsize=(width, 1.0 + 1.8 * rows), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows + 1, 1, height_ratios=[0.5] + [1.8] * rows, hspace=0.08)

    lane = fig.add_subplot(grid[0])
    lane.set_xlim(0, total)
    lane.set_ylim(0, 1)
    lane.set_yticks([])
    lane.tick_params(labelbottom=False, bottom=False)
    title = bank.title or "untitled"
    lane.set_title(f"{title} - {bank.model}"
                   + (f" + {bank.adapter}" if bank.adapter else "")
                   + (f", seed {bank.seed}" if bank.seed is not None else ""), fontsize=10,
                   loc="left")
    for bar in bank.bars:
        start = bar.index * bar_beats
        lane.axvline(start, color="black", linewidth=0.8)
        for chord in bar.chords:
            x = start + chord.start_beat
            lane.add_patch(Rectangle((x, 0.1), chord.beats, 0.8, facecolor="#e8eef8",
                                     edgecolor="#7a8db0", linewidth=0.5))
            lane.text(x + 0.1, 0.5, chord.symbol, va="center", ha="left", fontsize=8,
                      clip_on=True)

    for row, variation in enumerate(bank.variations):
        ax = fig.add_subplot(grid[row + 1], sharex=lane)
        ax.set_xlim(0, total)
        ax.set_ylim(low, high)
        ax.set_ylabel(f"var {row + 1}", fontsize=8)
        ax.tick_params(labelsize=7)
        for bar in bank.bars:
            ax.axvline(bar.index * bar_beats, color="#bbbbbb", linewidth=0.5)
        for phrase in variation:
            start = phrase.bar * bar_beats
            for note in phrase.notes:
                length = max(0.05, note.duration_ms / beat_ms)
                shade = 0.35 + 0.65 * min(127, max(1, note.velocity)) / 127
                ax.add_patch(Rectangle((start + note.beat, note.pitch - 0.4), length, 0.8,
                                       facecolor=(0.1, 0.3, 0.7, shade), edgecolor="none"))
        if row < rows - 1:
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("bar", fontsize=8)
    step = max(1, -(-len(bank.bars) // 32))          # at most ~32 bar numbers
    lane.set_xticks([i * bar_beats for i in range(0, len(bank.bars), step)],
                    [str(i + 1) for i in range(0, len(bank.bars), step)])
    fig.subplots_adjust(left=max(0.01, 0.6 / width), right=0.99, top=1 - 0.45 / fig.get_figheight(),
                        bottom=0.45 / fig.get_figheight())
    fig.savefig(handle, format="png")

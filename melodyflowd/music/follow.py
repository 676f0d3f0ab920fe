"""Follow mode's phrases: lines for every chord-scale in all 12 roots. Pure, no I/O.

Without a chart (or when the hands leave it), melodyflowd plays over whatever chord the
left hand holds, so the lines must exist for every chord it can name before it is played.
`follow_chart()` is a synthetic chart the model writes them over, with the same
constraint as any chart: one chord a bar, one chord for each chord-scale theory.SCALES
knows (18) on each of the 12 roots, 216 bars (or a part of them: follow_charts() splits
them in the common scales, written first, and the rest). Each scale's 12 roots come down a cycle of
fifths in a section of their own, so the model hears a moving harmony and every bar
starts from where the line over the bar before ended: the lines start on many pitches.

`follow_lines(bank)` cuts that bank back into lines: for each (root, scale) the bar's
notes in every variation, and the same chord's notes in the other variations' bars. The
engine joins a line to the last note played by starting it at the note nearest to it.
"""

from __future__ import annotations

from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.meter import bar_beats
from melodyflowd.music.phrases import PhraseBank
from melodyflowd.music.theory import SCALES, parse_chord

ROOT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# One chord symbol for each chord-scale (parse_chord gives it that scale).
SCALE_CHORDS: dict[str, str] = {
    "ionian": "maj7",
    "lydian": "maj7#11",
    "lydian augmented": "maj7#5",
    "mixolydian": "7",
    "mixolydian sus4": "7sus4",
    "lydian dominant": "7#11",
    "mixolydian b6": "7(b13)",
    "phrygian dominant": "7(b9,b13)",
    "altered": "7alt",
    "half-whole diminished": "7b9",
    "whole tone": "7#5",
    "dorian": "m7",
    "aeolian": "m7(b13)",
    "phrygian": "m7b9",
    "melodic minor": "m(maj7)",
    "locrian natural 2": "m7b5",
    "locrian": "m7b5(b9)",
    "whole-half diminished": "dim7",
}
# The chord-scales a pianist's left hand names most (ii-V-I, minor ii-V, diminished
# passing chords): written first, so follow mode plays sooner; the rest come after (until
# then a missing scale plays the nearest written one's lines, live.follow).
FIRST_SCALES = ("ionian", "dorian", "mixolydian", "locrian natural 2", "altered",
                "half-whole diminished", "whole-half diminished")
LATER_SCALES = tuple(name for name in SCALE_CHORDS if name not in FIRST_SCALES)
CYCLE = tuple((k * 5) % 12 for k in range(12))        # C F Bb Eb ... G: down in fifths
FOLLOW_TITLE = "follow: every chord-scale in 12 keys"


def follow_chart(tempo: float = 120.0, time: tuple[int, int] = (4, 4),
                 style: str | None = None,
                 scales: tuple[str, ...] | None = None) -> Chart:
    """The synthetic chart of one chord a bar (see the module docstring), over `scales`
    (names of SCALE_CHORDS; None: all of them)."""
    num, den = time
    beats = bar_beats(time)
    bars = []
    form = []
    for name in scales if scales is not None else SCALE_CHORDS:
        suffix = SCALE_CHORDS[name]
        form.append(name)
        for root in CYCLE:
            chord = parse_chord(ROOT_NAMES[root] + suffix)
            if chord.scale_name != name:         # the table above is wrong: fail loudly
                raise ValueError(f"{chord.symbol} reads as {chord.scale_name}, not {name}")
            bars.append(Bar(index=len(bars), section=name,
                            chords=(ChordSpan(chord, 0.0, beats),)))
    return Chart(title=FOLLOW_TITLE, tempo=float(tempo), time=(num, den), key=None,
                 style=style, bars=tuple(bars), source="<follow>", form=tuple(form))


def follow_charts(style: str | None = None) -> tuple[Chart, Chart]:
    """Follow mode's lines in two charts, written in this order: FIRST_SCALES, then
    LATER_SCALES."""
    return (follow_chart(style=style, scales=FIRST_SCALES),
            follow_chart(style=style, scales=LATER_SCALES))


def is_follow_chart(chart: Chart) -> bool:
    """Is this follow_chart() (follow mode without a chart of the player's)?"""
    return chart.source == "<follow>" and chart.title == FOLLOW_TITLE


def scale_key(root: int, scale_name: str) -> int:
    """(root, scale) as one int: the index of the scale in SCALES * 12 + root."""
    return _SCALE_INDEX[scale_name] * 12 + root


_SCALE_INDEX = {name: i for i, name in enumerate(SCALES)}
N_SCALE_KEYS = len(SCALES) * 12


def follow_lines(bank: PhraseBank, chart: Chart) -> dict[int, tuple[tuple[int, ...], ...]]:
    """scale_key -> the lines (pitch tuples) written over that chord in the bank, one a
    variation and bar, in order. Keys with no notes in any variation are left out."""
    lines: dict[int, list[tuple[int, ...]]] = {}
    for variation in bank.variations:
        for b, bar in enumerate(chart.bars):
            chord = bar.chords[0].chord
            phrase = variation[b % len(variation)]
            pitches = tuple(n.pitch for n in sorted(phrase.notes, key=lambda n: n.beat))
            if pitches and chord.root is not None:
                lines.setdefault(scale_key(chord.root, chord.scale_name), []).append(pitches)
    return {k: tuple(v) for k, v in lines.items()}

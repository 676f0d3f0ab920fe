"""The scale modes: the one list of names `generation.scale`, `--scale` and the constraint take.

A per-chord mode is a set of pitch classes a chord allows (`theory.pitch_classes`);
`metrical` chooses per note, by where the note falls in the bar (`generate/metrical.py`).
Config, CLI and the logits processor all import `SCALE_MODES`, so a name the config
accepts is a name the generator knows.
"""

from __future__ import annotations

PER_CHORD_MODES: tuple[str, ...] = ("chord-scale", "pentatonic", "chord-tones", "chromatic")
SCALE_MODES: tuple[str, ...] = (*PER_CHORD_MODES, "metrical")

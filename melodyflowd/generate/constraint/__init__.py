"""NoteTokenizer and MelodyControlLogitsProcessor: bend a language model toward the harmony.

The model writes note lines ``pitch duration wait velocity program`` (the columns of the
model's profile). The processor follows every row of the batch incrementally: each step
it reads only the tokens added since its last call, through a small per-row line parser,
and adds up the generated waits, so it knows the time and the chord sounding at the next
note. Where the next token starts (or continues) a pitch number it computes the allowed
pitches - the chord's pitch classes for the scale mode, within low..high, near the mean
of the last few pitches - and pushes every other pitch token down by a number of
standard deviations of the pitch-token logits (soft), or masks it (hard).

Numbers may take several tokens ("1" "27", or "12" "7" with single-digit tokenizers).
The constraint works on the digit string: a token is allowed when the digits written so
far plus its own digits are still the beginning of an allowed number, and the token that
ends the number (a space, a newline, or a " 200"-style token) only when the digits
written so far are a whole allowed number. So the first digit token is constrained and
every later one stays consistent with it.

With ``enforce_format`` (what compose uses) every position of a note line is held to the
grammar: digits where a number goes, the separator the profile expects, durations and
velocities in range, and waits bounded so that every bar gets at least
``min_notes_per_bar`` notes and at most ``max_notes_per_bar``: a wait that would leave a
bar short is never sampled, the model samples again among the waits that fit.

Per step the Python work is per row and small (the tokens added since the last call go
through the line parser; what the row may write next is a dictionary lookup on its
state); the scores of the whole batch are then changed by a few tensor operations, with
the masks gathered from a table built once per distinct constraint.

``MelodyControl`` is the processor itself and needs only torch; compose uses it as is.
``MelodyControlLogitsProcessor`` is the same class as a ``transformers.LogitsProcessor``
for ``model.generate(logits_processor=...)``; it is built on first use, so code that never
asks for it never imports transformers.

The package, one job a module: tokens (NoteTokenizer: which ids spell numbers, spaces,
newlines), numbers (number fields and digit-prefix arithmetic), state (a row's place in its
line), masks (the mask table and the soft penalty), processor (MelodyControl); the chord
timeline is melodyflowd.music.timeline.
"""

from __future__ import annotations

from melodyflowd.generate.constraint.numbers import MAX_DIGITS, PitchSet, Range
from melodyflowd.generate.constraint.processor import (
    SCALE_MODES,
    MelodyControl,
    allowed_pitch_classes,
)
from melodyflowd.generate.constraint.state import LineState, RowState
from melodyflowd.generate.constraint.tokens import NoteTokenizer, token_texts
from melodyflowd.music.timeline import Timeline

__all__ = ["MAX_DIGITS", "SCALE_MODES", "LineState", "MelodyControl",
           "MelodyControlLogitsProcessor", "NoteTokenizer", "PitchSet", "Range", "RowState",
           "Timeline", "allowed_pitch_classes", "token_texts"]


def __getattr__(name: str):
    """MelodyControlLogitsProcessor: built (and transformers imported) on first use."""
    if name == "MelodyControlLogitsProcessor":
        cls = _logits_processor_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _logits_processor_class() -> type:
    from transformers import LogitsProcessor

    class MelodyControlLogitsProcessor(MelodyControl, LogitsProcessor):
        """MelodyControl as a transformers LogitsProcessor, for model.generate()."""

    MelodyControlLogitsProcessor.__module__ = __name__
    MelodyControlLogitsProcessor.__qualname__ = "MelodyControlLogitsProcessor"

    return MelodyControlLogitsProcessor

"""Number fields and their digit-prefix arithmetic: which digit tokens may start, continue
or end a number that must be an allowed pitch (PitchSet) or lie in a Range.

Numbers may take several tokens; a token is allowed when the digits written so far plus
its own are still the beginning of an allowed number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from melodyflowd.generate.constraint.tokens import NoteTokenizer

MAX_DIGITS = 6          # longest number the parser follows; longer makes the line junk


@dataclass(frozen=True, slots=True)
class PitchSet:
    """A number field whose value must be one of `values` (the allowed pitches)."""

    values: frozenset[int]

    def accepts(self, value: int) -> bool:
        return value in self.values


@dataclass(frozen=True, slots=True)
class Range:
    """A number field whose value must be within lo..hi, with at most `digits` digits."""

    lo: int
    hi: int
    digits: int = MAX_DIGITS

    def accepts(self, value: int) -> bool:
        return self.lo <= value <= self.hi


ANY_PITCH = PitchSet(frozenset(range(128)))


class Extensions:
    """For digit tokens at the start of a number: the values each can grow into.

    Row k holds [val * 10**k, (val + 1) * 10**k - 1], the numbers that start with the
    token's digits and have k more; computed once, so a range check is a few tensor ops.
    """

    def __init__(self, vals: torch.Tensor, lens: torch.Tensor, lead0: torch.Tensor) -> None:
        k = torch.arange(MAX_DIGITS, dtype=torch.long)
        power = torch.pow(torch.full_like(k, 10), k)
        self.low = vals[:, None] * power[None, :]
        self.high = (vals[:, None] + 1) * power[None, :] - 1
        self.length = lens[:, None] + k[None, :]
        self.usable = ((k[None, :] == 0) | (vals[:, None] > 0)) & ~lead0[:, None]

    def fits(self, field_: Range) -> torch.Tensor:
        return (self.usable & (self.length <= field_.digits) & (self.low <= field_.hi)
                & (self.high >= field_.lo)).any(dim=1)


def _prefix_ok(field_: PitchSet | Range, prefix: str, vals: torch.Tensor, lens: torch.Tensor,
               lead0: torch.Tensor, ext: Extensions | None = None) -> torch.Tensor:
    """For digit tokens (vals, lens): is prefix + token the start of an accepted number?"""
    plen = len(prefix)
    if not plen and ext is not None and isinstance(field_, Range):
        return ext.fits(field_)
    if plen and prefix == "0":            # "0" is complete; no number continues a leading 0
        return torch.zeros_like(lead0)
    pval = int(prefix) if plen else 0
    new_len = lens + plen
    scale = torch.pow(torch.full_like(lens, 10), lens)
    new_val = pval * scale + vals
    ok = torch.ones_like(lead0) if plen else ~lead0
    if isinstance(field_, PitchSet):
        ok = ok & (new_len <= 3)
        table = _prefix_table(field_)
        key = torch.clamp(new_len, max=3) * 1000 + torch.clamp(new_val, max=999)
        return ok & table[key]
    ok = ok & (new_len <= field_.digits)
    any_fit = torch.zeros_like(ok)
    for extra in range(0, field_.digits):
        low = new_val * (10 ** extra)
        high = low + (10 ** extra - 1)
        fits = (new_len + extra <= field_.digits) & (low <= field_.hi) & (high >= field_.lo)
        if extra:
            fits = fits & (new_val > 0)     # "0" cannot be extended
        any_fit = any_fit | fits
    return ok & any_fit


_PREFIX_TABLES: dict[frozenset[int], torch.Tensor] = {}


def _prefix_table(pitches: PitchSet) -> torch.Tensor:
    table = _PREFIX_TABLES.get(pitches.values)
    if table is None:
        table = torch.zeros(4000, dtype=torch.bool)
        keys = [n * 1000 + int(str(p)[:n]) for p in pitches.values
                for n in range(1, len(str(p)) + 1)]
        if keys:
            table[torch.tensor(keys)] = True
        if len(_PREFIX_TABLES) > 4096:
            _PREFIX_TABLES.clear()
        _PREFIX_TABLES[pitches.values] = table
    return table


RANGE_SCAN = 5000      # ranges up to this many values are scanned in Python


def _range_continuations(nt: NoteTokenizer, field_: PitchSet | Range, prefix: str
                         ) -> torch.Tensor | None:
    """Digit tokens that continue `prefix` toward a number of a small Range, found from the
    numbers themselves (what _prefix_ok computes, without a dozen tensor operations a
    call); None where _prefix_ok must do it (no prefix, a pitch set, a large range)."""
    if not isinstance(field_, Range) or not prefix or prefix[0] == "0" or \
            field_.hi - field_.lo > RANGE_SCAN:
        return None
    by_text = nt.digit_ids_by_text
    plen = len(prefix)
    pieces: set[str] = set()
    for n in range(max(field_.lo, 0), field_.hi + 1):
        text = str(n)
        if plen < len(text) <= field_.digits and text.startswith(prefix):
            rest = text[plen:]
            pieces.update(rest[:k] for k in range(1, len(rest) + 1))
    ids = sorted(i for piece in pieces for i in by_text.get(piece, ()))
    return torch.tensor(ids, dtype=torch.long)


def _whole_ok(field_: PitchSet | Range, vals: torch.Tensor, lens: torch.Tensor,
              lead0: torch.Tensor) -> torch.Tensor:
    """For word-level tokenizers: is each digit token a whole accepted number?"""
    ok = ~lead0
    if isinstance(field_, PitchSet):
        allowed = torch.tensor(sorted(field_.values), dtype=torch.long)
        return ok & (lens <= 3) & torch.isin(vals, allowed)
    return ok & (lens <= field_.digits) & (vals >= field_.lo) & (vals <= field_.hi)


# -- per-row state ----------------------------------------------------------------------



ANY_NUMBER = Range(0, 10 ** MAX_DIGITS - 1)

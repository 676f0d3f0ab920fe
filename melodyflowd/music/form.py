"""The playing order of written bars: repeats, 1st/2nd/3rd endings, D.C./D.S., coda, Fine.

Shared by the chart reader (repeats and endings inside a section) and the
importers (everything a lead sheet says). Pure.

The rules a band follows: a repeat sign sends you back to the repeat start (or
the top) once, or as many times as written ("3x") or as the endings need; an
ending N is played on pass N and skipped otherwise; after a D.C. (to the top)
or D.S. (to the segno) repeats are not taken again and the last ending is
played; "al Fine" stops at Fine (or the end sign), "al Coda" leaves at the
"to coda" sign for the coda, whose own repeats are played.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from melodyflowd.errors import UserError

MAX_BARS = 4000             # an unrolled form longer than this has a jump that never ends


class FormError(UserError):
    """Repeats and jumps that never end."""


@dataclass(slots=True, kw_only=True)
class Signs:
    """What a written bar says about the form (read by playing_order); the bars of the chart
    reader and of each importer extend it."""

    repeat_start: bool = False
    repeat_end: bool = False
    times: int | None = None    # times the repeat is played ("3x"); None: 2 or the endings'
    ending: int = 0             # 0, or the ending (1, 2, 3) that starts at this bar
    segno: bool = False
    coda_start: bool = False    # the coda begins here
    coda_after: bool = False    # "to coda" at the end of this bar
    jump: str | None = None     # "D.C." or "D.S." at the end of this bar
    jump_to: str | None = None  # "Coda", "Fine" or None
    fine: bool = False
    end: bool = False           # the tune ends here on its last time


def playing_order(bars: Sequence[Signs]) -> list[int]:
    """Indices of the written bars in the order they are played."""
    n = len(bars)
    if n == 0:
        return []
    segno = next((k for k, b in enumerate(bars) if b.segno), 0)
    codas = [k for k, b in enumerate(bars) if b.coda_start or b.coda_after]
    jump_bar = next((k for k, b in enumerate(bars) if b.jump), None)
    coda_start: int | None = None
    to_coda: int | None = None
    starts = [k for k, b in enumerate(bars) if b.coda_start]
    afters = [k for k, b in enumerate(bars) if b.coda_after]
    if len(codas) >= 2:
        to_coda = afters[0] if afters else codas[0]
        later = [k for k in starts if k > to_coda] or [k for k in codas if k > to_coda]
        coda_start = later[-1] if later else None
    elif starts and jump_bar is not None and starts[0] > jump_bar:
        coda_start = starts[0]
        to_coda = jump_bar            # no "to coda" sign: leave at the D.S. bar itself
    # endings and repeat groups
    group_start = [0] * n
    start = 0
    for k, bar in enumerate(bars):
        if bar.repeat_start:
            start = k
        group_start[k] = start
        if bar.repeat_end and k + 1 < n and not bars[k + 1].ending:
            start = k + 1
    last_ending: dict[int, int] = {}
    for k, bar in enumerate(bars):
        if bar.ending:
            g = group_start[k]
            last_ending[g] = max(last_ending.get(g, 0), bar.ending)

    # an ending means something only where a repeat sign sends the band back
    has_repeat = {g: any(bars[j].repeat_end for j in range(n) if group_start[j] == g)
                  for g in set(group_start)}

    order: list[int] = []
    passes: dict[int, int] = {}       # repeat group start -> times played so far
    jumped = False
    in_coda = False
    k = 0
    while k < n:
        if len(order) > MAX_BARS:
            raise FormError(f"the form does not end: more than {MAX_BARS} bars unrolled "
                            f"(check the repeats and D.C./D.S. signs)")
        bar = bars[k]
        g = group_start[k]
        if bar.ending and has_repeat[g]:
            last = last_ending.get(g, 1)
            want = last if jumped else min(passes.get(g, 0) + 1, last)
            if bar.ending != want:
                nxt = next((j for j in range(k + 1, n) if bars[j].ending == want
                            and group_start[j] == g), None)
                if nxt is None:
                    # past this ending: to the bar after the group's repeat end
                    nxt = next((j + 1 for j in range(k, n) if bars[j].repeat_end), n)
                    nxt = max(nxt, k + 1)
                    while nxt < n and bars[nxt].ending and bars[nxt].ending != want:
                        nxt += 1
                k = nxt
                continue
        order.append(k)
        if jumped and (bar.fine or bar.end) and (bars[jump_bar].jump_to != "Coda"
                                                 if jump_bar is not None else True):
            break
        if jumped and to_coda == k and coda_start is not None and coda_start > k:
            k = coda_start
            jumped, in_coda = False, True       # the coda's own repeats are played
            continue
        if bar.repeat_end and not jumped:
            times = bar.times or max(2, last_ending.get(g, 0))
            done = passes.get(g, 0) + 1
            if done < times:
                passes[g] = done
                k = g
                continue
            passes[g] = done
        if bar.jump and not jumped and not in_coda:
            jumped = True
            k = segno if bar.jump == "D.S." else 0
            continue
        k += 1
    return order



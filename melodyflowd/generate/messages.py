"""The messages on the pipes between the daemon (GeneratorClient) and the generator child.

Requests go parent -> child, reports go child -> parent; both sides `match` on the class.
The events at the end are what `GeneratorClient.poll()` hands its callers (the daemon,
`melodyflow render`), made from the reports; they `match` on them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank
    from melodyflowd.settings import GenerationSettings

# every message is plain immutable data
message = dataclass(frozen=True, slots=True)

# -- requests: parent -> child ------------------------------------------------------------

@message
class Generate:
    request_id: int
    chart: Chart
    generation: GenerationSettings    # seed always set
    keys: tuple[str, ...]             # cache keys to store the bank under


@message
class Cancel:
    request_id: int


@message
class Stop:
    pass


Request = Generate | Cancel | Stop


# -- reports: child -> parent -------------------------------------------------------------

@message
class LogLine:
    level: int
    logger: str
    text: str


@message
class ModelLoading:
    text: str


@message
class ModelLoaded:
    text: str


@message
class Started:
    request_id: int


@message
class Working:
    request_id: int
    done: int
    total: int
    text: str


@message
class Made:
    request_id: int
    bank: PhraseBank


@message
class Refused:
    request_id: int
    text: str
    retry: bool = False               # not the user's file or setting (a bug, say)


@message
class MadePart:
    """The bank so far of a long chart (compose's runs): the bars written, others empty."""

    request_id: int
    bank: PhraseBank
    bars_done: int


@message
class Alive:
    """The child's heartbeat (a thread of its own sends it every HEARTBEAT_SECONDS)."""


Report = (LogLine | ModelLoading | ModelLoaded | Started | Working | Made | MadePart | Refused
          | Alive)


# -- events: what poll() returns ---------------------------------------------------------

@message
class Progress:
    """Work under way. request_id 0: not about a request (the model loading at start-up)."""

    request_id: int
    done: int
    total: int                # 0 when unknown (loading)
    message: str              # "loading model ...", "generating", "restarting generator"


@message
class BankReady:
    request_id: int
    bank: PhraseBank
    from_cache: bool


@message
class BankPart:
    """The first bars of a long chart's bank, playable while the rest is written; a
    BankReady with the whole bank follows (or Failed)."""

    request_id: int
    bank: PhraseBank
    bars_done: int


@message
class Failed:
    request_id: int
    message: str              # one line, a UserError's text where the user can fix it
    retry: bool = False       # not the user's file or setting: the child died, a bug


@message
class ChildDied:
    """The generator process ended unasked; a new one is started (requests are re-sent)."""

    exitcode: int | None      # negative: killed by that signal
    message: str              # one line for the log


Event = Progress | BankPart | BankReady | Failed | ChildDied

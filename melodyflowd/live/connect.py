"""Automatic connections: join the ports whose names match the user's patterns to ours, at
start and whenever such a port appears (a keyboard plugged in after start).

`connect_in` patterns pick ports that send MIDI (a keyboard); they are joined to our input
port. `connect_out` patterns pick ports that take MIDI (a synth); our output port is joined
to them. A pattern matches a port name as `melodyflow ports` shows it ("client:port"; on
ALSA without the "128:0" address; on JACK an alias counts too), ignoring case: a pattern
with a shell wildcard (`*`, `?`, `[`) must match the whole name, any other is a part of it.

`Connector.poll()` runs in the daemon's main loop (never in the MIDI callback): it lists
the ports, joins the matching ones it has not joined yet, and forgets the ones that went
away, so a port that comes back is joined again. A connection the user removed by hand
stays removed while that port stays. The backends are libraries, each behind `Links`:
JACK-Client for JACK, alsa-midi for the ALSA sequencer.
"""

from __future__ import annotations

import errno
import fnmatch
import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from melodyflowd.errors import RetryError, UserError

log = logging.getLogger("melodyflowd")

WILDCARDS = frozenset("*?[")


def matches(pattern: str, names: Iterable[str]) -> bool:
    """Whether `pattern` matches one of a port's names (its name and aliases)."""
    wanted = pattern.casefold()
    glob = any(c in WILDCARDS for c in wanted)
    for name in names:
        name = name.casefold()
        if fnmatch.fnmatchcase(name, wanted) if glob else wanted in name:
            return True
    return False


@dataclass(frozen=True, slots=True)
class PortName:
    """A port as a backend lists it: `key` is what `Links.connect` takes, `names` what
    patterns are matched against (the first is the one shown)."""

    key: Any
    names: tuple[str, ...]

    @property
    def shown(self) -> str:
        return self.names[0]


class Links(Protocol):
    """One backend's view of the MIDI graph, used from the main loop only."""

    def sources(self) -> list[PortName]: ...        # ports that send MIDI
    def destinations(self) -> list[PortName]: ...   # ports that take MIDI
    def connect(self, source: PortName, destination: PortName) -> None: ...
    def close(self) -> None: ...


def _own(port: PortName, own_names: Sequence[str]) -> bool:
    return any(name.split(":", 1)[0] in own_names for name in port.names)


@dataclass
class Connector:
    """Joins matching ports to `in_port` / from `out_port`; `poll()` from the main loop."""

    links: Links
    in_port: PortName
    out_port: PortName
    connect_in: tuple[str, ...]
    connect_out: tuple[str, ...]
    own_clients: tuple[str, ...] = ()           # never joined to themselves (no loops)
    _joined_in: set[Any] = field(default_factory=set)
    _joined_out: set[Any] = field(default_factory=set)
    failed: int = 0

    def poll(self) -> list[str]:
        """Join what matches and is new; returns a line for each connection made."""
        made: list[str] = []
        if self.connect_in:
            self._joined_in = self._join(self.links.sources(), self.connect_in,
                                         self._joined_in, made, into_ours=True)
        if self.connect_out:
            self._joined_out = self._join(self.links.destinations(), self.connect_out,
                                          self._joined_out, made, into_ours=False)
        return made

    def _join(self, ports: list[PortName], patterns: tuple[str, ...], joined: set[Any],
              made: list[str], into_ours: bool) -> set[Any]:
        present: set[Any] = set()
        for port in ports:
            if _own(port, self.own_clients) or not any(matches(p, port.names)
                                                       for p in patterns):
                continue
            present.add(port.key)
            if port.key in joined:
                continue
            source, destination = (port, self.in_port) if into_ours else (self.out_port, port)
            try:
                self.links.connect(source, destination)
            except Exception as exc:            # a port that went away meanwhile, a refusal
                self.failed += 1
                log.warning("cannot connect %s -> %s: %s", source.shown, destination.shown,
                            exc)
                present.discard(port.key)        # try again at the next poll
                continue
            made.append(f"connected {source.shown} -> {destination.shown}")
        return present

    def close(self) -> None:
        self.links.close()


_PIP_NAMES = {"jack": "JACK-Client", "alsa_midi": "alsa-midi"}     # module -> package


def _library(module: str, needs: str) -> Any:
    """The library a backend's graph is reached through, or one line saying how to get it."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise UserError(f"connecting {needs} ({exc}); pip install {_PIP_NAMES[module]}"
                        ) from exc


class _Graph:
    """What the two backends share: sources and destinations from one port listing."""

    client: Any

    def _ports(self, sending: bool) -> list[PortName]:
        raise NotImplementedError

    def sources(self) -> list[PortName]:
        return self._ports(sending=True)

    def destinations(self) -> list[PortName]:
        return self._ports(sending=False)

    def close(self) -> None:
        self.client.close()


# -- JACK ---------------------------------------------------------------------------------

class JackLinks(_Graph):
    """The JACK graph through JACK-Client (a client without ports of its own)."""

    def __init__(self, name: str) -> None:
        jack = self._jack = _library("jack", "JACK ports needs the JACK-Client package and "
                                             "libjack")
        try:
            self.client = jack.Client(name, no_start_server=True)
        except jack.JackError as exc:
            raise RetryError(f"cannot reach the JACK server to connect ports: {exc}") from exc

    def _ports(self, sending: bool) -> list[PortName]:
        # Keyed by name and the client's uuid (new for every client, where port uuids are
        # reused): a client that restarts between two polls is joined again.
        clients: dict[str, str] = {}
        found = []
        for port in self.client.get_ports(is_midi=True, is_output=sending,
                                          is_input=not sending):
            owner = port.name.split(":", 1)[0]
            if owner not in clients:
                try:
                    clients[owner] = self.client.get_uuid_for_client_name(owner)
                except self._jack.JackError:        # gone meanwhile: next poll
                    continue
            found.append(PortName((port.name, clients[owner]), (port.name, *port.aliases)))
        return found

    def connect(self, source: PortName, destination: PortName) -> None:
        try:
            self.client.connect(source.shown, destination.shown)
        except self._jack.JackErrorCode as exc:
            if exc.code != errno.EEXIST:             # joined already (by hand, say)
                raise

    def port(self, full_name: str) -> PortName:
        return PortName((full_name, None), (full_name,))


# -- ALSA ---------------------------------------------------------------------------------

class AlsaLinks(_Graph):
    """The ALSA sequencer graph through alsa-midi (a client without ports of its own)."""

    def __init__(self, name: str) -> None:
        alsa = self._alsa = _library("alsa_midi", "ALSA ports needs the alsa-midi package")
        try:
            self.client = alsa.SequencerClient(name)
        except alsa.ALSAError as exc:
            raise RetryError(f"cannot open the ALSA sequencer to connect ports: {exc}"
                             ) from exc

    def _ports(self, sending: bool) -> list[PortName]:
        # alsa-midi's "input" ports are those we can read from: the senders.
        found = self.client.list_ports(type=self._alsa.PortType.ANY, sort=False,
                                       input=sending, output=not sending)
        return [PortName((info.client_id, info.port_id),
                         (f"{info.client_name}:{info.name}",)) for info in found]

    def connect(self, source: PortName, destination: PortName) -> None:
        try:
            self.client.subscribe_port(source.key, destination.key)
        except self._alsa.ALSAError as exc:
            if "busy" not in str(exc).lower():   # EBUSY: joined already (by hand, say)
                raise

    def port(self, client_and_port: str) -> PortName:
        """Our own port, "client:port" as rtmidi names it, found by its names."""
        for info in self.client.list_ports(type=self._alsa.PortType.ANY, sort=False,
                                           only_connectable=False):
            if f"{info.client_name}:{info.name}" == client_and_port:
                return PortName((info.client_id, info.port_id), (client_and_port,))
        raise UserError(f"cannot find our own ALSA port {client_and_port!r} to connect")


def check_connect_backend(port_settings: Any) -> None:
    """Patterns are joined on ALSA and JACK only: say so at start, before any generation."""
    if (port_settings.connect_in or port_settings.connect_out) and \
            port_settings.backend not in ("jack", "alsa"):
        raise UserError(f"connect_in / connect_out work on ALSA and JACK, not "
                        f"{port_settings.backend}; connect the ports in your system's MIDI "
                        "settings")


def open_connector(port_settings: Any) -> Connector | None:
    """A Connector for the open ports of `port_settings` (backend already chosen), or None
    when no pattern is set. Our virtual ports are "NAME:NAME" on both ALSA and JACK
    (rtmidi names the client after the port)."""
    if not port_settings.connect_in and not port_settings.connect_out:
        return None
    check_connect_backend(port_settings)
    backend = port_settings.backend
    links: JackLinks | AlsaLinks = (JackLinks if backend == "jack" else AlsaLinks)(
        f"{port_settings.in_name} connect")
    try:
        in_port = links.port(f"{port_settings.in_name}:{port_settings.in_name}")
        out_port = links.port(f"{port_settings.out_name}:{port_settings.out_name}")
    except BaseException:
        links.close()
        raise
    return Connector(links, in_port, out_port, tuple(port_settings.connect_in),
                     tuple(port_settings.connect_out),
                     own_clients=(port_settings.in_name, port_settings.out_name))

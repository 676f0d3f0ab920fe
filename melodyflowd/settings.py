"""What melodyflowd can be told: the typed settings every part reads, and the values a
setting accepts where they are a fixed list.

The dataclasses and field names are the fixed interface shared by engine, generator and
daemon: add fields freely, do not rename them. service/config.py fills them from the
defaults file, a config file and command-line flags; a new field is read from config files
automatically (its type hint is its schema). Give it a commented entry in
melodyflowd/default.yaml (tests/service/test_config.py checks that every field has one),
and a range there if it has one, choices here if it has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from melodyflowd.music.instruments import INSTRUMENTS
from melodyflowd.music.scale_modes import SCALE_MODES

AUTO_BACKEND = "auto"                    # ALSA where there is a sequencer, else a running JACK
BACKENDS = (AUTO_BACKEND, "alsa", "jack", "coremidi", "windows")
LOG_LEVELS = ("debug", "info", "warning", "error")
ENGINE_MODES = ("mono", "poly")
REGISTERS = ("line", "keys")
CONSTRAINTS = ("soft", "hard")

# The settings whose values are one of a fixed list (dotted names, as in a config file).
CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": LOG_LEVELS,
    "ports.backend": BACKENDS,
    "engine.mode": ENGINE_MODES,
    "engine.register": REGISTERS,
    "generation.scale": SCALE_MODES,
    "generation.instrument": INSTRUMENTS,
    "generation.constraint": CONSTRAINTS,
}


@dataclass(frozen=True, slots=True)
class PortSettings:
    backend: str = "auto"                   # auto | alsa | jack | coremidi | windows
    in_name: str = "melodyflowd in"
    out_name: str = "melodyflowd out"
    sysex: bool = False                      # pass whole SysEx messages on (off: dropped)
    # Name patterns (live/connect.py): ports that send to our input / that our output
    # sends to, joined at start and whenever such a port appears.
    connect_in: tuple[str, ...] = ()
    connect_out: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ControlMap:
    """Control-change numbers the engine consumes instead of passing through (None = off)."""

    channel: int | None = None       # 0-15; None = any channel
    regenerate: int | None = 20
    next_variation: int | None = 21
    previous_variation: int | None = 22
    select_variation: int | None = 23   # value = variation index (wraps)
    panic: int | None = 24


@dataclass(frozen=True, slots=True)
class EngineSettings:
    mode: str = "mono"                      # mono | poly
    channels: tuple[int, ...] = ()          # input channels 0-15 remapped; () = all but 9
                                            # (MIDI channel 10: drums)
    out_channel: int | None = None          # 0-15; None = same channel as the key
    split: int | None = None                # keys >= split are remapped, below pass through
    anticipation_ms: float = 0.0            # play the next chord's phrase this early
    contour: bool = False                   # keys up/down prefer phrase notes up/down
    register: str = "line"                  # line | keys: keys = the line's octave follows
                                            # the register of the keys played
    rotate_variations: bool = False         # next variation each time the form repeats
    follow: bool = False                    # play over the chord the chord keys hold
    chord_channel: int | None = None        # 0-15: follow the chords on this channel
    bass_channel: int | None = None         # 0-15: its note is the followed chord's bass
    controls: ControlMap = field(default_factory=ControlMap)


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    model: str | None = None                # None = the embedded default model
    adapter: str | None = None              # peft dir or a style name in the model's adapters/
    variations: int = 4
    seed: int | None = None
    scale: str = "metrical"                 # metrical | chord-scale | pentatonic | chord-tones
                                            # | chromatic
    constraint: str = "soft"                # soft | hard
    penalty: float = 0.3                    # soft penalty, in std devs of the pitch logits
    temperature: float = 0.9
    top_p: float = 0.95
    trend_notes: int = 4
    trend_range: int = 5                    # semitones around the recent pitch trend
    low: int = 55                           # lowest pitch allowed
    high: int = 84                          # highest pitch allowed
    instrument: str | None = "any"          # a register from music/instruments.py: wins
                                            # over low/high
    cache_dir: str = "~/.cache/melodyflowd"


@dataclass(frozen=True, slots=True)
class ViewSettings:
    """The live view in the browser (melodyflowd/service/view/)."""

    port: int | None = None                 # None = no view; 0 = any free port
    address: str = "127.0.0.1"              # where it listens; another only when named


@dataclass(frozen=True, slots=True)
class Settings:
    chart: str | None = None
    tune: str | None = None                 # which tune of a playlist chart
    phrases: str | None = None              # play a saved bank instead of generating
    log_level: str = "info"
    stats_interval: float = 60.0            # seconds between stats lines; 0 = off
    ports: PortSettings = field(default_factory=PortSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    view: ViewSettings = field(default_factory=ViewSettings)
    # Where these settings came from (not settings themselves, not in any config file):
    # `reload_settings(settings)` reads the same file with the same overrides again (SIGHUP).
    config_file: str | None = None
    overrides: tuple[tuple[str, object], ...] = ()

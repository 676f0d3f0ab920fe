"""Config file + CLI overrides -> one frozen Settings.

SKELETON: the dataclasses and field names are the fixed interface shared by
engine, generator and daemon; loading/merging/validation is owned by the
service work. Add fields freely; do not rename them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


def platform_backend() -> str:
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "windows"
    return "alsa"


@dataclass(frozen=True, slots=True)
class PortSettings:
    backend: str = field(default_factory=platform_backend)   # alsa | jack | coremidi | windows
    in_name: str = "melodyflowd in"
    out_name: str = "melodyflowd out"


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
    channels: tuple[int, ...] = ()          # input channels 0-15 that are remapped; () = all
    out_channel: int | None = None          # 0-15; None = same channel as the key
    split: int | None = None                # keys >= split are remapped, below pass through
    anticipation_ms: float = 0.0            # play the next chord's phrase this early
    contour: bool = False                   # keys up/down prefer phrase notes up/down
    rotate_variations: bool = False         # next variation each time the form repeats
    controls: ControlMap = field(default_factory=ControlMap)


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    model: str | None = None                # None = the embedded default model
    adapter: str | None = None              # peft dir or a style name in the model's adapters/
    variations: int = 4
    seed: int | None = None
    scale: str = "chord-scale"              # chord-scale | pentatonic | chord-tones | chromatic
    constraint: str = "soft"                # soft | hard
    penalty: float = 2.0                    # soft penalty, in std devs of the pitch logits
    temperature: float = 0.9
    top_p: float = 0.95
    trend_notes: int = 4
    trend_range: int = 5                    # semitones around the recent pitch trend
    low: int = 55                           # lowest pitch allowed
    high: int = 84                          # highest pitch allowed
    cache_dir: str = "~/.cache/melodyflowd"


@dataclass(frozen=True, slots=True)
class Settings:
    chart: str | None = None
    phrases: str | None = None              # play a saved bank instead of generating
    log_level: str = "info"
    stats_interval: float = 60.0            # seconds between stats lines; 0 = off
    ports: PortSettings = field(default_factory=PortSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)


def _replace_dotted(settings: Settings, dotted: str, value: object) -> Settings:
    from dataclasses import replace

    head, _, rest = dotted.partition(".")
    if not rest:
        return replace(settings, **{head: value})
    return replace(settings, **{head: _replace_dotted(getattr(settings, head), rest, value)})


def load_settings(config_file: str | None = None, overrides: dict[str, object] | None = None
                  ) -> Settings:
    """Defaults <- config file <- overrides (dotted keys: "ports.backend", "generation.seed").

    Overrides whose value is None are ignored (a CLI flag that was not given).
    SKELETON: config files are not read yet (owned by the service work).
    """
    settings = Settings()
    if config_file is not None:
        raise NotImplementedError("config files are not supported yet")
    for key, value in (overrides or {}).items():
        if value is not None:
            settings = _replace_dotted(settings, key, value)
    return settings

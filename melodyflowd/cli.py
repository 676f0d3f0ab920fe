"""Command line: `melodyflowd` (the daemon) and `melodyflow` (check, render, ports).

Thin: parse options, call the core, print. A UserError becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from melodyflowd import __version__
from melodyflowd.errors import UserError
from melodyflowd.music.instruments import INSTRUMENTS
from melodyflowd.music.scale_modes import SCALE_MODES
from melodyflowd.settings import BACKENDS, ENGINE_MODES, LOG_LEVELS


class NoteParam(click.ParamType):
    """A MIDI note: a number 0-127 or a name with its octave (C4 = middle C = 60)."""

    name = "NOTE"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        from melodyflowd.music.theory import midi_note

        if isinstance(value, int):
            return value
        try:
            return midi_note(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ChannelsParam(click.ParamType):
    """MIDI channels as musicians number them: "1", "1,2", "1-4,6", or "all" (all sixteen,
    10 too). In Settings units (0-15)."""

    name = "CHANNELS"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text == "all":
            return tuple(range(16))
        channels: list[int] = []
        try:
            for part in text.replace(" ", ",").split(","):
                if not part:
                    continue
                low, _, high = part.partition("-")
                first, last = int(low), int(high or low)
                if not 1 <= first <= last <= 16:
                    raise ValueError
                channels += [c - 1 for c in range(first, last + 1) if c - 1 not in channels]
        except ValueError:
            self.fail(f"{value!r}: give MIDI channels 1-16 like 1 or 1,2 or 1-4, or all",
                      param, ctx)
        if not channels:
            self.fail("no channel given: e.g. 1 or 1,2 or all", param, ctx)
        return tuple(channels)


# Flags that each set one setting of the config (same names, same checks): the daemon takes
# them all. A new setting gets its flag by a row here.
SETTING_FLAGS: tuple[tuple[str, str, click.ParamType, str], ...] = (
    ("--mode", "engine.mode", click.Choice(ENGINE_MODES),
     "mono: a new key ends the sounding note; poly: keys overlap."),
    ("--split", "engine.split", NoteParam(),
     "Keys at or above this note are remapped, lower ones pass through (60 or C4: middle C)."),
    ("--channels", "engine.channels", ChannelsParam(),
     "Input channels remapped, 1-16: 1 or 1,2 or 1-4, or all. Default: every channel but "
     "10 (General MIDI drums)."),
    ("--scale", "generation.scale", click.Choice(SCALE_MODES),
     "Which pitches the phrases use over each chord."),
    ("--temperature", "generation.temperature", click.FloatRange(0.05, 5.0),
     "Sampling temperature: lower is safer, higher is wilder."),
    ("--instrument", "generation.instrument", click.Choice(INSTRUMENTS),
     "Register: where this instrument's solos sit."),
)


def setting_flags(rows: tuple[tuple[str, str, click.ParamType, str], ...]
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add a click option per row; the command receives them as `flag_settings`, a dict
    {dotted setting: value or None} for load_settings."""

    def param_name(dotted: str) -> str:
        return "setting__" + dotted.replace(".", "__")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            flags = {dotted: kwargs.pop(param_name(dotted)) for _, dotted, _, _ in rows}
            return func(*args, flag_settings=flags, **kwargs)

        for flag, dotted, kind, text in reversed(rows):
            wrapper = click.option(flag, param_name(dotted), type=kind, help=text)(wrapper)
        return wrapper

    return decorate


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into one line on stderr and exit 2: no traceback for what users fix."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            click.echo(f"{click.get_current_context().info_name}: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def follow_channel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--chord-channel and --bass-channel, the same for melodyflowd and apply."""
    command = click.option("--bass-channel", type=click.IntRange(1, 16),
                           help="In follow mode, this channel's note is the chord's bass "
                                "(1-16).")(command)
    return click.option("--chord-channel", type=click.IntRange(1, 16),
                        help="In follow mode, the chords come from this channel (1-16).")(command)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--chart", help="Chord chart: YAML, an iReal Pro link or playlist, or MusicXML.")
@click.option("--tune", help="Which tune of a playlist chart (its title).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file merged over config/default.yaml.")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="MIDI backend (default auto: ALSA where there is a sequencer, else JACK).")
@click.option("--in-name", help="Name of the virtual input port.")
@click.option("--out-name", help="Name of the virtual output port.")
@click.option("--connect-in", "connect_in", multiple=True, metavar="PATTERN",
              help="Connect ports whose names match (your keyboard) to our input, now and "
                   "when they appear; part of the name, or a shell pattern. Repeatable.")
@click.option("--connect-out", "connect_out", multiple=True, metavar="PATTERN",
              help="Connect our output to ports whose names match (your synth). Repeatable.")
@click.option("--model", help="Model directory or hub id (default: the embedded model).")
@click.option("--adapter", help="LoRA adapter directory, or a style name in the model's adapters/.")
@click.option("--variations", type=click.IntRange(1, 64), help="Phrase variations per bar.")
@click.option("--seed", type=int, help="Random seed for reproducible phrases.")
@click.option("--phrases", type=click.Path(dir_okay=False),
              help="Play a saved phrase bank (.json) instead of generating.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS))
@click.option("--view", "view_port", type=click.IntRange(0, 65535), is_flag=False,
              flag_value=8765, default=None, metavar="[PORT]",
              help="Serve the live view in the browser on PORT (default 8765; 0: any free "
                   "port) of 127.0.0.1; the address with its token is printed.")
@click.option("--view-address", help="Address the view listens on (default 127.0.0.1).")
@click.option("--follow", is_flag=True, default=None,
              help="Follow the chords you play (keys below the split, or --chord-channel); "
                   "with --chart too, the chart is what is expected and your chord wins.")
@follow_channel_options
@setting_flags(SETTING_FLAGS)
@click.version_option(__version__, prog_name="melodyflowd")
@user_errors
def daemon_main(chart: str | None, tune: str | None, config_file: str | None,
                backend: str | None, in_name: str | None, out_name: str | None,
                connect_in: tuple[str, ...], connect_out: tuple[str, ...], model: str | None,
                adapter: str | None, variations: int | None, seed: int | None,
                phrases: str | None, log_level: str | None, view_port: int | None,
                view_address: str | None, follow: bool | None,
                chord_channel: int | None, bass_channel: int | None,
                flag_settings: dict[str, object]) -> None:
    """Virtual MIDI ports that answer your rhythm with jazz phrases over a chord chart,
    or over the chords you play (--follow)."""
    from melodyflowd.service.config import load_settings

    settings = load_settings(config_file, {
        "chart": chart, "tune": tune, "phrases": phrases, "log_level": log_level,
        "ports.backend": backend, "ports.in_name": in_name, "ports.out_name": out_name,
        "ports.connect_in": connect_in or None, "ports.connect_out": connect_out or None,
        "generation.model": model, "generation.adapter": adapter,
        "generation.variations": variations, "generation.seed": seed, **flag_settings,
        "view.port": view_port, "view.address": view_address,
        "engine.follow": follow,
        "engine.chord_channel": None if chord_channel is None else chord_channel - 1,
        "engine.bass_channel": None if bass_channel is None else bass_channel - 1,
    })
    if settings.chart is None and not settings.engine.follow:
        raise UserError("no chart given: pass --chart song.yaml (or set chart: in the "
                        "config), or --follow to play over the chords you hold")
    from melodyflowd.service.daemon import run

    sys.exit(run(settings))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="melodyflow")
def tools_main() -> None:
    """Tools for melodyflowd: check charts, render phrases, apply them to a recording, list
    ports."""


@tools_main.command()
@click.argument("source")
@click.option("--tune", help="Check only this tune of a playlist (its title).")
@click.option("--json", "as_json", is_flag=True, help="Print the chart as JSON.")
@user_errors
def check(source: str, tune: str | None, as_json: bool) -> None:
    """Validate a chart and show each bar's chords, chord tones and scales.

    SOURCE is a YAML chart, an iReal Pro link (irealb://...), playlist or HTML export, or
    a MusicXML lead sheet. A playlist without --tune: one line a tune, a summary, and exit
    status 1 if any tune fails."""
    from melodyflowd.music.chart import chart_to_json, chart_to_text
    from melodyflowd.music.sources import is_import_source, load_chart, read_tunes

    if tune is None and is_import_source(source) and len(read_tunes(source)) > 1:
        _check_playlist(source, as_json)
        return
    chart = load_chart(source, tune)
    for warning in chart.warnings:
        click.echo(f"check: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(chart_to_json(chart)))
    else:
        click.echo(chart_to_text(chart), nl=False)


def _check_playlist(source: str, as_json: bool) -> None:
    from melodyflowd.offline.importer import check_source, line, summary

    outcomes = check_source(source)
    if as_json:
        click.echo(json.dumps([{"title": o.title, "ok": o.ok, "error": o.error,
                                "bars": len(o.chart.bars) if o.chart else None,
                                "warnings": list(o.chart.warnings) if o.chart else []}
                               for o in outcomes]))
    else:
        for outcome in outcomes:
            click.echo(line(outcome))
        click.echo(summary(outcomes))
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def generation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options render and apply share: the config file and the generation settings."""
    for option in reversed((
        click.option("--config", "config_file", type=click.Path(dir_okay=False)),
        click.option("--model", help="Model directory or hub id (default: the embedded model)."),
        click.option("--adapter", help="LoRA adapter directory or style name."),
        click.option("--variations", type=click.IntRange(1, 64)),
        click.option("--seed", type=int),
        click.option("--scale", type=click.Choice(SCALE_MODES)),
    )):
        command = option(command)
    return command


@tools_main.command()
@click.option("--chart", "chart_file", required=True,
              help="YAML chart, iReal Pro link or playlist, or MusicXML lead sheet.")
@click.option("--tune", help="Which tune of a playlist chart (its title).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Output: .json (phrase bank), .mid (the variations one after another) or "
                   ".png (piano roll).")
@click.option("--tracks", is_flag=True,
              help=".mid: one track a variation, each from bar 1 (parallel takes in a DAW).")
@generation_options
@click.option("--temperature", type=float, help="Sampling temperature, 0.05 to 5.")
@click.option("--instrument", type=click.Choice(INSTRUMENTS),
              help="Register: where this instrument's solos sit.")
@user_errors
def render(chart_file: str, tune: str | None, out_file: str, tracks: bool,
           config_file: str | None, model: str | None, adapter: str | None,
           variations: int | None, seed: int | None, scale: str | None,
           temperature: float | None, instrument: str | None) -> None:
    """Generate phrases without ports and write them to a file."""
    from melodyflowd.offline.render import render_file
    from melodyflowd.service.config import load_settings

    settings = load_settings(config_file, {
        "chart": chart_file, "tune": tune, "generation.model": model, "generation.adapter": adapter,
        "generation.variations": variations, "generation.seed": seed,
        "generation.scale": scale, "generation.temperature": temperature,
        "generation.instrument": instrument,
    })
    written = render_file(settings, out_file, tracks=tracks)
    click.echo(f"wrote {written}")


@tools_main.command()
@click.argument("in_file", type=click.Path(dir_okay=False))
@click.option("--chart", "chart_file",
              help="YAML chart, iReal Pro link or playlist, or MusicXML lead sheet.")
@click.option("--tune", help="Which tune of a playlist chart (its title).")
@click.option("--follow", is_flag=True, default=None,
              help="Follow the chords the recording plays (keys below the split, or "
                   "--chord-channel), as melodyflowd --follow does.")
@follow_channel_options
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The performance with the phrase notes (.mid).")
@click.option("--phrases", type=click.Path(dir_okay=False),
              help="Play this phrase bank (.json) instead of generating one.")
@click.option("--start-bar", type=click.IntRange(1, None), default=1, show_default=True,
              help="Bar of the chart that tick 0 of the file is beat 1 of.")
@generation_options
@click.option("--temperature", type=click.FloatRange(0.05, 5.0))
@click.option("--instrument", type=click.Choice(INSTRUMENTS),
              help="Register: where this instrument's solos sit.")
@user_errors
def apply(in_file: str, chart_file: str | None, tune: str | None, follow: bool | None,
          chord_channel: int | None, bass_channel: int | None, out_file: str,
          phrases: str | None, start_bar: int,
          config_file: str | None, model: str | None, adapter: str | None,
          variations: int | None, seed: int | None, scale: str | None,
          temperature: float | None, instrument: str | None) -> None:
    """Play a recorded performance (IN_FILE, MIDI) through the engine, as melodyflowd would
    live, and write what it plays."""
    from melodyflowd.offline.apply import apply_file
    from melodyflowd.service.config import load_settings

    settings = load_settings(config_file, {
        "chart": chart_file, "tune": tune, "phrases": phrases, "generation.model": model,
        "generation.adapter": adapter, "generation.variations": variations,
        "generation.seed": seed, "generation.scale": scale,
        "generation.temperature": temperature, "generation.instrument": instrument,
        "engine.follow": follow,
        "engine.chord_channel": None if chord_channel is None else chord_channel - 1,
        "engine.bass_channel": None if bass_channel is None else bass_channel - 1,
    })
    written = apply_file(settings, in_file, out_file, start_bar=start_bar)
    click.echo(f"wrote {written}")


@tools_main.command("config")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@user_errors
def config_command(config_file: str | None) -> None:
    """Print the default config (every setting, commented), or check CONFIG_FILE."""
    from melodyflowd.service.config import default_config_text, load_settings

    if config_file is None:
        click.echo(default_config_text(), nl=False)
        return
    load_settings(config_file)
    click.echo(f"{config_file}: ok")


@tools_main.command()
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: ALSA where there is a sequencer, else a running JACK server.")
@user_errors
def ports(backend: str) -> None:
    """List MIDI input and output ports."""
    from melodyflowd.live.ports import list_ports

    inputs, outputs = list_ports(backend)
    click.echo("inputs:")
    for name in inputs:
        click.echo(f"  {name}")
    click.echo("outputs:")
    for name in outputs:
        click.echo(f"  {name}")


@tools_main.command("import")
@click.argument("source")
@click.option("--tune", help="Import only this tune of a playlist (its title).")
@click.option("--out", "out_dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the YAML charts.")
@user_errors
def import_command(source: str, tune: str | None, out_dir: str) -> None:
    """Write iReal Pro or MusicXML tunes as YAML charts, one file a tune.

    SOURCE is an irealb:// or irealbook:// link, a file of such links (a playlist), an
    iReal Pro HTML export, or a MusicXML lead sheet (.musicxml, .xml, .mxl). One line a
    tune; exit status 1 if any tune could not be imported."""
    from melodyflowd.offline.importer import import_source, line, summary

    outcomes = import_source(source, out_dir, tune,
                             progress=lambda outcome: click.echo(line(outcome)))
    if len(outcomes) > 1:
        click.echo(summary(outcomes))
    if not all(o.ok for o in outcomes):
        sys.exit(1)

"""Run the benchmarks into bench/results/*.json and write docs/benchmarks.md with plots.

    python3 -m bench.report machine              # this machine -> results/machine.json
    python3 -m bench.report latency [ARGS...]    # bench/latency.py -> results/latency.json
    python3 -m bench.report generate [ARGS...]   # bench/generate.py -> results/generate.json
    python3 -m bench.report soak [ARGS...]       # bench/soak.py -> results/soak.json
    python3 -m bench.report write                # results/*.json -> docs/benchmarks.md,
                                                 #   docs/img/*.png
    python3 -m bench.report all                  # all of the above, in that order

bench/generate.py prints its numbers; `generate` keeps that text and reads the numbers
out of it. `write` only reads the JSON files, so the report can be written again (or
changed) without running anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
IMG = DOCS / "img"


# -- running ----------------------------------------------------------------------------

def _run(cmd: list[str]) -> str:
    """Run a bench script, echo its output as it comes, return the text."""
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[1]} exited with {proc.returncode}")
    return "".join(lines)


def _version(cmd: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else None
    return None


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                            "platform": platform.platform(), "nproc": os.cpu_count(),
                            "python": platform.python_version(), "loadavg": os.getloadavg()}
    lscpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=20).stdout
    for line in (lscpu or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("Architecture", "Model name", "CPU(s)", "Thread(s) per core",
                            "Core(s) per socket", "CPU max MHz", "L2 cache", "L3 cache",
                            "Hypervisor vendor"):
            info[f"lscpu {name.strip()}"] = value.strip()
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0]
        info["memory"] = mem.split(":", 1)[1].strip()
    for module in ("torch", "transformers", "rtmidi", "numpy", "matplotlib"):
        try:
            mod = __import__(module)
            info[module] = getattr(mod, "__version__", "?")
        except ImportError:
            info[module] = None
    info["jackd"] = _version(["jackd", "--version"])
    return info


def parse_generate(text: str) -> dict[str, Any]:
    """The numbers bench/generate.py prints (see its print statements)."""
    out: dict[str, Any] = {"text": text}
    patterns = {
        "model": r"^model:\s+(.*)$",
        "params_m": r"^\s+([\d.]+) M parameters",
        "load_line": r"^load:\s+(.*)$",
        "load_s": r"^load:\s+([\d.]+) s",
        "load_first_s": r"(?:^load:\s+([\d.]+) s first|first load in this process took "
                        r"([\d.]+) s)",
        "note_tokenizer_s": r"\+ ([\d.]+) s NoteTokenizer",
        "chart": r"^chart:\s+(.*)$",
        "bars": r"^chart:.*?(\d+) bars x",
        "variations": r"bars x (\d+) variations",
        "ours_s": r"^\(b\) ours:\s+([\d.]+) s",
        "ours_tokens": r"^\(b\) ours:\s+[\d.]+ s, (\d+) tokens",
        "ours_tokens_per_s": r"^\(b\) ours:.*?, (\d+) tokens/s",
        "ours_notes": r"^\(b\) ours:.*? (\d+) notes",
        "ours_empty_bars": r"(\d+) empty bars",
        "ours_again_s": r"^\(b\) again:\s+([\d.]+) s",
        "same_bank": r"^\(b\) again:.*same bank: (\w+)",
        "original_s": r"^\(a\) original:\s+([\d.]+) s",
        "original_tokens": r"^\(a\) original:\s+[\d.]+ s, (\d+) tokens",
        "original_tokens_per_s": r"^\(a\) original:.*?, (\d+) tokens/s",
        "ratio_seconds": r"ours is ([\d.]+)x faster in seconds",
        "ratio_tokens_per_s": r"faster in seconds, ([\d.]+)x in tokens/s",
    }
    for key, pattern in patterns.items():
        found = re.search(pattern, text, re.M)
        if found:
            value = next(g for g in found.groups() if g is not None)
            out[key] = value if key in ("model", "load_line", "chart", "same_bank") \
                else float(value)
    return out


# -- writing ----------------------------------------------------------------------------

def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def plot_latency(lat: dict[str, Any]) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [p for p in ("idle", "regenerating") if p in lat and "samples_ms" in lat[p]]
    if not phases:
        return None
    fig, axes = plt.subplots(1, len(phases), figsize=(6 * len(phases), 4), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        samples = lat[phase]["samples_ms"]
        top = max(max(samples["echo"]), max(samples["melodyflowd"]))
        bins = [top * i / 80 for i in range(81)]
        for name, color in (("echo", "tab:gray"), ("melodyflowd", "tab:blue")):
            p99 = lat[phase][f"{name}_ms"]["p99"]
            ax.hist(samples[name], bins=bins, histtype="step", linewidth=1.5, color=color,
                    label=f"{name} (p99 {p99:.2f} ms)")
        ax.set_yscale("log")
        ax.set_xlabel("note-on in -> note-on out (ms)")
        ax.set_ylabel("notes")
        title = "idle (playing a bank)" if phase == "idle" else "while regenerating"
        ax.set_title(f"{title}: p99 ratio {lat[phase]['ratio_p99']:.3f}")
        ax.legend()
    fig.tight_layout()
    path = IMG / "latency_hist.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_generate(gen: dict[str, Any]) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "ours_s" not in gen or "original_s" not in gen:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = ["(a) one bar at a time\n(original)", "(b) compose_bank\n(ours)"]
    seconds = [gen["original_s"], gen["ours_s"]]
    rates = [gen.get("original_tokens_per_s", 0), gen.get("ours_tokens_per_s", 0)]
    colors = ["tab:gray", "tab:blue"]
    axes[0].barh(names, seconds, color=colors)
    axes[0].set_xlabel("seconds for the chart (lower is better)")
    for i, v in enumerate(seconds):
        axes[0].text(v, i, f" {v:.2f} s", va="center")
    axes[1].barh(names, rates, color=colors)
    axes[1].set_xlabel("tokens / s (higher is better)")
    for i, v in enumerate(rates):
        axes[1].text(v, i, f" {v:.0f}", va="center")
    for ax in axes:
        ax.set_xlim(0, max(ax.get_xlim()[1], 1) * 1.25)
    fig.suptitle(f"{int(gen.get('bars', 0))} bars x {int(gen.get('variations', 0))} "
                 f"variations: ours {gen.get('ratio_seconds', 0):.1f}x faster")
    fig.tight_layout()
    path = IMG / "generate_speed.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def plot_soak(soak: dict[str, Any]) -> str | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = soak.get("samples") or []
    if not samples:
        return None
    t = [s["t"] for s in samples]
    rate = [0.0] + [(b["notes"] - a["notes"]) / max(1e-9, b["t"] - a["t"])
                    for a, b in zip(samples, samples[1:], strict=False)]
    fig, axes = plt.subplots(4, 1, figsize=(11, 9), sharex=True)
    axes[0].plot(t, rate, color="tab:purple", linewidth=0.8)
    axes[0].set_ylabel("notes/s sent")
    axes[0].set_yscale("symlog", linthresh=100)
    w = soak["windows"]
    mid = [row["start_s"] + soak["config"]["window"] / 2 for row in w]
    for name, color in (("echo", "tab:gray"), ("melodyflowd", "tab:blue")):
        axes[1].plot(mid, [row[name]["p99_ms"] for row in w], "o-", color=color,
                     label=f"{name} p99")
        axes[1].plot(mid, [row[name]["p50_ms"] for row in w], "x--", color=color,
                     label=f"{name} p50")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend(fontsize=8, ncol=2)
    axes[2].plot(t, [(s["rss_kb"] or 0) / 1024 for s in samples], label="melodyflowd",
                 color="tab:blue")
    axes[2].plot(t, [(s["child_rss_kb"] or 0) / 1024 for s in samples],
                 label="generator child", color="tab:orange")
    axes[2].set_ylabel("RSS (MiB)")
    axes[2].legend(fontsize=8)
    axes[3].plot(t, [s["load1"] for s in samples], color="tab:red")
    axes[3].set_ylabel("load average (1 min)")
    axes[3].set_xlabel("seconds into the soak")
    events = soak.get("events", {})
    for ax in axes:
        for x in events.get("sighup", []):
            ax.axvline(x, color="tab:green", alpha=0.6, linewidth=1)
        for x in events.get("swaps", []):
            ax.axvline(x, color="tab:orange", alpha=0.25, linewidth=0.6)
    axes[0].set_title("soak timeline (green: SIGHUP; orange: a new bank swaps in)")
    fig.tight_layout()
    path = IMG / "soak_timeline.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def write() -> Path:
    IMG.mkdir(parents=True, exist_ok=True)
    mach, lat, gen, soak = (_load(n) for n in ("machine", "latency", "generate", "soak"))
    if gen and "text" in gen:         # older files hold only the text: read what it says
        gen = {**parse_generate(gen["text"]), **gen}
    out: list[str] = ["# melodyflowd benchmarks", "",
                      "Written by `python3 -m bench.report write` from the JSON files in "
                      "`bench/results/` (each bench script wrote one; `bench/report.py all` "
                      "runs them all again). Every speed is a ratio against a baseline "
                      "measured in the same run on the same machine; the tests never time "
                      "anything.", ""]
    out += _machine_section(mach, lat, soak)
    out += _latency_section(lat)
    out += _generate_section(gen)
    out += _soak_section(soak)
    notes = RESULTS / "notes.md"          # observations written by hand after the runs
    if notes.exists():
        out += ["## Observations", "", notes.read_text().strip(), ""]
    DOCS.mkdir(exist_ok=True)
    path = DOCS / "benchmarks.md"
    path.write_text("\n".join(out).rstrip() + "\n")
    return path


def _machine_section(mach, lat, soak) -> list[str]:
    out = ["## The machine", ""]
    if not mach:
        return out + ["(no bench/results/machine.json)", ""]
    out += ["| | |", "|---|---|"]
    for key, value in mach.items():
        if key == "loadavg":
            value = " ".join(f"{x:.1f}" for x in value)
        out.append(f"| {key} | {value} |")
    out += ["", "The machine is shared: while these numbers were taken, other work (test "
            "suites, model training) ran beside them on the same 2 cores. The load "
            "averages below are what the runs saw; the echo client in the same run and "
            "the baseline in the same process are the fair comparison, not absolute "
            "milliseconds.", ""]
    loads = []
    if lat:
        start = " ".join(f"{x:.1f}" for x in lat["machine"]["loadavg_start"])
        loads.append(f"latency bench start {start}")
    gen = _load("generate")
    if gen and "loadavg_start" in gen:
        loads.append("generation bench start " + " ".join(f"{x:.1f}" for x in
                                                          gen["loadavg_start"])
                     + ", end " + " ".join(f"{x:.1f}" for x in gen["loadavg_end"]))
    if soak:
        s = [x["load1"] for x in soak.get("samples", [])]
        if s:
            loads.append(f"soak 1-minute load average min {min(s):.1f}, mean "
                         f"{sum(s) / len(s):.1f}, max {max(s):.1f}")
    if loads:
        out += ["Load: " + "; ".join(loads) + ".", ""]
    return out


def _latency_section(lat) -> list[str]:
    out = ["## Latency: melodyflowd against an echo client", ""]
    if not lat:
        return out + ["(no bench/results/latency.json)", ""]
    runs = len(next(iter(next(iter(lat.get("spread", {}).values()), {}).values()),
                    {}).get("runs", [])) or 1
    out += [f"`bench/latency.py{f' --runs {runs}' if runs > 1 else ''}` ({lat['notes']} notes "
            "a phase; each run on a new private JACK server: dummy driver, 48 kHz, 256-frame "
            f"periods, {'realtime' if lat.get('realtime') else 'no-realtime'} threads). "
            "Side by side: a plain python-rtmidi echo client, ports.py's callback around an "
            "identity handler (the floor the engine sits on) and melodyflowd; each note-on "
            "goes to all of them at the same moment and the time to the answering note-on is "
            "taken on one clock. \"regenerating\": the generator child writes new banks all "
            "through the phase (SIGUSR1 again as soon as one is done). Engine handling time: "
            "perf_counter_ns around `handle()` inside the daemon's callback, over every "
            "message." + (f" The tables are the median run of {runs} (by idle handling p99); "
                          "`bench/results/latency.json` holds it in full and all runs under "
                          "`spread`." if runs > 1 else ""), "",
            "| phase | subject | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
    subjects = (("echo client", "echo_ms"), ("ports.py, identity handler", "shell_ms"),
                ("melodyflowd", "melodyflowd_ms"))
    for phase in ("idle", "regenerating"):
        for name, key in subjects:
            p = lat.get(phase, {}).get(key)
            if p:
                out.append(f"| {phase} | {name} | {p['n']} | {p['p50']:.3f} | "
                           f"{p['p99']:.3f} | {p['max']:.3f} |")
    out += ["", "| phase | p50 ratio | p99 ratio | target p99 | engine handling p50 / p99 / "
            "max (µs) | identity handler p50 / p99 / max (µs) | target p99 |",
            "|---|---|---|---|---|---|---|"]
    for phase, target in (("idle", 1.05), ("regenerating", 1.10)):
        if phase not in lat:
            continue
        r, h = lat[phase], lat[phase]["handling_us"]
        shell = r.get("shell_handling_us")
        out.append(f"| {phase} | {r['ratio_p50']:.3f} | {r['ratio_p99']:.3f} | ≤ {target:.2f}"
                   f" ({'met' if r['ratio_p99'] <= target else 'not met'}) | "
                   f"{h['p50']:.1f} / {h['p99']:.1f} / {h['max']:.1f} | "
                   + (f"{shell['p50']:.1f} / {shell['p99']:.1f} / {shell['max']:.1f}"
                      if shell else "–")
                   + f" | ≤ 50 ({'met' if h['p99'] <= 50 else 'not met'}) |")
    if "regenerating" in lat and "regenerations" in lat["regenerating"]:
        out += ["", f"Banks regenerated during the regenerating phase of that run: "
                f"{lat['regenerating']['regenerations']}."]
    if runs > 1:
        out += ["", f"Spread over the {runs} runs:", "",
                "| phase | number | median | worst | " + ", ".join(
                    f"run {i + 1}" for i in range(runs)) + " |", "|---|---|---|---|---|"]
        for phase, numbers in lat["spread"].items():
            for number, v in numbers.items():
                digits = 3 if number.startswith("ratio") else 1
                out.append(f"| {phase} | {number} | {v['median']:.{digits}f} | "
                           f"{v['worst']:.{digits}f} | "
                           + ", ".join(f"{x:.{digits}f}" for x in v["runs"]) + " |")
    name = plot_latency(lat)
    if name:
        out += ["", f"![latency histograms](img/{name})", ""]
    return out + [""] + _section_notes("latency")


def _section_notes(name: str) -> list[str]:
    """Observations written by hand for one section (bench/results/notes-NAME.md)."""
    path = RESULTS / f"notes-{name}.md"
    return [path.read_text().strip(), ""] if path.exists() else []


def _generate_section(gen) -> list[str]:
    out = ["## Generation: compose_bank against one bar at a time", ""]
    if not gen:
        return out + ["(no bench/results/generate.json)", ""]
    out += ["`bench/generate.py`: same model, same chart, same process. (a) the original "
            "approach: a prompt and a `generate()` call for every bar of every variation, "
            "with a logits processor that decodes the whole sequence at every step; (b) "
            "ours: `compose_bank`, the whole chart and all variations in one batched run "
            "with the KV cache (FastLlama) and the incremental "
            "MelodyControlLogitsProcessor (its core, MelodyControl). Both run one untimed "
            "warm-up first ((b) with another seed, (a) one bar), so the ratio compares the "
            "steady state, the way every regeneration after the first runs: (a) against the "
            "mean of two (b) runs, one before and one after it. (b) multiplies in bfloat16 "
            "where the CPU does that natively and runs the rest of a decoding step as loops "
            "compiled by numba (melodyflowd/generate/kernels.py); (a) runs transformers' "
            "float32 model, its faster setting here. The load and the "
            "two start times come from fresh processes: load is python start, imports and "
            "`load_model` + NoteTokenizer, the wall time until the process says it is ready; "
            "a start is the time from starting a process to the first playable bank the way "
            "the daemon gets it (`GeneratorClient`: spawn the generator child, which loads "
            "the model and generates), first with an empty cache, then again from the "
            "cache.", "",
            f"Model: {gen.get('model', '?')} ({_fmt(gen.get('params_m'))} M parameters"
            + ("; lean load: safetensors + tokenizers, no transformers" if gen.get("lean")
               else "") + ").", "",
            "| | value | target |", "|---|---|---|",
            f"| model load in a fresh process | {_fmt(gen.get('load_first_s'))} s"
            + (f" (python start {_fmt(gen.get('load_python_start_s'))} s, imports "
               f"{_fmt(gen.get('load_imports_s'))} s, weights + tokenizer "
               f"{_fmt(gen.get('load_weights_tokenizer_s'))} s, NoteTokenizer "
               f"{_fmt(gen.get('note_tokenizer_s'))} s; transformers imported: "
               f"{'yes' if gen.get('load_imports_transformers') else 'no'})"
               if "load_imports_s" in gen else "") + " | ≤ 2 s |",
            f"| model load again in the same process | "
            f"{_fmt(gen.get('load_again_s', gen.get('load_s')))} s | |",
            f"| start to the first playable bank on a new machine (numba compiles the "
            f"step's loops; once a machine) | {_fmt(gen.get('new_machine_start_s'))} s | "
            f"≤ 10 s |",
            f"| start to the first playable bank, cold (empty cache) | "
            f"{_fmt(gen.get('cold_start_s'))} s | ≤ 10 s |",
            f"| start to the first playable bank, from the cache | "
            f"{_fmt(gen.get('cache_start_s'))} s | ≤ 2 s |",
            f"| chart | {gen.get('chart', '–').split(', torch')[0]} | 32 bars × 4 |",
            f"| (b) ours | {_fmt(gen.get('ours_s'))} s, {_fmt(gen.get('ours_tokens_per_s'), 0)}"
            f" tokens/s, {_fmt(gen.get('ours_notes'), 0)} notes, "
            f"{_fmt(gen.get('ours_empty_bars'), 0)} empty bars"
            + (f"; {_fmt(gen.get('ours_steps'), 0)} decoding steps, "
               f"{_fmt(gen.get('ours_ms_per_step'), 1)} ms a step" if "ours_steps" in gen
               else "") + " | ≤ 5 s (aim 2 s) |",
            f"| (b) ours, its first run in the process (the warm-up, another seed) | "
            f"{_fmt(gen.get('ours_first_s'))} s | |",
            f"| (b) matrix products | {gen.get('matmul', '–')}"
            + (f"; against float32: KL {gen['bf16_kl_mean']:.1e} nats mean "
               f"({gen['bf16_kl_max']:.1e} max), the same likeliest token "
               f"{100 * gen['bf16_same_top']:.1f} % of the time" if "bf16_kl_mean" in gen
               else "") + " | |",
            f"| (b) ours, run again | {_fmt(gen.get('ours_again_s'))} s (the same bank: "
            f"{gen.get('same_bank', '–')}) | |",
            f"| (b) with torch's operations between the products (no compiled loops) | "
            f"{_fmt(gen.get('torch_ops_s'))} s, {_fmt(gen.get('torch_ops_ms_per_step'), 1)} "
            f"ms a step: the loops make a step {_fmt(gen.get('kernels_step_ratio'))}× "
            f"faster | |",
            f"| (a) original | {_fmt(gen.get('original_s'))} s, "
            f"{_fmt(gen.get('original_tokens_per_s'), 0)} tokens/s | |",
            f"| ratio (seconds) | {_fmt(gen.get('ratio_seconds'), 1)}× | ≥ 10× |",
            f"| ratio (tokens/s) | {_fmt(gen.get('ratio_tokens_per_s'), 1)}× | |", ""]
    name = plot_generate(gen)
    if name:
        out += [f"![generation speed](img/{name})", ""]
    out += ["<details><summary>bench/generate.py output</summary>", "", "```",
            "\n".join(line for line in gen.get("text", "").splitlines()
                      if line.strip() and "Loading weights" not in line),
            "```", "</details>", ""]
    return out + _section_notes("generate")


def _soak_section(soak) -> list[str]:
    out = ["## Soak", ""]
    if not soak:
        return out + ["(no bench/results/soak.json)", ""]
    c = soak["config"]
    lost = soak.get("transport_lost", {})
    out += [f"`bench/soak.py`: {soak['played_seconds'] / 60:.1f} minutes with the model "
            f"\"{soak['model']}\" ({c['variations']} variations) on a private JACK server "
            f"({'realtime' if c.get('realtime') else 'no-realtime'} threads): "
            f"{c['rate']:g} notes/s steady over 16 channels (keys held 30–150 ms), a burst "
            f"at {c['burst_rate']:g} notes/s for {c['burst_seconds']:g} s every "
            f"{c['burst_every']:g} s (keys held 5–20 ms), a regeneration every "
            f"{c['regen_every']:g} s (the regenerate CC and SIGUSR1 in turn) and SIGHUP "
            f"every {c['hup_every']:g} s. The same notes go to an echo client at the same "
            "moment, the baseline for latency.", "",
            "| | result |", "|---|---|",
            f"| notes sent (note-ons) | {soak['notes_sent']} |",
            f"| notes melodyflowd answered | {soak['notes_answered']} |",
            f"| **stuck notes** (output note-on without its note-off once all keys were "
            f"up) | **{soak['stuck_notes']}** |",
            f"| note-offs for notes that were not sounding | {soak['orphan_note_offs']} |",
            f"| note-offs the engine still owed at SIGTERM | "
            f"{soak.get('engine_owed_at_stop')} |",
            f"| **crashes** (daemon, generator child, non-zero exit, engine or callback "
            f"errors, tracebacks) | **{soak['crash_total']}** |",
            f"| messages lost inside JACK (to melodyflowd / its note-ons out / echo) | "
            f"{lost.get('to_melodyflowd')} / {lost.get('from_melodyflowd_note_ons')} / "
            f"{lost.get('echo_note_ons')} |",
            f"| regenerations asked (CC / SIGUSR1) | {soak['regenerations_asked']['cc']} / "
            f"{soak['regenerations_asked']['sigusr1']} |",
            f"| SIGHUPs | {soak['sighups']} |",
            f"| banks ready / swapped in / superseded / failed | {soak['banks_ready']} / "
            f"{soak['swaps']} / {soak['superseded']} / {soak['generation_failures']} |",
            "| bursts (notes, achieved rate) | "
            + ", ".join(f"{b['notes']} @ {b['rate']:g}/s" for b in soak["bursts"][:4])
            + (" ..." if len(soak["bursts"]) > 4 else "") + " |",
            f"| RSS melodyflowd start → end (max) | {soak['rss_kb']['start'] / 1024:.1f} → "
            f"{soak['rss_kb']['end'] / 1024:.1f} MiB ({soak['rss_kb']['max'] / 1024:.1f}) |",
            f"| RSS generator child start → end (max) | "
            f"{soak['child_rss_kb']['start'] / 1024:.1f} → "
            f"{soak['child_rss_kb']['end'] / 1024:.1f} MiB "
            f"({soak['child_rss_kb']['max'] / 1024:.1f}) |",
            f"| output notes longer than 1 s | {soak['long_notes']} |",
            f"| daemon exit status | {soak['exit_status']} |", "",
            "End-to-end latency in each minute (note-on sent → answering note-on, both "
            "subjects on the same notes):", "",
            "| minute | notes | echo p50 | echo p99 | melodyflowd p50 | melodyflowd p99 | "
            "p99 ratio | banks swapped in |", "|---|---|---|---|---|---|---|---|"]
    for w in soak["windows"]:
        e, m = w["echo"], w["melodyflowd"]
        out.append(f"| {w['window'] + 1} | {w['notes']} | {_fmt(e['p50_ms'])} | "
                   f"{_fmt(e['p99_ms'])} | {_fmt(m['p50_ms'])} | {_fmt(m['p99_ms'])} | "
                   f"{_fmt(w['ratio_p99'], 3)} | {w['swaps']} |")
    o, s = soak["latency_overall"], soak.get("latency_steady", {})
    out += ["", f"Whole soak: p99 echo {_fmt(o['echo']['p99_ms'])} ms, melodyflowd "
            f"{_fmt(o['melodyflowd']['p99_ms'])} ms; outside the bursts (steady notes only) "
            f"p99 echo {_fmt(s.get('echo', {}).get('p99_ms'))} ms, melodyflowd "
            f"{_fmt(s.get('melodyflowd', {}).get('p99_ms'))} ms.", ""]
    name = plot_soak(soak)
    if name:
        out += [f"![soak timeline](img/{name})", ""]
    out += ["The test suite runs the same soak for 50 seconds (`tests/service/test_soak.py`) and "
            "asserts zero stuck notes, zero stray note-offs and zero crashes; never a time.",
            ""]
    return out


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    command, rest = args[0], args[1:]
    RESULTS.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    steps = ["machine", "latency", "generate", "soak", "write"] if command == "all" \
        else [command]
    for step in steps:
        if step == "machine":
            (RESULTS / "machine.json").write_text(json.dumps(machine(), indent=1))
        elif step == "latency":
            # no --realtime in "all": see the observations on realtime JACK in the report
            _run([py, "-m", "bench.latency", "--json", str(RESULTS / "latency.json"),
                  *(rest if command != "all" else [])])
        elif step == "generate":
            _run([py, "-m", "bench.generate", "--json", str(RESULTS / "generate.json"),
                  *(rest if command != "all" else [])])
        elif step == "soak":
            _run([py, "-m", "bench.soak", "--json-out", str(RESULTS / "soak.json"),
                  *(rest if command != "all" else ["--realtime"])])
        elif step == "write":
            print(f"wrote {write().relative_to(ROOT)}")
        else:
            print(__doc__)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

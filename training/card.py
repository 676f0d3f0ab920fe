"""MODEL_CARD.md of a model directory, written from the logs the pipeline leaves in it:
training_log.json (pretrain), adapters/<style>/finetune_log.json, evaluation.json."""

from __future__ import annotations

from pathlib import Path

from .common import directory_size, read_json
from .prepare import MAX_NOTES

DATA_SOURCE = """\
## Data and licence

Trained on the **Weimar Jazz Database** (WJazzD; Jazzomat Research Project,
Hochschule für Musik Franz Liszt Weimar; database published under the Open Database
License), in the table layout of the official `wjazzd.db`, from the copy packaged in
the `jazzodata` R package by Klaus Frieler, Martin Pfleiderer, Wolf-Georg Zaddach and
Jakob Abeßer (MIT licence). The training copy holds 411 of the 456 solos; the others
are held out by the data provider. The database itself is not part of melodyflowd.
Loudness is absent in that copy, so every note has velocity 80.
"""

FORMAT = """\
## Text format (melodyflow.json)

One document per stretch of a solo (up to {max_notes} notes, starting on a bar line,
cut at rests longer than two bars), in the model text format of melodyflowd:

```
bebop Bb 220
@F:dorian
65 5 6
63 4 6
@A#:mixolydian
62 11 12
```

- Prompt line: `{{style}} {{key}} {{tempo}}` (style word, key like `Bb` or `Gm`,
  quarter-note bpm). In training 10 % of the documents carry the style `jazz` and
  10 % no key, so a chart without them still gets a sensible prompt.
- No header line. Columns `pitch duration wait`; times in **ticks, 12 to a quarter
  note**: 12 divides into straight and swung eighths, triplets and sixteenths exactly,
  and tempo-free ticks let one note value be one token at every tempo (milliseconds
  would spread the same eighth note over hundreds of values). Durations and waits
  are clamped to 96 (two bars).
- A chord marker line `@<root>:<scale>` (from `textformat.marker_for`) before each
  note whose chord differs from the previous marker. The database's 395 chord symbols
  become a small closed vocabulary of root + chord-scale markers.
- Word-level tokenizer: one token a pitch (`60`), a duration or wait (`▁6`, the number
  with its leading space, so decoding gives back the text byte for byte), a newline,
  a marker, a prompt word. A note is 4 tokens (a byte-level BPE needs 6-9 and has to
  learn to spell numbers), so the 512-token window the model was trained on
  (`max_position_embeddings` in config.json) holds about 110 notes with their markers:
  8 to 16 bars of a solo. Longer generation re-reads the prompt and the recent notes.
- Training solos are transposed into every key that keeps all pitches within
  MIDI 34-100; the validation solos stay in their own key.
"""


LIMITS = """\
## Intended use and limits

Writes monophonic jazz lines for melodyflowd to remap onto a player's rhythm; it is
meant to be used with melodyflowd's MelodyControlLogitsProcessor, which keeps the
pitches on the chord-scale. It is small and briefly trained on a shared 2-core CPU:
it knows typical rhythms, ranges and chord-tone tendencies of the WJazzD solos, not
long-range motivic development. It has seen only 4/4 and the styles above; other
meters work only as far as the chord markers carry them.
"""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_FLAGS = ("size", "batch", "lr", "warmup_steps", "max_steps", "budget_minutes", "eval_steps",
          "patience", "seed", "threads")


def _pretrain_commands(log: dict) -> list[str]:
    phases = log.get("phases") or [{"budget_minutes": log.get("config", {}).get(
        "budget_minutes", 28), "seed": 0, "init": None}]
    config = log.get("config", {})
    if len(phases) == 1 and not config.get("init"):
        # one run from scratch: its command is every setting that differs from the default
        from .pretrain import PretrainConfig

        default = PretrainConfig(data="", out="")
        cmd = "python -m training.pretrain --data runs/data --out melodyflowd/models/default"
        for name in _FLAGS:
            value = config.get(name, getattr(default, name))
            if value != getattr(default, name):
                cmd += f" --{name.replace('_', '-')} {value:g}" if isinstance(value, float) \
                    else f" --{name.replace('_', '-')} {value}"
        return [cmd]
    out = []
    for i, p in enumerate(phases):
        cmd = ("python -m training.pretrain --data runs/data --out melodyflowd/models/default "
               f"--budget-minutes {p['budget_minutes']:g}")
        if p.get("lr") and p["lr"] != 1.5e-3:
            cmd += f" --lr {p['lr']:g}"
        if i == len(phases) - 1 and log.get("config", {}).get("warmup_steps", 60) != 60:
            cmd += f" --warmup-steps {log['config']['warmup_steps']}"
        if p.get("init"):
            cmd += f" --init melodyflowd/models/default --seed {p['seed']}"
        out.append(cmd)
    return out


def _finetune_budget(adapters: list[Path]) -> str:
    budgets = {(read_json(p) or {}).get("budget_minutes") for p in adapters}
    budgets.discard(None)
    return f" --budget-minutes {budgets.pop():g}" if len(budgets) == 1 else ""


def _phases(phases: list[dict]) -> str:
    if len(phases) < 2:
        return ""
    parts = [f"{i + 1}) {p['steps']} steps, {p['minutes']} min, lr {p['lr']}, seed "
             f"{p['seed']}, best validation loss {p['best_valid_loss']}"
             + (" (continued from the previous weights)" if p.get("init") else "")
             for i, p in enumerate(phases)]
    return " In phases: " + "; ".join(parts) + "."


def write_model_card(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    log = read_json(model_dir / "training_log.json") or {}
    lines = ["# melodyflow default model", ""]
    lines += ["A small Llama-architecture causal language model that writes jazz lines note "
              "by note over chord markers, trained from scratch on CPU by melodyflowd's own "
              "pipeline (`training/`). It is the model `melodyflowd --chart` uses when no "
              "other is given; it needs no network.", ""]
    if log:
        size, cfg = log.get("size", {}), log.get("config", {})
        lines += ["## Model", "",
                  f"- LlamaForCausalLM, {log.get('parameters', 0) / 1e6:.2f} M parameters: "
                  f"hidden {size.get('hidden')}, {size.get('layers')} layers, "
                  f"{size.get('heads')} heads ({size.get('kv_heads')} key/value), "
                  f"MLP {size.get('intermediate')}, tied embeddings, context "
                  f"{size.get('context')} tokens.",
                  f"- Weights: model.safetensors, float32, "
                  f"{log.get('model_bytes', 0) / 1e6:.1f} MB; whole directory "
                  f"{directory_size(model_dir) / 1e6:.1f} MB.", "",
                  "## Pretraining", "",
                  f"- {log.get('train_documents')} training documents "
                  f"({log.get('train_tokens')} tokens, all keys), "
                  f"{log.get('valid_documents')} validation documents "
                  f"({log.get('valid_tokens')} tokens) from solos held out by a seeded split.",
                  f"- AdamW lr {cfg.get('lr')}, weight decay {cfg.get('weight_decay')}, "
                  f"batch {cfg.get('batch')} documents, warm-up {cfg.get('warmup_steps')} steps "
                  "then cosine decay timed to the wall-clock budget of "
                  f"{cfg.get('budget_minutes')} min; early stopping after "
                  f"{cfg.get('patience')} evaluations without improvement "
                  f"(every {cfg.get('eval_steps')} steps).",
                  f"- Ran {log.get('total_steps', log.get('steps'))} steps in "
                  f"{log.get('total_minutes', log.get('minutes'))} min on "
                  f"{log.get('threads')} CPU thread{'' if log.get('threads') == 1 else 's'} "
                  f"(torch {log.get('torch')}) shared with "
                  "other jobs; stopped by "
                  f"{log.get('stopped_by')}." + _phases(log.get("phases") or []),
                  f"- Loss (nats/token): last training {_fmt(log.get('final_train_loss'))}, "
                  f"best validation {_fmt(log.get('best_valid_loss'))}.", ""]
        if log.get("quick_run"):
            lines += [f"- Note: {log['quick_run']}", ""]
    stats = log.get("data") or {}
    if stats:
        lines += ["## Data used", "",
                  f"- {stats.get('solos')} solos in 4/4 ({stats.get('notes')} notes) of the "
                  f"training copy; split by solo with seed {stats.get('split_seed')}: "
                  f"{stats.get('train_solos')} training, {stats.get('valid_solos')} validation.",
                  f"- {stats.get('chord_symbols')} distinct chord symbols, all read by "
                  f"melodyflowd.music.theory "
                  f"({len(stats.get('unparsed_symbols', []))} unreadable); "
                  f"{stats.get('markers')} chord markers in the vocabulary "
                  f"({stats.get('vocab_size')} tokens in all).",
                  "- Styles (solos): " + ", ".join(f"{k} {v}" for k, v in
                                                    sorted(stats.get("styles", {}).items())),
                  ""]
    lines += [FORMAT.format(max_notes=MAX_NOTES), DATA_SOURCE, LIMITS]
    adapters = sorted((model_dir / "adapters").glob("*/finetune_log.json"))
    if adapters:
        lines += ["## Style adapters (LoRA)", "",
                  "| style | documents | steps | minutes | valid loss base -> adapter | size |",
                  "|---|---|---|---|---|---|"]
        for path in adapters:
            a = read_json(path)
            lines.append(f"| {a['style']} | {a['train_documents']} | {a['steps']} | "
                         f"{a['minutes']} | {_fmt(a.get('base_valid_loss'))} -> "
                         f"{_fmt(a.get('valid_loss'))} | "
                         f"{directory_size(path.parent) / 1e3:.0f} kB |")
        first = read_json(adapters[0])
        lines += ["", f"LoRA rank {first.get('rank')}, alpha {first.get('alpha')}, on "
                  f"{', '.join(first.get('target_modules', []))}; "
                  + (first.get("note") or
                     f"each with a budget of {first.get('budget_minutes')} min and early "
                     "stopping on the style's validation loss, on a shared 2-core CPU: a "
                     "short run that moves the style's validation loss, not a converged "
                     "fine-tune."), ""]
    evaluation = model_dir / "evaluation.md"
    if evaluation.is_file():
        lines += ["## Evaluation", "", evaluation.read_text(encoding="utf-8").split("\n", 1)[1]
                  .strip(), ""]
    musical = model_dir / "musical.md"
    if musical.is_file():
        body = musical.read_text(encoding="utf-8").split("\n", 1)[1].strip()
        lines += ["## Under a human rhythm (melodyflow apply)", "",
                  body.replace("\n## ", "\n### "), ""]
    lines += ["## Commands", "", "```",
              "python -m training.prepare --db ../shared/data/wjazzd/wjazzd-train.db "
              "--out runs/data",
              *_pretrain_commands(log),
              "python -m training.finetune --base melodyflowd/models/default --data runs/data "
              "--styles bebop,cool,hardbop,postbop,swing "
              "--out melodyflowd/models/default/adapters" + _finetune_budget(adapters),
              "python -m training.evaluate --model melodyflowd/models/default --data runs/data "
              "--out training/report --card melodyflowd/models/default",
              "python3 -m bench.musical --card melodyflowd/models/default",
              "```", "", "See training/README.md for what each step does.", ""]
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

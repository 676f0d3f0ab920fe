"""LoRA style adapters (peft) on any causal LM, one per WJazzD style.

    python -m training.finetune --base melodyflowd/models/default --data runs/data \\
        --styles bebop,cool,hardbop,postbop,swing --out melodyflowd/models/default/adapters

    # the same command on a GPU machine, on the model Melody Flow used:
    python -m training.finetune --base dx2102/llama-midi --data runs/data --styles bebop \\
        --out runs/llama-midi-adapters --budget-minutes 60 --batch 4

The documents are rendered in the base model's own text format (its melodyflow.json,
or the profile melodyflowd ships for a known hub model, e.g. llama-midi's
milliseconds and five columns), from the training solos of that style in all keys.
Trainer-based: `accelerate launch -m training.finetune ...` or torchrun spread it over
several GPUs with no code of ours. Each adapter directory gets adapter_config.json,
adapter_model.safetensors, melodyflow.json and finetune_log.json. ``--merge DIR``
also writes DIR/<style>/: the base with the adapter merged in, a normal model directory.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from melodyflowd.errors import UserError, run_reporting_user_errors
from melodyflowd.generate.textformat import PROFILE_FILE, ModelProfile

from .common import (
    BudgetAndProgress,
    PadCollator,
    TokenDataset,
    directory_size,
    encode_documents,
    set_threads,
    time_budget_schedule,
    training_arguments,
    write_json,
)
from .prepare import MAX_NOTES, documents, read_solos

DEFAULT_STYLES = ("bebop", "cool", "hardbop", "postbop", "swing")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class FinetuneConfig:
    base: str
    data: str
    out: str
    styles: tuple[str, ...] = DEFAULT_STYLES
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 2e-3
    batch: int = 8
    warmup_steps: int = 20
    max_steps: int = 2000
    budget_minutes: float = 4.0      # per style
    eval_steps: int = 25
    patience: int = 3
    valid_docs: int = 60
    train_docs: int | None = None    # limit, for tests
    context: int | None = None       # default: the base's max_position_embeddings (<= 2048)
    merge: str | None = None
    seed: int = 0
    threads: int | None = None
    note: str = ""                   # a sentence for the model card
    log_extra: dict = field(default_factory=dict)


def base_profile(base: str) -> ModelProfile:
    """The base's melodyflow.json, or melodyflowd's shipped profile for a hub model."""
    path = Path(base).expanduser()
    if (path / PROFILE_FILE).is_file():
        return ModelProfile.load(path)
    try:
        from melodyflowd.generate.model import resolve_profile

        return resolve_profile(path if path.is_dir() else None, base)
    except ImportError:
        return ModelProfile(name=base)


def load_base(base: str):
    """Model and tokenizer from a local directory or a hub id: safetensors only, no remote
    code. A missing directory or an unreachable hub is a UserError."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(base).expanduser().is_dir()
    dtype = torch.bfloat16 if torch.cuda.is_available() and not local else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True, dtype=dtype,
                                                     trust_remote_code=False)
    except OSError as exc:
        raise UserError(f"cannot load base model: {str(exc).splitlines()[0][:160]}; pass a "
                        "model directory or a hub id reachable from here", file=base) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _style_docs(solos, profile, style: str, cfg: FinetuneConfig):
    train = documents(solos, profile, split="train", transpose=True, seed=cfg.seed,
                      styles=[style], prompt_dropout=0.05, max_notes=MAX_NOTES)
    valid = documents(solos, profile, split="valid", styles=[style], max_notes=MAX_NOTES)
    if len(valid) < 4:  # a style with hardly any held-out solos: judge on all of them
        valid = documents(solos, profile, split="valid", max_notes=MAX_NOTES)
    random.Random(cfg.seed).shuffle(train)
    if cfg.train_docs:
        train = train[:cfg.train_docs]
    valid = random.Random(cfg.seed + 1).sample(valid, min(cfg.valid_docs, len(valid)))
    return train, valid


def finetune_style(style: str, cfg: FinetuneConfig, solos, profile: ModelProfile,
                   log=print) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import EarlyStoppingCallback, Trainer, set_seed

    set_seed(cfg.seed)
    model, tokenizer = load_base(cfg.base)
    context = cfg.context or min(2048, getattr(model.config, "max_position_embeddings", 2048))
    train_docs, valid_docs = _style_docs(solos, profile, style, cfg)
    if not train_docs:
        raise UserError(f"no training solos of style {style!r}; styles in the data: "
                        f"{', '.join(sorted({s.style for s in solos}))}")
    train = TokenDataset(encode_documents(tokenizer, [d.text for d in train_docs], context))
    valid = TokenDataset(encode_documents(tokenizer, [d.text for d in valid_docs], context))
    targets = [t for t in cfg.targets
               if any(name.endswith(t) for name, _ in model.named_modules())]
    lora = LoraConfig(task_type="CAUSAL_LM", r=cfg.rank, lora_alpha=cfg.alpha,
                      lora_dropout=cfg.dropout, target_modules=targets)
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"finetune {style}: {len(train)} documents ({train.tokens} tokens), {len(valid)} "
        f"validation documents, LoRA r={cfg.rank} on {', '.join(targets)}: "
        f"{trainable / 1e3:.0f} k trainable parameters")

    work = Path(tempfile.mkdtemp(prefix=f"melodyflow-lora-{style}-"))
    budget_s = cfg.budget_minutes * 60
    args = training_arguments(
        output_dir=str(work), per_device_train_batch_size=cfg.batch,
        per_device_eval_batch_size=cfg.batch, learning_rate=cfg.lr, max_steps=cfg.max_steps,
        eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps",
        save_steps=cfg.eval_steps, save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=max(1, min(20, cfg.eval_steps)), report_to="none", seed=cfg.seed,
        dataloader_num_workers=0, group_by_length=True, save_only_model=True,
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available())
    progress = BudgetAndProgress(budget_s, log=log)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=0.0)
    scheduler = time_budget_schedule(optimizer, warmup_steps=cfg.warmup_steps,
                                     max_steps=cfg.max_steps, budget_s=budget_s)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      data_collator=PadCollator(tokenizer.pad_token_id),
                      optimizers=(optimizer, scheduler),
                      callbacks=[progress, EarlyStoppingCallback(cfg.patience)])
    with model.disable_adapter():
        base_loss = float(trainer.evaluate()["eval_loss"])
    progress.history.clear()
    started = time.monotonic()
    result = trainer.train()
    minutes = (time.monotonic() - started) / 60
    valid_loss = float(trainer.evaluate()["eval_loss"])

    out = Path(cfg.out) / style
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(str(out), safe_serialization=True)
    profile.save(out)
    report = {"style": style, "base": cfg.base, "rank": cfg.rank, "alpha": cfg.alpha,
              "target_modules": targets, "trainable_parameters": trainable,
              "train_documents": len(train), "train_tokens": train.tokens,
              "valid_documents": len(valid), "steps": result.global_step,
              "minutes": round(minutes, 2), "lr": cfg.lr, "batch": cfg.batch,
              "budget_minutes": cfg.budget_minutes,
              "epochs": round(result.global_step * cfg.batch / max(1, len(train)), 3),
              "base_valid_loss": round(base_loss, 4), "valid_loss": round(valid_loss, 4),
              "valid_perplexity_ratio": round(math.exp(valid_loss - base_loss), 4),
              "stopped_by": ("budget" if progress.stopped_by_budget else
                             "early stopping" if result.global_step < cfg.max_steps
                             else "max steps"),
              "history": progress.history, "note": cfg.note, **cfg.log_extra}
    write_json(out / "finetune_log.json", report)
    (out / "README.md").write_text(
        f"# LoRA adapter: {style}\n\nStyle adapter for `{cfg.base}`, trained by "
        f"`python -m training.finetune` on the WJazzD training solos of style {style} "
        f"(all keys), {result.global_step} steps in {minutes:.1f} min. Validation loss "
        f"{base_loss:.3f} (base) -> {valid_loss:.3f} (with adapter). Data: Weimar Jazz "
        "Database (ODbL) via the jazzodata R package (MIT); see the base's MODEL_CARD.md.\n",
        encoding="utf-8")
    log(f"finetune {style}: {result.global_step} steps in {minutes:.1f} min, valid loss "
        f"{base_loss:.4f} -> {valid_loss:.4f}, {directory_size(out) / 1e3:.0f} kB -> {out}")
    if cfg.merge:
        merged_dir = Path(cfg.merge) / style
        merged = model.merge_and_unload()
        merged.save_pretrained(str(merged_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(merged_dir))
        profile.save(merged_dir)
        log(f"finetune {style}: merged model -> {merged_dir}")
    shutil.rmtree(work, ignore_errors=True)
    return report


def finetune(cfg: FinetuneConfig, log=print) -> list[dict]:
    set_threads(cfg.threads)
    solos = read_solos(cfg.data)
    profile = base_profile(cfg.base)
    reports = [finetune_style(style, cfg, solos, profile, log=log) for style in cfg.styles]
    base_dir = Path(cfg.base).expanduser()
    if (base_dir / "training_log.json").is_file() and \
            Path(cfg.out).resolve() == (base_dir / "adapters").resolve():
        from .card import write_model_card

        write_model_card(base_dir)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="model directory or hub id")
    parser.add_argument("--data", default="runs/data", help="output of training.prepare")
    parser.add_argument("--out", required=True, help="adapters root: writes OUT/<style>/")
    parser.add_argument("--styles", default=",".join(DEFAULT_STYLES),
                        help="comma-separated WJazzD styles")
    parser.add_argument("--rank", type=int, default=FinetuneConfig.rank)
    parser.add_argument("--alpha", type=int, default=FinetuneConfig.alpha)
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="module names to adapt (those the base lacks are skipped)")
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    parser.add_argument("--batch", type=int, default=FinetuneConfig.batch)
    parser.add_argument("--max-steps", type=int, default=FinetuneConfig.max_steps)
    parser.add_argument("--budget-minutes", type=float, default=FinetuneConfig.budget_minutes,
                        help="wall-clock budget per style (0: steps only)")
    parser.add_argument("--eval-steps", type=int, default=FinetuneConfig.eval_steps)
    parser.add_argument("--patience", type=int, default=FinetuneConfig.patience)
    parser.add_argument("--train-docs", type=int, help="use only N training documents")
    parser.add_argument("--context", type=int, help="max tokens a document")
    parser.add_argument("--merge", help="also write merged model directories to MERGE/<style>")
    parser.add_argument("--note", default="", help="a sentence for the model card")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    cfg = FinetuneConfig(
        base=args.base, data=args.data, out=args.out,
        styles=tuple(s.strip() for s in args.styles.split(",") if s.strip()),
        rank=args.rank, alpha=args.alpha,
        targets=tuple(t.strip() for t in args.targets.split(",") if t.strip()),
        lr=args.lr, batch=args.batch, max_steps=args.max_steps,
        budget_minutes=args.budget_minutes, eval_steps=args.eval_steps,
        patience=args.patience, train_docs=args.train_docs, context=args.context,
        merge=args.merge, note=args.note, seed=args.seed, threads=args.threads)
    return run_reporting_user_errors("finetune", finetune, cfg)


if __name__ == "__main__":
    sys.exit(main())


"""Pretrain a small LlamaForCausalLM from scratch on the prepared WJazzD documents.

    python -m training.pretrain --data runs/data --out melodyflowd/models/default \\
        --budget-minutes 28

Hugging Face Trainer on the CPU (or a GPU if there is one): training documents are the
training solos in every key that keeps them in range, validation documents the
validation solos in their own key.  Early stopping on validation loss, a wall-clock
budget with a learning-rate schedule that ends on time, the best checkpoint kept.
The output is a model directory melodyflowd loads: config.json, model.safetensors,
tokenizer files, melodyflow.json, training_log.json, MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from melodyflowd.errors import UserError, run_reporting_user_errors

from .common import (
    BudgetAndProgress,
    PadCollator,
    TokenDataset,
    directory_size,
    encode_documents,
    read_json,
    set_threads,
    time_budget_schedule,
    training_arguments,
    write_json,
)
from .prepare import MAX_NOTES, PROFILE, documents, read_solos
from .tokenizer import load_tokenizer, save_tokenizer


@dataclass
class ModelSize:
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 576
    context: int = 512       # training length = max_position_embeddings in config.json


SIZES = {
    "default": ModelSize(),
    "large": ModelSize(hidden=256, layers=6, heads=4, kv_heads=4, intermediate=768),
    "tiny": ModelSize(hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64, context=512),
}


@dataclass
class PretrainConfig:
    data: str
    out: str
    work: str | None = None
    size: str = "default"
    batch: int = 8
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_steps: int = 60
    max_steps: int = 4000
    budget_minutes: float = 28.0
    eval_steps: int = 100
    patience: int = 4
    valid_docs: int = 64
    train_docs: int | None = None   # limit, for tests
    prompt_dropout: float = 0.1
    seed: int = 0
    threads: int | None = None
    init: str | None = None         # continue from this model directory's weights


def build_model(size: ModelSize, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.intermediate,
        num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads, max_position_embeddings=size.context,
        rms_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def pretrain(cfg: PretrainConfig, log=print) -> dict:
    import torch
    from transformers import EarlyStoppingCallback, Trainer, set_seed

    set_threads(cfg.threads)
    set_seed(cfg.seed)
    data = Path(cfg.data)
    out = Path(cfg.out)
    size = SIZES[cfg.size]
    tokenizer = load_tokenizer(data / "tokenizer")
    previous = None
    if cfg.init:
        init = Path(cfg.init)
        if load_tokenizer(init).get_vocab() != tokenizer.get_vocab():
            raise UserError("the model to continue from has another vocabulary than the "
                            "prepared data; prepare again or start from scratch",
                            file=str(init / "tokenizer.json"))
        previous = read_json(init / "training_log.json")
    solos = read_solos(data)
    train_docs = documents(solos, PROFILE, split="train", transpose=True, seed=cfg.seed,
                           prompt_dropout=cfg.prompt_dropout, max_notes=MAX_NOTES)
    valid_docs = documents(solos, PROFILE, split="valid", max_notes=MAX_NOTES)
    if not train_docs or not valid_docs:
        raise UserError("no training or validation documents; prepare more solos",
                        file=str(data / "solos.jsonl"))
    rng = random.Random(cfg.seed)
    rng.shuffle(train_docs)
    if cfg.train_docs:
        train_docs = train_docs[:cfg.train_docs]
    # the same validation sample whatever the seed, so runs and continuations compare
    valid_docs = random.Random(1).sample(valid_docs, min(cfg.valid_docs, len(valid_docs)))
    train = TokenDataset(encode_documents(tokenizer, [d.text for d in train_docs], size.context))
    valid = TokenDataset(encode_documents(tokenizer, [d.text for d in valid_docs], size.context))
    log(f"pretrain: {len(train)} training documents ({train.tokens} tokens), "
        f"{len(valid)} validation documents ({valid.tokens} tokens), vocabulary {len(tokenizer)}")

    if cfg.init:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(cfg.init, use_safetensors=True,
                                                     dtype=torch.float32)
        c = model.config
        size = ModelSize(hidden=c.hidden_size, layers=c.num_hidden_layers,
                         heads=c.num_attention_heads, kv_heads=c.num_key_value_heads,
                         intermediate=c.intermediate_size, context=c.max_position_embeddings)
        log(f"pretrain: continuing from {cfg.init}")
    else:
        model = build_model(size, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    log(f"pretrain: LlamaForCausalLM {size} = {params / 1e6:.2f} M parameters")

    work = Path(cfg.work) if cfg.work else Path(tempfile.mkdtemp(prefix="melodyflow-pretrain-"))
    budget_s = cfg.budget_minutes * 60
    args = training_arguments(
        output_dir=str(work), per_device_train_batch_size=cfg.batch,
        per_device_eval_batch_size=cfg.batch, learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay, max_steps=cfg.max_steps, eval_strategy="steps",
        eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.eval_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, logging_steps=max(1, min(25, cfg.eval_steps)),
        report_to="none", seed=cfg.seed, dataloader_num_workers=0, group_by_length=True,
        max_grad_norm=1.0, adam_beta2=0.98, save_only_model=True,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False)
    progress = BudgetAndProgress(budget_s, log=log)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                  weight_decay=cfg.weight_decay)
    scheduler = time_budget_schedule(optimizer, warmup_steps=cfg.warmup_steps,
                                     max_steps=cfg.max_steps, budget_s=budget_s)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      data_collator=PadCollator(tokenizer.pad_token_id),
                      optimizers=(optimizer, scheduler),
                      callbacks=[progress, EarlyStoppingCallback(cfg.patience)])
    started = time.monotonic()
    result = trainer.train()
    minutes = (time.monotonic() - started) / 60
    final = trainer.evaluate()
    trainer.model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model_dir(trainer.model, tokenizer, out)
    best = min((h["eval_loss"] for h in progress.history), default=final["eval_loss"])
    tokens_seen = result.global_step * cfg.batch * (train.tokens / len(train))
    report = {
        "config": asdict(cfg), "size": asdict(size), "parameters": params,
        "train_documents": len(train), "train_tokens": train.tokens,
        "valid_documents": len(valid), "valid_tokens": valid.tokens,
        "steps": result.global_step, "minutes": round(minutes, 2),
        "approx_tokens_seen": round(tokens_seen),
        "epochs": round(tokens_seen / max(1, train.tokens), 3),
        "final_train_loss": progress.last_train_loss,
        "best_valid_loss": round(float(best), 4),
        "final_valid_loss": round(float(final["eval_loss"]), 4),
        "stopped_by": ("budget" if progress.stopped_by_budget else
                       "early stopping" if result.global_step < cfg.max_steps else "max steps"),
        "history": progress.history, "threads": torch.get_num_threads(),
        "model_bytes": (out / "model.safetensors").stat().st_size,
        "torch": torch.__version__,
        "data": read_json(data / "stats.json"),
    }
    phase = {k: report[k] for k in ("steps", "minutes", "best_valid_loss", "stopped_by")}
    phase.update(budget_minutes=cfg.budget_minutes, lr=cfg.lr, seed=cfg.seed, init=cfg.init)
    phases = list((previous or {}).get("phases") or ([] if previous is None else [
        {k: previous.get(k) for k in ("steps", "minutes", "best_valid_loss", "stopped_by")}
        | {"budget_minutes": previous.get("config", {}).get("budget_minutes"),
           "lr": previous.get("config", {}).get("lr"), "seed": previous.get("config", {})
           .get("seed"), "init": None}]))
    phases.append(phase)
    report["phases"] = phases
    report["total_steps"] = sum(p["steps"] or 0 for p in phases)
    report["total_minutes"] = round(sum(p["minutes"] or 0 for p in phases), 2)
    write_json(out / "training_log.json", report)
    from .card import write_model_card

    write_model_card(out)
    if not cfg.work:
        shutil.rmtree(work, ignore_errors=True)
    log(f"pretrain: {result.global_step} steps in {minutes:.1f} min, best valid loss "
        f"{report['best_valid_loss']}, {directory_size(out) / 1e6:.1f} MB -> {out}")
    return report


def save_model_dir(model, tokenizer, out: Path) -> None:
    """Weights (safetensors), tokenizer, profile; leaves adapters/ and logs alone."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("pytorch_model.bin", "model.safetensors.index.json"):
        (out / stale).unlink(missing_ok=True)
    model.config.use_cache = True          # the Trainer turns it off for training
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tokenizer, out)
    PROFILE.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/data", help="output of training.prepare")
    parser.add_argument("--out", default="runs/model", help="model directory to write")
    parser.add_argument("--work", help="checkpoint directory (default: a temporary one)")
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--batch", type=int, default=PretrainConfig.batch)
    parser.add_argument("--lr", type=float, default=PretrainConfig.lr)
    parser.add_argument("--warmup-steps", type=int, default=PretrainConfig.warmup_steps)
    parser.add_argument("--max-steps", type=int, default=PretrainConfig.max_steps)
    parser.add_argument("--budget-minutes", type=float, default=PretrainConfig.budget_minutes,
                        help="wall-clock budget; the schedule ends on time (0: steps only)")
    parser.add_argument("--eval-steps", type=int, default=PretrainConfig.eval_steps)
    parser.add_argument("--patience", type=int, default=PretrainConfig.patience,
                        help="evaluations without a better validation loss before stopping")
    parser.add_argument("--valid-docs", type=int, default=PretrainConfig.valid_docs)
    parser.add_argument("--train-docs", type=int, help="use only N training documents")
    parser.add_argument("--seed", type=int, default=0, help="seed (also of the document order)")
    parser.add_argument("--threads", type=int, help="torch threads (default 2)")
    parser.add_argument("--init", help="continue training the weights of this model directory")
    args = parser.parse_args(argv)
    cfg = PretrainConfig(data=args.data, out=args.out, work=args.work, size=args.size,
                         batch=args.batch, lr=args.lr, warmup_steps=args.warmup_steps,
                         max_steps=args.max_steps, budget_minutes=args.budget_minutes,
                         eval_steps=args.eval_steps, patience=args.patience,
                         valid_docs=args.valid_docs, train_docs=args.train_docs,
                         seed=args.seed, threads=args.threads, init=args.init)
    return run_reporting_user_errors("pretrain", pretrain, cfg)


if __name__ == "__main__":
    sys.exit(main())

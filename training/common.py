"""Pieces pretrain, finetune and evaluate share: datasets of token ids, a time budget, logs."""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments

DEFAULT_THREADS = 2


def set_threads(threads: int | None = None) -> None:
    from melodyflowd.generate.environment import environment

    torch.set_num_threads(threads or environment().threads or DEFAULT_THREADS)


class TokenDataset(torch.utils.data.Dataset):
    """Each item one document: {"input_ids": [...]} ending with the eos token."""

    def __init__(self, ids: Sequence[Sequence[int]]) -> None:
        self.ids = [list(x) for x in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids)


def encode_documents(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text (with <s> in front) plus </s>, cut at max_length."""
    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(ids + [eos])[:max_length] for ids in encoded]


class PadCollator:
    """Pads a batch to its longest document; labels are the ids with padding as -100."""

    def __init__(self, pad_id: int, multiple: int = 64) -> None:
        self.pad_id = pad_id
        self.multiple = multiple   # few distinct shapes: CPU kernels are set up per shape

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in batch)
        width = -(-width // self.multiple) * self.multiple
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"], dtype=torch.long)
            mask[row, :n] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def time_budget_schedule(optimizer, *, warmup_steps: int, max_steps: int, budget_s: float,
                         min_ratio: float = 0.05):
    """Linear warm-up, then cosine decay over whichever runs out first: the steps or the
    wall-clock budget. So a run sized in minutes still ends at a low learning rate."""
    started = time.monotonic()

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        by_steps = step / max_steps if max_steps > 0 else 0.0
        by_time = (time.monotonic() - started) / budget_s if budget_s > 0 else 0.0
        progress = min(1.0, max(by_steps, by_time))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class BudgetAndProgress(TrainerCallback):
    """Stops training when the wall-clock budget is spent (after one last evaluation) and
    prints one line per evaluation: step, minutes, train and validation loss, tokens/s."""

    def __init__(self, budget_s: float, log=print) -> None:
        self.budget_s = budget_s
        self.log = log
        self.started = time.monotonic()
        self.history: list[dict[str, Any]] = []
        self.last_train_loss: float | None = None
        self.stopped_by_budget = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def on_step_end(self, args, state, control, **kwargs):
        if self.budget_s > 0 and self.elapsed() >= self.budget_s:
            self.stopped_by_budget = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_train_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics:
            return
        entry = {"step": state.global_step, "minutes": round(self.elapsed() / 60, 2),
                 "train_loss": self.last_train_loss,
                 "eval_loss": round(float(metrics.get("eval_loss", float("nan"))), 4)}
        self.history.append(entry)
        tl = "-" if entry["train_loss"] is None else f"{entry['train_loss']:.3f}"
        self.log(f"[{entry['minutes']:6.1f} min] step {entry['step']:5d}/{state.max_steps}  "
                 f"train loss {tl}  valid loss {entry['eval_loss']:.4f}", flush=True)


def training_arguments(**kwargs: Any) -> TrainingArguments:
    """TrainingArguments for CPU or GPU, written so transformers 4.4x and 5.x both accept it."""
    params = inspect.signature(TrainingArguments.__init__).parameters
    group = kwargs.pop("group_by_length", False)
    if group:
        if "train_sampling_strategy" in params:
            kwargs["train_sampling_strategy"] = "group_by_length"
        elif "group_by_length" in params:
            kwargs["group_by_length"] = True
    if "eval_strategy" not in params and "eval_strategy" in kwargs:
        kwargs["evaluation_strategy"] = kwargs.pop("eval_strategy")
    if "use_cpu" in kwargs and not kwargs["use_cpu"]:
        kwargs.pop("use_cpu")
    return TrainingArguments(**{k: v for k, v in kwargs.items()
                                if k in params or k == "evaluation_strategy"})


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())

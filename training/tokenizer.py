"""The word-level tokenizer of the models trained here.

One token a pitch (``0``..``127``, at the start of a line), a duration or wait
(``▁0``..``▁400``: the number with the space before it, so a line
``60 6 12`` is three tokens and decodes back byte for byte), a newline, a chord
marker (``@D:dorian``), a style word and a key word (``▁Bb``, ``▁Gm``).  A note is
4 tokens; with a byte-level BPE the same line is 6 to 9, and the model would have
to learn to spell numbers.  Special tokens: ``<pad>`` ``<s>`` ``</s>`` ``<unk>``;
``<s>`` is added in front of every encoded text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from melodyflowd.errors import UserError

SPACE = "\u2581"                       # "▁": a space glued to the word after it
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = SPECIALS
MAX_PITCH = 127
MAX_NUMBER = 400                       # durations, waits (<= max_time) and tempos
MODEL_MAX_LENGTH = 2048


def vocabulary(markers: Iterable[str], styles: Iterable[str], keys: Iterable[str],
               max_number: int = MAX_NUMBER) -> dict[str, int]:
    words = list(SPECIALS) + ["\n"]
    words += [str(p) for p in range(MAX_PITCH + 1)]
    words += [f"{SPACE}{n}" for n in range(max_number + 1)]
    words += [f"@{m}" for m in markers]
    words += list(styles)
    words += [f"{SPACE}{k}" for k in keys]
    vocab: dict[str, int] = {}
    for word in words:
        vocab.setdefault(word, len(vocab))
    return vocab


def build_tokenizer(*, markers: Iterable[str], styles: Iterable[str], keys: Iterable[str],
                    max_number: int = MAX_NUMBER) -> PreTrainedTokenizerFast:
    vocab = vocabulary(markers, styles, keys, max_number)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        model_max_length=MODEL_MAX_LENGTH, clean_up_tokenization_spaces=False)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    """tokenizer.json + tokenizer_config.json, loadable by AutoTokenizer in transformers 4 and 5
    (the class is written as PreTrainedTokenizerFast, which both know)."""
    directory = Path(directory)
    tokenizer.save_pretrained(str(directory))
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["clean_up_tokenization_spaces"] = False
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for extra in ("special_tokens_map.json",):
        path = directory / extra
        if path.exists() and not path.read_text().strip():
            path.unlink()


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    # Without this check a missing folder reads as a hub id and fails with a traceback.
    if not (Path(directory) / "tokenizer.json").is_file():
        raise UserError("no tokenizer.json here; run `python -m training.prepare` first "
                        "and pass its --out folder as --data", file=str(directory))
    return AutoTokenizer.from_pretrained(str(directory))

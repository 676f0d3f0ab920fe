"""Which token ids spell numbers, spaces and newlines, for any tokenizer (NoteTokenizer)."""

from __future__ import annotations

import json
from functools import cached_property

import torch

from melodyflowd.generate.constraint.numbers import Extensions
from melodyflowd.generate.textformat import ModelProfile

# token kinds
OTHER, DIGITS, SPACE, NEWLINE, SPACE_DIGITS = range(5)


def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-level alphabet (printable stand-ins for raw bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _decoder_kinds(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    try:
        decoder = json.loads(backend.to_str()).get("decoder")
    except (ValueError, AttributeError):
        return set()
    kinds: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if "type" in node:
                kinds.add(str(node["type"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(decoder)
    return kinds


def token_texts(tokenizer) -> list[str]:
    """The text each token id stands for on its own (computed once per tokenizer).

    Byte-level BPE (GPT-2, Llama 3) maps the printable stand-ins back to bytes;
    sentencepiece-style pieces turn "▁" into a space and "<0x0A>" into a newline;
    word-level and other tokenizers give the token string itself.
    """
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    kinds = _decoder_kinds(tokenizer)
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    out: list[str] = []
    if "ByteLevel" in kinds:
        table = _byte_decoder()
        for tok in tokens:
            if tok is None or tok in special:
                out.append(tok or "")
                continue
            raw = bytes(table.get(ch, 63) for ch in tok) if all(ch in table for ch in tok) \
                else tok.encode("utf-8")
            out.append(raw.decode("utf-8", errors="replace"))
        return out
    sentencepiece = "Metaspace" in kinds or "ByteFallback" in kinds or "Replace" in kinds
    for tok in tokens:
        if tok is None:
            out.append("")
        elif tok in special:
            out.append(tok)
        elif sentencepiece:
            if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                try:
                    out.append(chr(int(tok[3:5], 16)))
                    continue
                except ValueError:
                    pass
            out.append(tok.replace("▁", " "))
        else:
            out.append(tok)
    return out


class NoteTokenizer:
    """Which token ids spell numbers, spaces and newlines, for any tokenizer.

    Built once per (tokenizer, profile); the per-step work then uses only small tensors
    of the digit tokens (about a thousand for Llama 3) and the per-row parser state.
    """

    def __init__(self, tokenizer, profile: ModelProfile) -> None:
        self.tokenizer = tokenizer
        self.profile = profile
        self.columns = profile.columns
        self.texts = token_texts(tokenizer)
        kinds = []
        for text in self.texts:
            if text.isascii() and text.isdigit():
                kinds.append(DIGITS)
            elif text == " ":
                kinds.append(SPACE)
            elif text == "\n":
                kinds.append(NEWLINE)
            elif len(text) > 1 and text[0] == " " and text[1:].isascii() and text[1:].isdigit():
                kinds.append(SPACE_DIGITS)
            else:
                kinds.append(OTHER)
        self.kinds = kinds
        self.implicit_space = self._detect_implicit_space()

        def group(kind: int, strip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   torch.Tensor]:
            ids = [i for i, k in enumerate(kinds) if k == kind]
            digits = [self.texts[i][1:] if strip else self.texts[i] for i in ids]
            return (torch.tensor(ids, dtype=torch.long),
                    torch.tensor([int(d) if len(d) <= 15 else 0 for d in digits],
                                 dtype=torch.long),
                    torch.tensor([len(d) for d in digits], dtype=torch.long),
                    torch.tensor([len(d) > 1 and d[0] == "0" for d in digits], dtype=torch.bool))

        self.dig_ids, self.dig_val, self.dig_len, self.dig_lead0 = group(DIGITS, False)
        self.sdig_ids, self.sdig_val, self.sdig_len, self.sdig_lead0 = group(SPACE_DIGITS, True)
        self.dig_ext = Extensions(self.dig_val, self.dig_len, self.dig_lead0)
        self.sdig_ext = Extensions(self.sdig_val, self.sdig_len, self.sdig_lead0)
        self.space_ids = torch.tensor([i for i, k in enumerate(kinds) if k == SPACE],
                                      dtype=torch.long)
        self.newline_ids = torch.tensor([i for i, k in enumerate(kinds) if k == NEWLINE],
                                        dtype=torch.long)
        if len(self.dig_ids) == 0 and len(self.sdig_ids) == 0:
            raise ValueError("this tokenizer has no number tokens; it cannot write note lines")
        if len(self.newline_ids) == 0:
            raise ValueError("this tokenizer has no newline token; it cannot write note lines")
        # What a constraint state allows depends only on its settings and this tokenizer:
        # MelodyControl keeps those caches here, so the next run (a regeneration) starts warm.
        self.constraint_caches: dict = {}

    @cached_property
    def digit_ids_by_text(self) -> dict[str, list[int]]:
        """Digit token ids by their text (several ids may spell the same digits)."""
        by_text: dict[str, list[int]] = {}
        for token_id in self.dig_ids.tolist():
            by_text.setdefault(self.texts[token_id], []).append(token_id)
        return by_text

    def _detect_implicit_space(self) -> bool:
        """True for word-level tokenizers that drop spaces (decode joins tokens with them)."""
        ids = self.tokenizer("12 34\n", add_special_tokens=False)["input_ids"]
        joined = "".join(self.texts[i] for i in ids)
        return " " not in joined and joined.replace("\n", "") == "1234"

    def text_of(self, token_id: int) -> str:
        """What a token adds to the line parser (with the implied space for word-level)."""
        if token_id >= len(self.texts):
            return "\x00"
        text = self.texts[token_id]
        if self.implicit_space and self.kinds[token_id] != NEWLINE:
            return text + " "
        return text

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        """Decode generated ids to text the profile parser reads."""
        text = "".join(self.text_of(i) for i in ids if i < len(self.texts)
                       and i not in self._special_ids)
        return text

    @property
    def _special_ids(self) -> frozenset[int]:
        cached = getattr(self, "_special_cache", None)
        if cached is None:
            cached = frozenset(getattr(self.tokenizer, "all_special_ids", []) or [])
            self._special_cache = cached
        return cached

"""A tiny random-init model directory, built in seconds, for tests and benchmarks.

``build_tiny_model(directory)`` writes a normal Hugging Face model directory the
way melodyflowd expects one (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, melodyflow.json): a 2-layer LlamaForCausalLM with hidden
size 32 and a word-level tokenizer built with ``tokenizers``. The tokenizer
writes numbers as 1-3 digit groups (like Llama 3), keeps spaces and newlines as
tokens (so decoding gives back the text exactly), has one token per chord-marker
piece (``@D:`` and the scale name) and one token per printable ASCII character
for everything else (titles).

The weights are random (seeded, so the same directory every time): the model
writes nonsense, which is what the constraint and the generation loop must cope
with anyway.
"""

from __future__ import annotations

import re
from pathlib import Path

from melodyflowd.generate.textformat import PITCH_NAMES, ModelProfile

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
HEADER_WORDS = ["pitch", "duration", "wait", "velocity", "instrument", "program"]
# Scale names a chord marker may carry; names found by parsing chords are added.
SCALE_NAMES = (
    "ionian", "major", "dorian", "phrygian", "lydian", "mixolydian", "aeolian", "minor",
    "locrian", "altered", "half-whole", "whole-half", "whole-tone", "melodic-minor",
    "harmonic-minor", "lydian-dominant", "lydian-b7", "locrian-nat2", "locrian-natural-2",
    "lydian-augmented", "phrygian-dominant", "mixolydian-b6", "mixolydian-b9-b13",
    "diminished", "augmented", "blues", "bebop", "chromatic", "sus", "mixolydian-sus",
)
_PROBE_CHORDS = (
    "C", "Cm", "C7", "Cmaj7", "Cm7", "Cm7b5", "Cdim7", "Co", "Caug", "C+", "C7alt", "C7b9",
    "C7#9", "C7b13", "Cmaj7#11", "C7#11", "Cm(maj7)", "C6", "Cm6", "C7sus4", "Csus4", "C9",
    "C13", "Cm9", "Cmaj9", "C7b9#11", "C+7", "C+j7", "C-j7", "C6/9", "Cm11", "C7b5",
)


def _scale_names() -> list[str]:
    names = set(SCALE_NAMES)
    try:
        from melodyflowd.music.theory import parse_chord

        for symbol in _PROBE_CHORDS:
            try:
                name = parse_chord(symbol).scale_name
            except Exception:  # noqa: BLE001 - an unknown probe symbol just adds nothing
                continue
            if name:
                names.add(name)
    except Exception:  # noqa: BLE001 - theory not importable: the fixed list is enough
        pass
    return sorted(names)


def tiny_vocab(chord_markers: bool = True) -> list[str]:
    """Token strings, in id order."""
    vocab: list[str] = list(SPECIALS)
    vocab += ["\n", " "] + HEADER_WORDS
    for width in (1, 2, 3):
        vocab += [str(n).zfill(width) for n in range(10 ** width)]
    if chord_markers:
        vocab += ["@NC"] + [f"@{name}:" for name in PITCH_NAMES] + _scale_names()
    vocab += [chr(c) for c in range(33, 127) if not chr(c).isdigit()]
    seen: set[str] = set()
    out = []
    for token in vocab:
        if token not in seen:
            seen.add(token)
            out.append(token)
    return out


def build_tokenizer(chord_markers: bool = True):
    """A PreTrainedTokenizerFast: digit groups, space and newline tokens, marker pieces."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocab(chord_markers)
    ids = {token: i for i, token in enumerate(vocab)}
    words = sorted((t for t in vocab if len(t) > 1 and not t.isdigit() and t not in SPECIALS),
                   key=len, reverse=True)
    alternatives = [re.escape(w) for w in words] + [r"\d{1,3}", r"[\s\S]"]
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("|".join(alternatives)), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def tiny_profile(chord_markers: bool = True, name: str = "tiny") -> ModelProfile:
    return ModelProfile(name=name, prompt="{title}", chord_markers=chord_markers)


def build_tiny_model(directory: str | Path, chord_markers: bool = True, *, seed: int = 0,
                     hidden: int = 32, layers: int = 2, context: int = 8192,
                     profile: ModelProfile | None = None) -> Path:
    """Write a tiny random-init model directory and return its path (a few seconds)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chord_markers)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=context, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (profile or tiny_profile(chord_markers)).save(directory)
    (directory / "MODEL_CARD.md").write_text(
        "# tiny test model\n\nRandom weights, built by tests/support/tiny_model.py. Not musical.\n",
        encoding="utf-8")
    return directory


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.support.tiny_model DIR
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))


# -- a hand-made chart (no dependence on the chart parser) ---------------------------------

def _chord(symbol: str, root: int, tones: tuple[int, ...], scale: tuple[int, ...],
           pentatonic: tuple[int, ...], scale_name: str):
    from melodyflowd.music.theory import Chord

    def t(pcs: tuple[int, ...]) -> tuple[int, ...]:
        return tuple((root + pc) % 12 for pc in pcs)

    return Chord(symbol=symbol, root=root, bass=root, tones=t(tones), scale=t(scale),
                 pentatonic=t(pentatonic), scale_name=scale_name)


def hand_chords() -> dict:
    """A few chords spelled by hand (intervals from the root), for tests."""
    m7 = ((0, 3, 7, 10), (0, 2, 3, 5, 7, 9, 10), (0, 3, 5, 7, 10), "dorian")
    dom7 = ((0, 4, 7, 10), (0, 2, 4, 5, 7, 9, 10), (0, 2, 4, 7, 9), "mixolydian")
    maj7 = ((0, 4, 7, 11), (0, 2, 4, 5, 7, 9, 11), (0, 2, 4, 7, 9), "ionian")
    alt = ((0, 4, 10, 3, 8), (0, 1, 3, 4, 6, 8, 10), (0, 3, 4, 8, 10), "altered")
    return {
        "Dm7": _chord("Dm7", 2, *m7), "G7": _chord("G7", 7, *dom7),
        "Cmaj7": _chord("Cmaj7", 0, *maj7), "A7alt": _chord("A7alt", 9, *alt),
        "Fmaj7": _chord("Fmaj7", 5, *maj7), "Bb7": _chord("Bb7", 10, *dom7),
    }


def hand_chart(n_bars: int = 8, tempo: float = 180, time: tuple[int, int] = (4, 4)):
    """A ii-V-I-VI chart built from dataclasses: two chords a bar, then one, alternating."""
    from melodyflowd.music.chart import Bar, Chart, ChordSpan

    chords = hand_chords()
    beats = time[0] * 4 / time[1]
    cycle = [("Dm7", "G7"), ("Cmaj7",), ("A7alt",), ("Fmaj7", "Bb7")]
    bars = []
    for i in range(n_bars):
        names = cycle[i % len(cycle)]
        width = beats / len(names)
        spans = tuple(ChordSpan(chords[n], k * width, width) for k, n in enumerate(names))
        bars.append(Bar(index=i, section="A", chords=spans))
    return Chart(title="Test Changes", tempo=tempo, time=time, key="C", style=None,
                 bars=tuple(bars), source="<hand>")

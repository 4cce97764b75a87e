"""Tokenizers for students, the token layout of training examples, and their batches (METHOD.md 3, 4, 7).

From-scratch students get a byte-level BPE trained on their own corpus with the ``tokenizers`` library:
digits are split one per token (so arithmetic is learnable from few examples; METHOD.md section 7 found
byte-level BPE about 4x more data-efficient per minute than characters), the vocabulary is small, and
``<pad>``, ``<bos>``, ``<eos>`` are special tokens. It is saved beside the model as ``tokenizer.json``
and loaded as a ``transformers`` fast tokenizer.

Token layout of a proposer example (the contract with ``rscaffold decode``): ``[bos] prompt step_1 ...
step_n answer eos``, each segment tokenised on its own and concatenated, exactly as decoding appends
one generated step after another. Per position ``p``:

- ``labels[p]``: the token id when token ``p`` belongs to a step or the answer (completion-only loss),
  else -100; the model shifts them (position ``p`` predicts token ``p + 1``);
- ``signal_ids[p]``: the signal of the step that token ``p + 1`` belongs to, i.e. the signal under
  which the *next* token is written (-1: none, e.g. inside the prompt). So the last token of step
  ``t`` (its ``\\n\\n``) carries the signal of step ``t + 1``: the first token of a step is already
  written under its signal;
- ``signal_targets[p]``: at the last token before each step (the end of the prompt or of the previous
  step), that step's signal id, which the signal head must predict; elsewhere -100.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rscaffold.schema import BOUNDARY

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"}
IGNORE = -100
NO_SIGNAL = -1


def train_bpe(texts: Iterable[str], vocab_size: int = 1024, out_dir: str | Path | None = None) -> Any:
    """Train a byte-level BPE with single-digit tokens on ``texts``; save it to ``out_dir`` if given.

    Returns a ``transformers.PreTrainedTokenizerFast`` whose special tokens are pad, bos and eos.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits first, one per token; then the byte-level split (GPT-2 regex) on what is left.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The step boundary is one token wherever it stands: the GPT-2 regex splits "\n\n" in two
    # before a word, and a student then cannot tell a step's first newline from its last.
    tok.add_tokens([AddedToken(BOUNDARY, normalized=False)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path) -> Any:
    """Load a saved tokenizer (ours or a pretrained model's) from a folder."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:  # pretrained chat models often have none; padding is masked anyway
        tok.pad_token = tok.eos_token
    return tok


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_proposer(record: dict[str, Any], tokenizer: Any, add_bos: bool, max_length: int) -> dict[str, list[int]]:
    """Token layout of one proposer record (``prompt`` and ``segments`` of ``text``/``signal``).

    See the module docstring for the meaning of each list. A segment's ``signal`` of -1 marks text
    that is trained as tokens but carries no signal (the signal-as-text ablation). Sequences longer
    than ``max_length`` are cut at the end.
    """
    ids = ([tokenizer.bos_token_id] if add_bos else []) + _ids(tokenizer, record["prompt"])
    labels = [IGNORE] * len(ids)
    signal_ids = [NO_SIGNAL] * len(ids)
    targets = [IGNORE] * len(ids)
    last = len(record["segments"]) - 1
    for i, seg in enumerate(record["segments"]):
        seg_ids = _ids(tokenizer, seg["text"]) + ([tokenizer.eos_token_id] if i == last else [])
        if not seg_ids:
            continue
        if ids and seg["signal"] >= 0:
            signal_ids[-1] = seg["signal"]  # the token before the step writes its first token
            targets[-1] = seg["signal"]
        ids += seg_ids
        labels += seg_ids
        signal_ids += [seg["signal"]] * (len(seg_ids) - 1) + [NO_SIGNAL]
        targets += [IGNORE] * len(seg_ids)
    cut = slice(0, max_length)
    return {"input_ids": ids[cut], "labels": labels[cut], "signal_ids": signal_ids[cut], "signal_targets": targets[cut]}


def encode_pair(record: dict[str, Any], tokenizer: Any, add_bos: bool, max_length: int) -> dict[str, list[int]]:
    """Token layout of a ``prompt`` -> ``completion`` record: loss on the completion and eos only.

    Long prompts are cut from the left so that the completion survives truncation.
    """
    prompt = ([tokenizer.bos_token_id] if add_bos else []) + _ids(tokenizer, record["prompt"])
    completion = [*_ids(tokenizer, record["completion"]), tokenizer.eos_token_id]
    keep = max(0, max_length - len(completion))
    prompt = prompt[len(prompt) - keep :] if keep else []
    ids = (prompt + completion)[:max_length]
    n = len(ids)
    return {
        "input_ids": ids,
        "labels": ([IGNORE] * len(prompt) + completion)[:n],
        "signal_ids": [NO_SIGNAL] * n,
        "signal_targets": [IGNORE] * n,
    }


class BucketBatches:
    """Deterministic batches per epoch: shuffle by (seed, epoch), sort chunks of 50 batches by length,
    shuffle the batches. Set ``epoch`` before iterating; resuming skips the batches already seen."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket: bool):
        self.lengths, self.batch_size, self.seed, self.bucket, self.epoch = lengths, batch_size, seed, bucket, 0

    def __iter__(self):
        rng = random.Random(f"{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.bucket:
            chunk = 50 * self.batch_size
            order = [
                i
                for s in range(0, len(order), chunk)
                for i in sorted(order[s : s + chunk], key=self.lengths.__getitem__)
            ]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and of both losses."""
    width = max(len(e["input_ids"]) for e in examples)
    fill = {"input_ids": pad_id, "labels": IGNORE, "signal_ids": NO_SIGNAL, "signal_targets": IGNORE}
    batch = {k: torch.tensor([e[k] + [v] * (width - len(e[k])) for e in examples]) for k, v in fill.items()}
    batch["attention_mask"] = torch.tensor(
        [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
    )
    return batch

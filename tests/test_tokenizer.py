"""Tokenizers and the token layout of training examples: which tokens carry the loss and the signals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rscaffold.tokenizer import (
    IGNORE,
    NO_SIGNAL,
    BucketBatches,
    collate,
    encode_pair,
    encode_proposer,
    load_tokenizer,
    train_bpe,
)

TEXTS = ["A has 12 apples. B has 7 apples.", "So the total is 19.\n\n", "Let me see, 12 + 7 is 19."] * 20


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, vocab_size=300)


def test_digits_are_single_tokens_and_specials_exist(tok):
    ids = tok("A has 12345 apples", add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if p.strip().isdigit()] == ["1", "2", "3", "4", "5"]
    assert tok.decode(ids) == "A has 12345 apples"
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<pad>", "<bos>", "<eos>"}
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3


def test_the_step_boundary_is_one_token_wherever_it_stands(tok):
    """A segment ends in "\n\n" and decoding writes it before the next step's first word: both must
    give the same single token, or a student cannot tell where a step ends."""
    boundary = tok("\n\n", add_special_tokens=False)["input_ids"]
    assert len(boundary) == 1
    before_word = tok("So 3.\n\nNow", add_special_tokens=False)["input_ids"]
    assert before_word.count(boundary[0]) == 1 and tok.decode(before_word) == "So 3.\n\nNow"
    assert tok("So 3.\n\n", add_special_tokens=False)["input_ids"][-1:] == boundary


def test_saved_tokenizer_loads_and_encodes_the_same(tok, tmp_path: Path):
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    text = "Also, 12 + 7 is 19.\n\nSo"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.eos_token_id == tok.eos_token_id


def _record():
    return {
        "prompt": "Question: A has 12.\nThinking:\n",
        "segments": [
            {"text": "Let me see, 12 + 7 is 19.\n\n", "signal": 4},
            {"text": "So 19.\n\n", "signal": 5},
            {"text": "###Answer: 19", "signal": 6},
        ],
    }


def test_proposer_loss_mask_covers_exactly_the_step_tokens(tok):
    rec = _record()
    ex = encode_proposer(rec, tok, add_bos=True, max_length=512)
    prompt = 1 + len(tok(rec["prompt"], add_special_tokens=False)["input_ids"])
    sizes = [len(tok(s["text"], add_special_tokens=False)["input_ids"]) for s in rec["segments"]]
    sizes[-1] += 1  # the eos closes the answer
    assert len(ex["input_ids"]) == prompt + sum(sizes)
    assert ex["labels"][:prompt] == [IGNORE] * prompt
    assert ex["labels"][prompt:] == ex["input_ids"][prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id


def test_signals_label_the_positions_that_write_each_step(tok):
    rec = _record()
    ex = encode_proposer(rec, tok, add_bos=False, max_length=512)
    prompt = len(tok(rec["prompt"], add_special_tokens=False)["input_ids"])
    sizes = [len(tok(s["text"], add_special_tokens=False)["input_ids"]) for s in rec["segments"]]
    starts = [prompt, prompt + sizes[0], prompt + sizes[0] + sizes[1]]
    # Signal targets sit on the last token before each step.
    assert [p for p, t in enumerate(ex["signal_targets"]) if t != IGNORE] == [s - 1 for s in starts]
    assert [ex["signal_targets"][s - 1] for s in starts] == [4, 5, 6]
    # Position p carries the signal of token p + 1: the token before a step already writes under it.
    for p in range(len(ex["input_ids"]) - 1):
        expected = NO_SIGNAL if p + 1 < prompt else 4 if p + 1 < starts[1] else 5 if p + 1 < starts[2] else 6
        assert ex["signal_ids"][p] == expected, p
    assert ex["signal_ids"][-1] == NO_SIGNAL


def test_pair_loss_is_on_the_completion_and_long_prompts_are_cut_from_the_left(tok):
    rec = {"prompt": "A has 12 apples. " * 5, "completion": "So 12."}
    ex = encode_pair(rec, tok, add_bos=True, max_length=512)
    completion = tok(rec["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex["labels"][-len(completion) :] == completion
    assert set(ex["labels"][: -len(completion)]) == {IGNORE}
    short = encode_pair(rec, tok, add_bos=True, max_length=len(completion) + 3)
    assert len(short["input_ids"]) == len(completion) + 3 and short["input_ids"][-len(completion) :] == completion


def test_bucketed_batches_cover_every_example_once_and_depend_only_on_seed_and_epoch():
    lengths = [(i * 37) % 101 for i in range(230)]
    sampler = BucketBatches(lengths, batch_size=4, seed=1, bucket=True)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(230)) and len(first) == len(sampler)
    assert list(sampler) == first
    sampler.epoch = 1
    assert list(sampler) != first
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 10  # similar lengths share a batch


def test_collate_pads_and_masks():
    batch = collate(
        [
            {k: [5, 6, 7] for k in ("input_ids", "labels", "signal_ids", "signal_targets")},
            {k: [8] for k in ("input_ids", "labels", "signal_ids", "signal_targets")},
        ],
        pad_id=0,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"][1].tolist() == [8, IGNORE, IGNORE] and batch["signal_ids"][1, 1] == NO_SIGNAL
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]

"""Shared fixtures: the tiny model every model test builds in code, and the real data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RSCAFFOLD_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRACE_SETS = ["qwen3_thinking_traces", "thought_anchors_math", "thought_branches_faithfulness"]


def _shared(folder: str) -> Path:
    """A folder of ../shared/data; tests that need it skip in a user's clone, which has no ../shared."""
    path = SHARED / folder
    if not path.is_dir():
        pytest.skip(f"{folder} not found at {path} (set RSCAFFOLD_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture
def shared_traces() -> Path:
    return _shared("traces")


@pytest.fixture
def shared_benchmarks() -> Path:
    return _shared("benchmarks")


def tiny_llama(tok, seed: int = 0, positions: int = 256, special_ids: bool = True, **config):
    """The tiny random Llama of the model tests (2 layers, width 32), sized to ``tok``'s vocabulary, with
    its pad/bos/eos ids (``special_ids``); built in code, no download. ``config``: other LlamaConfig fields."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    ids = {k: getattr(tok, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")} if special_ids else {}
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
    cfg = LlamaConfig(vocab_size=len(tok), intermediate_size=64, max_position_embeddings=positions, **sizes, **ids)
    cfg.update(config)
    return LlamaForCausalLM(cfg)


@pytest.fixture(scope="session")
def served_student(tmp_path_factory) -> Path:
    """A saved tiny scaffolded student (SEL and head, random weights) whose head never ends early, so
    decoding writes steps: the student the serving tests host."""
    import torch

    from rscaffold.config import ModelConfig
    from rscaffold.model import make_student, save_student, student_meta
    from rscaffold.signals import Signal
    from rscaffold.tokenizer import train_bpe

    texts = ["Question: A has 12 apples.\nThinking:\nSo the total is 19.\n\nLet me see, 3 + 4 is 7.\n\n"] * 10
    tok = train_bpe(texts, vocab_size=300)
    model = make_student(
        tiny_llama(tok, 0, positions=128, tie_word_embeddings=True), ModelConfig(lora=False), sel=True, head=True
    )
    with torch.no_grad():
        model.signal_embedding.weight.normal_(0, 1.0)  # a visible SEL (a fresh one is zeros)
        model.signal_head.bias[Signal.RESPONSE] = -10.0  # the head never ends early: steps get written
    out = tmp_path_factory.mktemp("student")
    layout = {"prompt_template": "Question: {question}\nThinking:\n", "predictor_query": "Next signal:"}
    save_student(model.eval(), tok, out, student_meta("scaffold", model, {"base": "tiny", "add_bos": True}, layout))
    return out

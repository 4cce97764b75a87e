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

"""Loading causal LMs: a tied LM head survives transformers' process-wide tie_weights swap."""

from __future__ import annotations

import torch
from transformers.modeling_utils import PreTrainedModel

from rscaffold.base_models import load_causal_lm
from rscaffold.tokenizer import train_bpe
from tests.conftest import tiny_llama


def test_a_tied_head_is_tied_even_when_transformers_leaves_tie_weights_swapped(tmp_path, monkeypatch):
    tok = train_bpe(["Question: A has 12 apples.\nThinking:\nSo the total is 19.\n\n"] * 5, vocab_size=300)
    tiny_llama(tok, 0, positions=64, tie_word_embeddings=True).save_pretrained(tmp_path)
    # What two threads loading at once can leave behind: the no-op transformers installs while it loads.
    monkeypatch.setattr(PreTrainedModel, "tie_weights", lambda self, *a, **k: None)
    lm = load_causal_lm(str(tmp_path), dtype="float32")
    head, embed = lm.get_output_embeddings().weight, lm.get_input_embeddings().weight
    assert not head.is_meta and head.data_ptr() == embed.data_ptr()
    assert torch.isfinite(lm(torch.tensor([[1, 2, 3]])).logits).all()

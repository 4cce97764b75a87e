"""A saved student in plain transformers: generate with the signal's logits processor writes what
rscaffold decode writes for a step under that signal."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder
from rscaffold.hf import SignalLogitsProcessor, signal_of
from rscaffold.kvbatch import Batch
from rscaffold.model import student_from_folder
from rscaffold.schema import Question
from rscaffold.signal_sources import GoldenSignals
from rscaffold.signals import Signal


@pytest.mark.parametrize("signal", [Signal.CONTRAST, Signal.EXAMPLE, Signal.CONCLUSION])
def test_generate_with_the_processor_writes_the_decoders_first_step(served_student, monkeypatch, signal):
    fed: list[int] = []
    original = Batch.step
    monkeypatch.setattr(Batch, "step", lambda self, tokens: (fed.extend(tokens), original(self, tokens))[1])
    student = student_from_folder(served_student)
    q = Question(id="q", text="B has 3 apples.")
    cfg = DecodeConfig(max_steps=1, max_step_tokens=12, max_answer_tokens=2, tau=0.0, batch_size=1)
    (d,) = Decoder(student, GoldenSignals({"q": [signal]}), cfg)([q])
    first = fed[: d.metadata["step_tokens"][0]]  # the tokens of the step written under the signal
    prompt = torch.tensor([student.encode(student.prompt(q.text))])
    model = AutoModelForCausalLM.from_pretrained(served_student).eval()
    processor = SignalLogitsProcessor.from_pretrained(served_student, signal.key)
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=len(first), logits_processor=[processor])  # fmt: skip
    assert out[0, prompt.shape[1] :].tolist() == first
    if signal is Signal.CONTRAST:  # the fixed fixture's Contrast step differs from what no signal writes
        mask = torch.ones_like(prompt)
        plain = model.generate(prompt, attention_mask=mask, do_sample=False, max_new_tokens=len(first))
        assert plain[0, prompt.shape[1] :].tolist() != first


def test_signals_by_name_and_a_capped_score_is_uncapped_before_the_bias():
    assert signal_of("Reasoning and Analysis") is signal_of("reasoning") is signal_of(4) is Signal.REASONING
    with pytest.raises(ValueError, match="unknown signal"):
        signal_of("wonder")
    bias = torch.zeros(len(Signal), 3)
    bias[Signal.CONTRAST] = torch.tensor([0.5, 0.0, -0.5])
    raw = torch.tensor([[0.2, 1.0, -3.0]])
    cap = 2.0
    capped = torch.tanh(raw / cap) * cap
    out = SignalLogitsProcessor(bias, "contrast", softcap=cap)(None, capped)
    assert out == pytest.approx(torch.tanh((raw + bias[Signal.CONTRAST]) / cap) * cap, abs=1e-5)

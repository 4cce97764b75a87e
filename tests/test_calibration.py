"""The head's calibration: reliability bins and ECE on known values, and the head read on teacher traces
laid out as in training."""

from __future__ import annotations

import pytest
import torch

from rscaffold.calibration import HeadReader, reliability
from rscaffold.config import BuildConfig, ModelConfig
from rscaffold.model import make_student, save_student, student_meta
from rscaffold.schema import Step, Trace
from rscaffold.signals import Signal
from rscaffold.tokenizer import train_bpe
from tests.conftest import tiny_llama


def test_reliability_bins_and_ece_on_known_values():
    # Bin [0.9, 1.0): confidence 0.95, right 1 of 2 (gap 0.45); bin [0.5, 0.6): 0.5, right 1 of 2 (gap 0).
    r = reliability([0.95, 0.95, 0.5, 0.5], [True, False, True, False])
    assert r["accuracy"] == 0.5 and r["ece"] == pytest.approx(0.5 * 0.45)
    assert [(p["low"], p["n"], p["accuracy"]) for p in r["curve"]] == [(0.5, 2, 0.5), (0.9, 2, 0.5)]
    assert reliability([1.0], [True])["ece"] == 0.0  # a confidence of 1 falls in the last bin


def test_a_head_sure_of_one_signal_is_right_where_the_teacher_wrote_it(tmp_path):
    tok = train_bpe(["Question: A has 12 apples.\nThinking:\nSo the total is 19.\n\nWait, 3 + 4 is 7.\n\n"] * 5, 300)
    model = make_student(tiny_llama(tok, 0, positions=128), ModelConfig(lora=False), sel=True, head=True)
    with torch.no_grad():
        model.signal_head.weight.zero_()
        model.signal_head.bias.zero_()
        model.signal_head.bias[Signal.REASONING] = 30.0  # always Reasoning, with confidence 1
    layout = {"prompt_template": "Question: {question}\nThinking:\n", "predictor_query": "Next signal:"}
    save_student(
        model.eval(), tok, tmp_path, student_meta("scaffold", model, {"base": "tiny", "add_bos": True}, layout)
    )
    signals = [Signal.REASONING, Signal.REASONING, Signal.CONTRAST]
    steps = [Step(text=f"Step {i} has 7.", sep="\n\n", signal=s) for i, s in enumerate(signals)]
    trace = Trace(question_id="q", question="A has 3.", teacher="t", thinking="",
                  steps=[*steps, Step(text="###Answer: 7", signal=Signal.RESPONSE)])  # fmt: skip
    confidence, correct = HeadReader(tmp_path, BuildConfig()).decisions([trace, trace])
    assert correct == [True, True, False, False] * 2  # three steps and the answer, twice
    assert confidence == pytest.approx([1.0] * 8)
    assert reliability(confidence, correct)["ece"] == pytest.approx(0.5, abs=1e-6)

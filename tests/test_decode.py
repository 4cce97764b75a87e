"""Signal-guided decoding against a naive reference that re-encodes the whole context at every token."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rscaffold.decode import BOUNDARY, DecodeConfig
from rscaffold.decoder import Decoder
from rscaffold.kvbatch import Batch, Student
from rscaffold.schema import Question
from rscaffold.signal_sources import (
    GenerativePredictor,
    GoldenSignals,
    HeadPredictor,
    NoSignals,
    RandomSignals,
)
from rscaffold.signals import Signal

C, R = Signal.CONCLUSION, Signal.REASONING
CORPUS = ["Q: A has 3 apples. B has 4.\nA:", "So A is 3.\n\nWait, B is 4.\n\nThen 7.", "###Answer: \\boxed{7}"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="module")
def student(tokenizer):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
    )
    lm = LlamaForCausalLM(cfg).eval()
    bias = torch.randn(len(Signal), len(tokenizer)) * 2
    boundary = tokenizer.encode(BOUNDARY, add_special_tokens=False)[0]
    bias[:, boundary] += 4  # steps end at blank lines often enough to exercise the step logic
    bias[: Signal.RESPONSE, tokenizer.eos_token_id] = -1e4  # no end of text inside a step
    bias[Signal.RESPONSE, tokenizer.eos_token_id] += 3
    return Student(
        lm=lm, tokenizer=tokenizer, prompt=lambda q: f"Q: {q}\nA:", signal_head=torch.nn.Linear(32, 7), signal_bias=bias
    )


def questions(n: int) -> list[Question]:
    names = "ABCDEFGHIJ"
    return [Question(id=f"q{i}", text=f"{names[i % 10]} has {i} apples. How many?", gold=str(i)) for i in range(n)]


CFG = {"max_steps": 6, "max_step_tokens": 8, "max_answer_tokens": 5, "max_tokens": 200}


def reference(student: Student, q: Question, cfg: DecodeConfig, golden: list[Signal] | None) -> dict:
    """One question, no cache: the whole context is encoded again for every token."""
    tok, lm = student.tokenizer, student.lm
    prompt = student.encode(student.prompt(q.text))
    context, steps, kept, tokens = list(prompt), [], [], 0

    def last_hidden(ids):
        return lm.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]

    while True:
        h = last_hidden(context)
        if golden is not None:
            signal, conf = (golden[len(steps)] if len(steps) < len(golden) else Signal.RESPONSE), 1.0
        else:
            probs = student.signal_head(h).softmax(-1)
            signal, conf = Signal(int(probs.argmax())), float(probs.max())
        if len(steps) >= cfg.max_steps or tokens >= cfg.max_tokens or signal is Signal.RESPONSE or conf < cfg.tau:
            signal = Signal.RESPONSE
        segment = []
        while True:
            logits = lm.lm_head(last_hidden(context + segment)) + student.signal_bias[signal]
            t = int(logits.argmax())
            segment.append(t)
            tokens += 1
            if signal is Signal.RESPONSE:
                if t == tok.eos_token_id or len(segment) >= cfg.max_answer_tokens or tokens >= cfg.max_tokens:
                    return {
                        "steps": steps,
                        "answer": tok.decode(segment, skip_special_tokens=True),
                        "context": len(context) + len(segment) - 1,
                    }
                continue
            text = tok.decode(segment)
            if BOUNDARY in text or len(segment) >= cfg.max_step_tokens or tokens >= cfg.max_tokens:
                break
        steps.append((signal, text.split(BOUNDARY)[0]))
        kept.append((signal, segment))
        context += segment
        if cfg.prune and signal is Signal.CONCLUSION:
            context = prompt + [t for s, ids in kept if s is Signal.CONCLUSION for t in ids]


def simple(d) -> dict:
    return {
        "steps": [(s.signal, s.text) for s in d.steps],
        "answer": d.answer_text,
        "context": d.metadata["context_tokens"],
    }


@pytest.mark.parametrize("prune", [False, True])
def test_cached_decoding_equals_reencoding_from_scratch(student, prune):
    cfg = DecodeConfig(signal_source="golden", prune=prune, batch_size=3, **CFG)
    golden = [R, C, R, R, C, R]
    source = GoldenSignals({q.id: golden for q in questions(4)})
    out = list(Decoder(student, source, cfg)(questions(4)))
    with torch.no_grad():
        expected = [reference(student, q, cfg, golden) for q in questions(4)]
    assert [simple(d) for d in out] == expected


def test_head_predictor_equals_reference(student):
    cfg = DecodeConfig(tau=0.2, batch_size=3, **CFG)
    out = list(Decoder(student, HeadPredictor(), cfg)(questions(4)))
    with torch.no_grad():
        assert [simple(d) for d in out] == [reference(student, q, cfg, None) for q in questions(4)]


def test_batched_and_unbatched_greedy_give_the_same_text(student):
    one = list(Decoder(student, HeadPredictor(), DecodeConfig(tau=0.2, batch_size=1, **CFG))(questions(5)))
    many = list(Decoder(student, HeadPredictor(), DecodeConfig(tau=0.2, batch_size=4, **CFG))(questions(5)))
    assert [simple(d) for d in one] == [simple(d) for d in many]
    assert [d.stop_reason for d in one] == [d.stop_reason for d in many]
    conf = [s.confidence for d in one for s in d.steps]
    assert conf == pytest.approx([s.confidence for d in many for s in d.steps], abs=1e-5)


def test_golden_mode_follows_the_given_sequence(student):
    golden = [R, Signal.CONTRAST, C, Signal.EXAMPLE]
    source = GoldenSignals({q.id: golden for q in questions(4)})
    for d in Decoder(student, source, DecodeConfig(**CFG))(questions(4)):
        assert [s.signal for s in d.steps] == golden
        assert d.stop_reason == "response" and d.signal_source == "golden"


def test_gate_at_tau_one_stops_at_once(student):
    for d in Decoder(student, HeadPredictor(), DecodeConfig(tau=1.0, **CFG))(questions(4)):
        assert d.steps == [] and d.stop_reason == "gate"


def test_gate_at_tau_zero_never_stops_early(student):
    head = torch.nn.Linear(32, 7)
    with torch.no_grad():
        head.bias[Signal.RESPONSE] = -100  # the predictor never asks for the answer itself
    s = Student(**{**student.__dict__, "signal_head": head})
    for d in Decoder(s, HeadPredictor(), DecodeConfig(tau=0.0, **CFG))(questions(4)):
        assert len(d.steps) == CFG["max_steps"] and d.stop_reason == "max_steps"


def test_pruning_keeps_exactly_the_conclusion_steps(student):
    golden = [R, R, C, R, C, R]
    source = GoldenSignals({q.id: golden for q in questions(3)})
    for d in Decoder(student, source, DecodeConfig(prune=True, **CFG))(questions(3)):
        prompt = len(student.encode(student.prompt(d.question)))
        sizes = d.metadata["step_tokens"]
        kept = sizes[2] + sizes[4] + sizes[5]  # both conclusions, and the step of the unfinished stage
        answer = len(student.tokenizer.encode(d.answer_text, add_special_tokens=False))
        assert prompt + kept <= d.metadata["context_tokens"] <= prompt + kept + answer + 1


def test_finished_rows_release_their_cache(student, monkeypatch):
    seen = []
    original = Batch.step

    def step(self, tokens):
        original(self, tokens)
        seen.append((len(self.rows), self.cache.layers[0].keys.shape[0]))

    monkeypatch.setattr(Batch, "step", step)
    source = RandomSignals({R: 0.5, C: 0.5}, lengths=[0, 1, 3, 5], seed=1)
    list(Decoder(student, source, DecodeConfig(batch_size=8, **CFG))(questions(16)))
    assert all(rows == cached for rows, cached in seen)
    assert min(rows for rows, _ in seen) < 8  # rows did finish early and left the batch


def test_random_and_none_sources(student):
    source = RandomSignals({R: 0.5, C: 0.5}, lengths=[2], seed=0)
    for d in Decoder(student, source, DecodeConfig(**CFG))(questions(3)):
        assert len(d.steps) == 2 and {s.signal for s in d.steps} <= {R, C}
    free = DecodeConfig(**{**CFG, "max_tokens": 40})  # free decoding is bounded by max_tokens, not the answer's
    for d in Decoder(student, NoSignals(), free)(questions(3)):
        assert d.stop_reason in ("eos", "max_tokens") and d.tokens > CFG["max_answer_tokens"]
        assert all(s.signal is None for s in d.steps)
        text = "".join(s.text + s.sep for s in d.steps) + d.answer_text  # cut on blank lines, nothing lost
        assert BOUNDARY not in d.answer_text.strip() and len(text) > 0


def test_generative_predictor_constrained_to_the_names(student):
    pred = GenerativePredictor(student, lambda q, steps: f"Q: {q.text}\nNext signal:", constrained=True)
    for d in Decoder(student, pred, DecodeConfig(tau=0.0, **CFG))(questions(3)):
        assert all(0 < s.confidence <= 1 for s in d.steps)
    free = GenerativePredictor(student, lambda q, steps: f"Q: {q.text}\nNext signal:", constrained=False)
    (d,) = Decoder(student, free, DecodeConfig(tau=0.5, **CFG))(questions(1))
    assert d.stop_reason == "gate"  # an untrained predictor names no signal: confidence 0

"""Signal-guided decoding: against a naive reference that re-encodes the whole context at every token; the
answer's own budget and an answer written inside a step; the generative predictor's seven-way scores; a
signal-as-text student guided by its prefixes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rscaffold import decode as decoder
from rscaffold.config import DecodeConfig, ModelConfig
from rscaffold.decode import Decoder, decode_file, make_source
from rscaffold.kvbatch import Batch, Row
from rscaffold.model import Student, answer_budget, make_student, save_student, student_from_folder, student_meta
from rscaffold.schema import BOUNDARY, Decoded, Question, Step, Trace, read_jsonl, write_jsonl
from rscaffold.signal_sources import (
    GenerativePredictor,
    GoldenSignals,
    HeadPredictor,
    NoSignals,
    RandomSignals,
)
from rscaffold.signals import SIGNAL_TEXT, Signal
from rscaffold.tokenizer import train_bpe
from tests.conftest import tiny_llama
from tests.test_model import tiny_lm

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
    lm = tiny_llama(tokenizer, positions=2048, special_ids=False).eval()
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
        segment, answer_from = [], tokens
        while True:
            logits = lm.lm_head(last_hidden(context + segment)) + student.signal_bias[signal]
            t = int(logits.argmax())
            segment.append(t)
            tokens += 1
            text = tok.decode(segment)
            if signal is not Signal.RESPONSE and "###Answer:" in text:  # the step goes on as the answer
                signal, answer_from = Signal.RESPONSE, tokens
                continue
            if signal is Signal.RESPONSE:
                if t == tok.eos_token_id or tokens - answer_from >= cfg.max_answer_tokens:
                    return {
                        "steps": steps,
                        "answer": tok.decode(segment, skip_special_tokens=True),
                        "context": len(context) + len(segment) - 1,
                    }
                continue
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


# -- the answer's budget, an answer written inside a step ------------------------------------------


def no_eos_in_answer(student: Student) -> Student:
    """The student never ends its answer itself: the answer runs to its budget."""
    bias = student.signal_bias.clone()
    bias[Signal.RESPONSE, student.tokenizer.eos_token_id] = -1e4
    return dataclasses.replace(student, signal_bias=bias)


def script(monkeypatch, tokens: list[int], filler: int) -> None:
    """Greedy decoding writes ``tokens``, then ``filler`` for ever (one row)."""
    written = iter(tokens)
    monkeypatch.setattr(decoder, "_sample", lambda logits, cfg, gen: [next(written, filler)] * len(logits))


def test_the_answer_has_its_own_budget_after_the_thinking_budget(student):
    cfg = DecodeConfig(signal_source="golden", **{**CFG, "max_tokens": 10})
    source = GoldenSignals({q.id: [R] * 6 for q in questions(3)})
    for d in Decoder(no_eos_in_answer(student), source, cfg)(questions(3)):
        assert d.stop_reason == "max_tokens" and sum(d.metadata["step_tokens"]) >= 10
        assert d.tokens - sum(d.metadata["step_tokens"]) == CFG["max_answer_tokens"]


def test_end_of_text_inside_a_step_keeps_the_step_as_the_answer(student, monkeypatch):
    tok = student.tokenizer
    text = "So A is 3, B is 4, \\boxed{7}"
    script(monkeypatch, [*tok.encode(text, add_special_tokens=False), tok.eos_token_id], tok.eos_token_id)
    (d,) = Decoder(student, GoldenSignals({"q0": [R, C]}), DecodeConfig(**{**CFG, "max_step_tokens": 40}))(questions(1))
    assert d.steps == [] and d.answer_text == text and d.stop_reason == "eos"


def test_an_answer_written_inside_a_step_becomes_the_answer(student, monkeypatch):
    tok = student.tokenizer
    ids = tok.encode("Then 7.\n###Answer: \\boxed{7}", add_special_tokens=False)
    marked = next(i + 1 for i in range(len(ids)) if "###Answer:" in tok.decode(ids[: i + 1]))
    filler = tok.encode(" B", add_special_tokens=False)[0]
    script(monkeypatch, ids, filler)
    signals = []
    original = Decoder._logits
    monkeypatch.setattr(Decoder, "_logits", lambda self, b: (signals.append(b.rows[0].signal), original(self, b))[1])
    cfg = DecodeConfig(**{**CFG, "max_step_tokens": 40, "max_answer_tokens": len(ids) - marked})
    (d,) = Decoder(student, GoldenSignals({"q0": [R, C]}), cfg)(questions(1))
    assert d.steps == [] and d.stop_reason == "answer_in_step"
    assert d.answer_text == "Then 7.\n###Answer: \\boxed{7}"  # the budget counts from ###Answer:
    assert signals == [R] * marked + [Signal.RESPONSE] * (len(ids) - marked)  # the Response bias from there on


# -- the default answer budget: the student's own training answers ---------------------------------


def tiny_student_folder(path: Path, texts: list[str], meta: dict, sel: bool) -> Path:
    """A saved tiny student (``rscaffold train``'s layout) whose greedy decoding never writes eos."""
    tok = train_bpe(texts, vocab_size=300)
    model = make_student(tiny_lm(tok), ModelConfig(lora=False), sel=sel, head=sel)
    with torch.no_grad():
        model.base_lm().lm_head.weight[tok.eos_token_id] = 0  # a logit of 0 never wins the argmax here
    layout = {"prompt_template": "Question: {question}\nThinking:\n", **meta}
    save_student(model.eval(), tok, path, student_meta("scaffold", model, {"base": "tiny", "add_bos": True}, layout))
    return path


def test_the_default_answer_budget_covers_the_training_answers(tmp_path):
    assert answer_budget({}) == 256
    assert answer_budget({"answer_tokens": {"p50": 3, "p95": 5, "p99": 10, "max": 12}}) == 64
    measured = {"answer_tokens": {"p50": 40, "p95": 80, "p99": 100, "max": 130}}
    assert answer_budget(measured) == 150
    folder = tiny_student_folder(tmp_path / "s", ["Question: A has 12 apples.\n\nSo 7.\n\n"] * 10, measured, sel=True)
    student = student_from_folder(folder)
    assert student.answer_budget == 150
    cfg = DecodeConfig(**{**CFG, "max_answer_tokens": None, "max_tokens": 20})
    (d,) = Decoder(no_eos_in_answer(student), GoldenSignals({"q0": []}), cfg)(questions(1))
    assert d.tokens == 150 and d.stop_reason == "response"


# -- the generative predictor: a distribution over the seven signals -------------------------------

QUERY = "Q: A has 3 apples.\nNext signal:"


@pytest.fixture(scope="module")
def rigged_predictor(tokenizer) -> Student:
    """A predictor LM rigged along the seven completions ``\\boxed{<title>}`` after :data:`QUERY`: at
    each token, the next tokens of the completions share the mass equally. Each name's tokens after
    its first are then near-certain and the deciding token about 1/6, the case where a geometric mean
    over the name's tokens reads 0.87."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=160,  # more than the trie's nodes: lm_head can give each node its own logits
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    lm = LlamaForCausalLM(config).eval()
    query = tokenizer.encode(QUERY, add_special_tokens=False)
    completions = [tokenizer.encode(f"\\boxed{{{s.title}}}", add_special_tokens=False) for s in Signal]
    nodes = sorted({tuple(c[:i]) for c in completions for i in range(len(c))})
    target = torch.zeros(len(nodes), len(tokenizer))
    for j, node in enumerate(nodes):
        for c in completions:
            if tuple(c[: len(node)]) == node:
                target[j, c[len(node)]] = 12.0
    with torch.no_grad():
        h = torch.stack([lm.model(input_ids=torch.tensor([[*query, *n]])).last_hidden_state[0, -1] for n in nodes])
        lm.lm_head.weight.copy_(torch.linalg.lstsq(h, target).solution.T)
    return Student(lm=lm, tokenizer=tokenizer, prompt=lambda q: q)


def seven_way(lm, query: list[int], completions: list[list[int]]) -> torch.Tensor:
    """The reference: each completion's log-likelihood by one plain forward, normalised over the seven."""
    scores = []
    for c in completions:
        logp = lm(input_ids=torch.tensor([query + c])).logits[0, len(query) - 1 : -1].log_softmax(-1)
        scores.append(logp.gather(-1, torch.tensor(c)[:, None]).sum())
    return torch.stack(scores).softmax(-1)


def test_generative_predictor_confidence_is_its_probability_over_the_seven_signals(student, rigged_predictor):
    queries = {"q0": QUERY, "q1": "Q: B has 12 apples. How many?\nNext signal:"}  # two lengths: left padding
    pred = GenerativePredictor(rigged_predictor, lambda q, steps: queries[q.id])
    rows = [Row(q, []) for q in questions(2)]
    probs = pred.probs(rows)
    tok = student.tokenizer
    completions = [tok.encode(f"\\boxed{{{s.title}}}", add_special_tokens=False) for s in Signal]
    with torch.no_grad():
        expected = [
            seven_way(rigged_predictor.lm, tok.encode(q, add_special_tokens=False), completions)
            for q in queries.values()
        ]
    assert probs.tolist() == [pytest.approx(e.tolist(), abs=1e-4) for e in expected]
    assert probs.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    (signal, conf), _ = pred.choose(rows, None)
    assert conf == pytest.approx(float(expected[0].max()), abs=1e-4)
    assert float(expected[0][signal]) == pytest.approx(conf, abs=1e-4)
    assert 0.1 < conf < 0.3  # the deciding token's probability, not 0.87


def test_generative_predictor_guides_decoding_and_its_gate_fires(student, rigged_predictor):
    pred = GenerativePredictor(rigged_predictor, lambda q, steps: QUERY)
    (d,) = Decoder(student, pred, DecodeConfig(tau=0.0, **CFG))(questions(1))
    assert len(d.steps) == CFG["max_steps"] and all(0.1 < s.confidence < 0.3 for s in d.steps)
    (d,) = Decoder(student, pred, DecodeConfig(tau=0.5, **CFG))(questions(1))
    assert d.stop_reason == "gate" and d.steps == []


# -- a signal-as-text student: the prefix before each step -----------------------------------------

PREFIX_TEXTS = [
    f"Question: A has 12 apples.\nThinking:\n{SIGNAL_TEXT.format(title=s.title)}So the total is 19.\n\n" for s in Signal
] * 10


@pytest.fixture(scope="module")
def prefix_dir(tmp_path_factory):
    meta = {"signal_as_text": True, "signal_text": SIGNAL_TEXT}
    return tiny_student_folder(tmp_path_factory.mktemp("prefix"), PREFIX_TEXTS, meta, sel=False)


def prefix_ids(tok, signal: Signal) -> list[int]:
    """The prefix the decoder feeds; training's tokenisation of a step begins with it."""
    ids = tok.encode(SIGNAL_TEXT.format(title=signal.title).rstrip(), add_special_tokens=False)
    assert tok.encode(SIGNAL_TEXT.format(title=signal.title) + "Now,", add_special_tokens=False)[: len(ids)] == ids
    return ids


def fed_tokens(monkeypatch) -> list[int]:
    """The tokens decoding feeds into the cache (one row)."""
    fed: list[int] = []
    original = Batch.step
    monkeypatch.setattr(Batch, "step", lambda self, tokens: (fed.extend(tokens), original(self, tokens))[1])
    return fed


def test_a_prefix_student_writes_each_steps_prefix_into_the_context(prefix_dir, monkeypatch):
    student = student_from_folder(prefix_dir)
    assert student.signal_prefix == SIGNAL_TEXT
    fed = fed_tokens(monkeypatch)
    golden = [R, C, Signal.CONTRAST]
    (d,) = Decoder(student, GoldenSignals({"q0": golden}), DecodeConfig(**CFG))(questions(1))
    assert [s.signal for s in d.steps] == golden and d.stop_reason == "response"
    assert not any("[" in s.text for s in [*d.steps, Step(text=d.answer_text)])
    start = 0
    for signal, n in zip([*golden, Signal.RESPONSE], [*d.metadata["step_tokens"], None], strict=True):
        ids = prefix_ids(student.tokenizer, signal)
        assert fed[start : start + len(ids)] == ids
        start += n or 0
    prefixes = sum(len(prefix_ids(student.tokenizer, s)) for s in [*golden, Signal.RESPONSE])
    assert d.tokens == len(fed) + 1 - prefixes  # the prefixes are fed, not written


def test_a_prefix_students_own_prediction_scores_the_seven_prefixes(prefix_dir, monkeypatch):
    student = student_from_folder(prefix_dir)
    seen = []  # (context, signal logits) at every decision point
    original = Decoder._signal_logits

    def spy(self, batch, which):
        logits = original(self, batch, which)
        seen.extend((list(batch.rows[i].context), row_logits) for i, row_logits in zip(which, logits, strict=True))
        return logits

    monkeypatch.setattr(Decoder, "_signal_logits", spy)
    cfg = DecodeConfig(tau=0.0, batch_size=3, prune=True, **CFG)  # rows join a running batch, contexts shrink
    for d in Decoder(student, HeadPredictor(), cfg)(questions(4)):
        assert len(d.steps) == CFG["max_steps"] and all(0 <= s.confidence <= 1 for s in d.steps)
    completions = [prefix_ids(student.tokenizer, s) for s in Signal]
    assert len(seen) == 4 * (CFG["max_steps"] + 1)
    with torch.no_grad():
        for context, logits in seen:
            expected = seven_way(student.lm, context, completions)
            assert logits.softmax(-1).tolist() == pytest.approx(expected.tolist(), abs=1e-4)


def test_decode_file_guides_a_prefix_student_with_golden_signals(prefix_dir, tmp_path):
    golden = [R, C]
    trace = Trace(question_id="q0", thinking="", steps=[Step(text="x", signal=s) for s in golden])
    write_jsonl(tmp_path / "golden.jsonl", [trace])
    write_jsonl(tmp_path / "questions.jsonl", questions(1))
    cfg, out = DecodeConfig(signal_source="golden", **CFG), tmp_path / "out.jsonl"
    summary = decode_file(cfg, prefix_dir, tmp_path / "questions.jsonl", out, {"golden": tmp_path / "golden.jsonl"})
    (d,) = read_jsonl(out, Decoded)
    assert summary["signal_source"] == "golden" and [s.signal for s in d.steps] == golden
    assert make_source(DecodeConfig(), student_from_folder(prefix_dir), None, None, None).name == "predictor-head"

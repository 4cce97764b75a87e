"""Where the signal enters the student (``train.signal_position``): output (the paper), input, prefix.

For each position, greedy decoding under given signals (and under the student's own head) writes exactly
the tokens a direct, uncached forward pass of the proposer gives over the training layout of the same
text; each position trains, saves, loads, decodes with every signal source and is served."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import torch

from rscaffold.config import DecodeConfig, ModelConfig, ServeConfig, TrainConfig
from rscaffold.decode import Decoder, _prefixes
from rscaffold.model import Student, load_student, make_student, save_student, student_from_folder, student_meta
from rscaffold.schema import BOUNDARY, Question
from rscaffold.serve import serve_in_thread
from rscaffold.signal_sources import GenerativePredictor, GoldenSignals, HeadPredictor, NoSignals, RandomSignals
from rscaffold.signals import SIGNAL_TEXT, Signal
from rscaffold.tokenizer import IGNORE, NO_SIGNAL, train_bpe
from rscaffold.train import train
from tests.conftest import tiny_llama
from tests.test_train import FAST, TINY, build_dir  # noqa: F401 (a fixture)

POSITIONS = ("output", "input", "prefix")
R, C, X = Signal.REASONING, Signal.CONCLUSION, Signal.CONTRAST
TEXTS = [
    f"Question: A has 12 apples.\nThinking:\n{SIGNAL_TEXT.format(title=s.title)}So the total is 19.\n\n"
    "Let me see, 3 + 4 is 7.\n\n"
    for s in Signal
] * 6
CFG = {"max_steps": 4, "max_step_tokens": 7, "max_answer_tokens": 5, "max_tokens": 200, "batch_size": 3}


@pytest.fixture(scope="module", params=POSITIONS)
def folder(request, tmp_path_factory) -> Path:
    """A saved tiny student whose signal enters at ``request.param``, every signal layer random (a fresh
    one is zeros and would hide a misplaced signal), eos never chosen inside a step."""
    position = request.param
    tok = train_bpe(TEXTS, vocab_size=300)
    model = make_student(tiny_llama(tok, 0, positions=512), ModelConfig(lora=False), True, True, position)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in (model.signal_embedding, model.signal_input):
            if layer is not None:
                layer.weight.normal_(0, 1.0)
        model.signal_head.weight.normal_(0, 1.0)
        model.signal_head.bias[Signal.RESPONSE] = -10.0  # steps get written under the head
        model.base_lm().lm_head.weight[tok.eos_token_id] = 0
    out = tmp_path_factory.mktemp(position)
    layout = {"prompt_template": "Question: {question}\nThinking:\n", "predictor_query": "Next signal:"}
    layout |= {"signal_as_text": position == "prefix", "signal_text": SIGNAL_TEXT}
    meta = student_meta("scaffold", model.eval(), {"base": "tiny", "add_bos": True}, layout)
    save_student(model, tok, out, meta)
    return out


def questions(n: int) -> list[Question]:
    return [Question(id=f"q{i}", text=f"{'ABCD'[i % 4]} has {i + 2} apples.", gold=str(i)) for i in range(n)]


def training_layout(prompt: list[int], segments: list[tuple[int, list[int]]]) -> tuple[list[int], list[int], list]:
    """Token ids, signal ids and head targets of a prompt and segments as ``encode_proposer`` lays them
    out: the token before a segment carries its signal and is its boundary; the segment's tokens carry
    it too, the last one (a finished step's boundary token) the next segment's."""
    ids, signals, targets = list(prompt), [NO_SIGNAL] * len(prompt), [IGNORE] * len(prompt)
    for signal, seg in segments:
        signals[-1], targets[-1] = signal, signal
        ids += seg
        signals += [signal] * len(seg)
        targets += [IGNORE] * len(seg)
    return ids, signals, targets


def reference(model, student: Student, q: Question, golden: list[Signal] | None, prune: bool = False) -> dict:
    """Greedy decoding without a cache: at every token, one forward pass of the proposer over the whole
    text in the training layout; the head's choice read at each boundary when ``golden`` is None; with
    ``prune``, only the conclusions stay in the context once one is written."""
    tok = student.tokenizer
    prompt = student.encode(student.prompt(q.text))
    prefixes = _prefixes(student)
    done: list[tuple[int, list[int]]] = []
    steps, tokens = [], 0

    def forward(segments):
        ids, signals, targets = training_layout(prompt, segments)
        t = (torch.tensor([x]) for x in (ids, signals, targets))
        out = model(next(t), signal_ids=next(t), signal_targets=next(t))
        return out.lm_logits[0, -1], out.signal_logits[0, -1]

    while True:
        if golden is not None:
            signal = golden[len(steps)] if len(steps) < len(golden) else Signal.RESPONSE
        else:  # the head at the boundary: the signal given there must not matter
            heads = [forward([*done, (int(s), [])])[1] for s in (R, X)]
            assert torch.allclose(heads[0], heads[1], atol=1e-5)
            signal = Signal(int(heads[0].argmax()))
        if len(steps) >= CFG["max_steps"]:
            signal = Signal.RESPONSE
        fed = list(prefixes.get(signal, []))
        written: list[int] = []
        while True:
            t = int(forward([*done, (int(signal), fed + written)])[0].argmax())
            written.append(t)
            tokens += 1
            text = tok.decode(written, skip_special_tokens=True)
            if signal is Signal.RESPONSE:
                if len(written) >= CFG["max_answer_tokens"]:
                    return {"steps": steps, "answer": tok.decode(written, skip_special_tokens=True).lstrip()}
                continue
            if BOUNDARY in text or len(written) >= CFG["max_step_tokens"]:
                break
        steps.append((signal, text.split(BOUNDARY)[0].lstrip()))
        done.append((int(signal), fed + written))
        if prune and signal is C:
            done = [seg for seg in done if seg[0] == int(C)]


def simple(d) -> dict:
    return {"steps": [(s.signal, s.text.lstrip()) for s in d.steps], "answer": d.answer_text.lstrip()}


def test_decoding_under_given_signals_equals_a_direct_forward_pass(folder):
    student, (model, _, meta) = student_from_folder(folder), load_student(folder)
    golden = [R, C, X, R]
    cfg = DecodeConfig(signal_source="golden", **CFG)
    out = list(Decoder(student, GoldenSignals({q.id: golden for q in questions(4)}), cfg)(questions(4)))
    with torch.no_grad():
        expected = [reference(model, student, q, golden) for q in questions(4)]
    assert [simple(d) for d in out] == expected
    assert all(len(e["steps"]) == 4 for e in expected)
    assert meta["signal_position"] == model.position


def test_the_students_own_head_chooses_as_a_direct_forward_pass_does(folder):
    student, (model, _, _) = student_from_folder(folder), load_student(folder)
    cfg = DecodeConfig(tau=0.0, **CFG)
    out = list(Decoder(student, HeadPredictor(), cfg)(questions(3)))
    with torch.no_grad():
        expected = [reference(model, student, q, None) for q in questions(3)]
    assert [simple(d) for d in out] == expected


def test_the_signal_changes_what_is_written(folder):
    """Not a no-op: the same question under two signal sequences gives two different texts."""
    student = student_from_folder(folder)
    cfg = DecodeConfig(signal_source="golden", **CFG)
    texts = [
        [s.text for s in next(iter(Decoder(student, GoldenSignals({"q0": [s] * 4}), cfg)(questions(1)))).steps]
        for s in (R, X, Signal.EXAMPLE)
    ]
    assert len({tuple(t) for t in texts}) > 1


def test_summaries_only_decoding_equals_a_direct_forward_pass(folder):
    """Pruning re-encodes each conclusion at its new place with its signal (at the input too)."""
    student, (model, _, _) = student_from_folder(folder), load_student(folder)
    golden = [R, C, R, C]
    cfg = DecodeConfig(signal_source="golden", prune=True, **CFG)
    out = list(Decoder(student, GoldenSignals({q.id: golden for q in questions(3)}), cfg)(questions(3)))
    with torch.no_grad():
        expected = [reference(model, student, q, golden, prune=True) for q in questions(3)]
    assert [simple(d) for d in out] == expected


def test_every_signal_source_decodes(folder):
    student = student_from_folder(folder)
    predictor = Student(lm=student.lm, tokenizer=student.tokenizer, prompt=student.prompt, method="predictor")
    sources = [
        GoldenSignals({q.id: [R, C] for q in questions(2)}),
        HeadPredictor(),
        RandomSignals({R: 0.5, X: 0.5}, [2], seed=0),
        NoSignals(),
        GenerativePredictor(predictor, lambda q, steps: q.text + "\nNext signal:"),
    ]
    for source in sources:
        cfg = DecodeConfig(tau=0.0, **CFG)
        out = list(Decoder(student, source, cfg)(questions(2)))
        assert len(out) == 2 and all(d.answer_text or d.steps for d in out), source.name
        if source.name != "none":
            assert all(s.signal is not None for d in out for s in d.steps), source.name


def test_each_position_is_served(folder):
    body = {"model": folder.name, "messages": [{"role": "user", "content": "B has 3 apples. How many?"}]}
    decode = DecodeConfig(max_steps=3, max_step_tokens=8, max_answer_tokens=6, tau=0.0)
    with serve_in_thread(ServeConfig(port=0, student=str(folder)), decode=decode) as url:
        reply = httpx.post(f"{url}/chat/completions", json=body, timeout=60).json()
    steps = reply["choices"][0]["message"]["steps"]
    assert steps and all(s["signal"] in [t.title for t in Signal] for s in steps)
    if json.loads((folder / "rscaffold_student.json").read_text())["signal_position"] == "prefix":
        assert not any(s["text"].lstrip().startswith("[") for s in steps)  # the prefix is context, not text


@pytest.mark.slow  # 6 s with its build (the default suite keeps within 3 minutes); CI runs it
@pytest.mark.parametrize("position", POSITIONS)
def test_each_position_trains_saves_and_loads(build_dir: Path, tmp_path: Path, position: str):  # noqa: F811
    cfg = FAST.model_copy(update={"max_steps": 2, "signal_position": position})
    before = {}

    def on_step(step, model):
        before.setdefault(step, {n: p.detach().clone() for n, p in model.named_parameters() if "signal" in n})

    train(cfg, TINY, build_dir, tmp_path / position, recipe="scaffold", on_step=on_step)
    model, _, meta = load_student(tmp_path / position)
    assert meta["signal_position"] == position and model.signal_head is not None
    assert (model.signal_input is not None) == (position == "input")
    assert (model.signal_embedding is not None) == (position != "prefix")
    assert meta["signal_as_text"] == (position == "prefix")
    assert (tmp_path / position / "signal_bias.safetensors").exists() == (position == "output")
    trained = dict(model.named_parameters())
    assert all(not torch.equal(before[0][n], trained[n]) for n in before[0])  # every signal layer learned
    student = student_from_folder(tmp_path / position)
    (d,) = Decoder(student, HeadPredictor(), DecodeConfig(tau=0.0, **CFG))(questions(1))
    assert d.steps or d.answer_text


def test_signal_as_text_and_a_position_are_one_choice():
    with pytest.raises(ValueError, match="choose one"):
        TrainConfig(signal_as_text=True, signal_position="input")

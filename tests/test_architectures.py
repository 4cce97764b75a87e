"""The families users bring, built tiny in code from transformers' config classes (no download): each
trains a few steps from a base folder, with full fine-tuning, with LoRA saved merged and with LoRA saved
as the adapter alone, saves, loads and decodes with every signal source; what every source decodes is
what the proposer's own forward gives under the signals it chose. Gemma 2's final soft-capping and an LM
head with a bias decode exactly. The default suite runs the cells of ``FAST``; the slow suite (CI) all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from rscaffold.build import build_folder
from rscaffold.config import BuildConfig, DecodeConfig, ModelConfig, TrainConfig
from rscaffold.decode import Decoder
from rscaffold.model import Proposer, Student, load_student, make_student, student_from_folder
from rscaffold.schema import InputError, Question, write_jsonl
from rscaffold.signal_sources import GoldenSignals, HeadPredictor, NoSignals, RandomSignals, golden_sequences
from rscaffold.signals import Signal
from rscaffold.tokenizer import IGNORE, NO_SIGNAL, train_bpe
from rscaffold.train import train
from tests.test_build import make_traces

TRACES = make_traces(12)
# Prompts of three lengths: the batch pads them on the left, and its rows finish at different tokens.
QUESTIONS = [Question(id=t.question_id, text=t.question[:n]) for t, n in zip(TRACES, [None, 40, 15], strict=False)]
GOLDEN = golden_sequences(TRACES)
PROMPT = BuildConfig().prompt_template
DECODE = DecodeConfig(max_steps=2, max_step_tokens=6, max_answer_tokens=4, max_tokens=24, tau=0.0)
TRAIN = TrainConfig(max_steps=2, batch_size=4, bf16=False, lr=1e-2, log_every=1)


def sizes(tok, **extra: Any) -> dict[str, Any]:
    """A tiny model's config fields (2 layers, width 32, grouped-query attention), sized to ``tok``."""
    ids = {k: getattr(tok, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    width = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    return dict(vocab_size=len(tok), intermediate_size=64, max_position_embeddings=256, **width, **ids, **extra)


def gpt2(tok, **extra: Any) -> GPT2LMHeadModel:
    ids = {k: getattr(tok, k) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
    width = dict(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=256)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), **width, **ids, **extra))


# Gemma's sliding window is shorter than a decoded question, so its masks are exercised too.
SLIDING = dict(head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"])


class Family(NamedTuple):
    build: Callable[..., Any]
    """A tokenizer (and config fields) -> a tiny random causal LM of the family."""
    lora_targets: list[str]


FAMILIES = {
    "llama": Family(lambda tok, **x: LlamaForCausalLM(LlamaConfig(**sizes(tok, **x))), ["q_proj", "v_proj"]),
    "qwen2": Family(lambda tok, **x: Qwen2ForCausalLM(Qwen2Config(**sizes(tok, **x))), ["q_proj", "v_proj"]),
    "qwen3": Family(
        lambda tok, **x: Qwen3ForCausalLM(Qwen3Config(**sizes(tok, head_dim=16, **x))), ["q_proj", "v_proj"]
    ),
    "gemma2": Family(
        lambda tok, **x: Gemma2ForCausalLM(Gemma2Config(**sizes(tok, **SLIDING, **x))), ["q_proj", "v_proj"]
    ),
    "gemma3": Family(
        lambda tok, **x: Gemma3ForCausalLM(Gemma3TextConfig(**sizes(tok, **SLIDING, **x))), ["q_proj", "v_proj"]
    ),
    "phi3": Family(lambda tok, **x: Phi3ForCausalLM(Phi3Config(**sizes(tok, **x))), ["qkv_proj"]),
    "phi": Family(lambda tok, **x: PhiForCausalLM(PhiConfig(**sizes(tok, **x))), ["q_proj", "v_proj"]),  # head bias
    "gpt2": Family(gpt2, ["c_attn"]),
}
"""Llama also stands for SmolLM2 and Llama 3 (the same class); Phi (Phi-2) has an LM head with a bias."""


@pytest.fixture(scope="module")
def tok():
    return train_bpe([t.question + "\n" + t.thinking + "\n" + t.answer_text for t in TRACES] * 3, vocab_size=300)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_jsonl(root / "labelled.jsonl", TRACES)
    build_folder(root / "labelled.jsonl", root / "build", BuildConfig())
    return root / "build"


def visible_signals(step: int, model: Proposer) -> None:
    """Before training: a visible SEL (a fresh one is zeros, and a few steps move it little) and a head
    that never ends early, so that decoding writes steps under signals."""
    if step == 0:
        with torch.no_grad():
            model.signal_embedding.weight.normal_(0, 1.0)
            model.signal_head.bias[Signal.RESPONSE] = -10.0


def trained(family: str, mode: str, tok, build_dir: Path, tmp_path: Path) -> tuple[Path, type]:
    """A scaffold student of ``family`` trained a few steps from a base folder (as ``model.base=DIR``)."""
    torch.manual_seed(0)
    lm = FAMILIES[family].build(tok)
    lm.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "base"))
    lora = dict(lora=mode != "full", lora_r=4, lora_targets=FAMILIES[family].lora_targets)
    cfg = ModelConfig(base=str(tmp_path / "base"), save="adapter" if mode == "lora-adapter" else "merged", **lora)
    summary = train(TRAIN, cfg, build_dir, tmp_path / "student", recipe="scaffold", on_step=visible_signals)
    assert summary["steps"] == TRAIN.max_steps
    return tmp_path / "student", type(lm)


def sources() -> dict[str, Any]:
    return {
        "predictor-head": HeadPredictor(),
        "golden": GoldenSignals(GOLDEN),
        "random": RandomSignals({Signal.REASONING: 0.5, Signal.CONCLUSION: 0.5}, [2]),
        "none": NoSignals(),
    }


def decode_recorded(student: Student, source: Any, monkeypatch) -> tuple[list, dict[str, list]]:
    """The decoded questions, and for each the signal and the logits under which it wrote every token."""
    seen: dict[str, list] = defaultdict(list)
    original = Decoder._logits

    def record(self, batch):
        logits = original(self, batch)
        for row, z in zip(batch.rows, logits, strict=True):
            seen[row.question.id].append((row.signal, z))
        return logits

    with monkeypatch.context() as m:
        m.setattr(Decoder, "_logits", record)
        return list(Decoder(student, source, DECODE)(QUESTIONS)), seen


def assert_follows_the_forward(model: Proposer, student: Student, q: Question, seen: list) -> None:
    """Teacher-forcing the tokens greedy decoding wrote, with their signals laid out as in training,
    gives the logits decoding used (and so the same tokens): the decode-time bias is the SEL."""
    prompt = student.encode(student.prompt(q.text))
    logits = torch.stack([z for _, z in seen])
    tokens = logits.argmax(-1).tolist()
    ids = prompt + tokens[:-1]  # position p carries the signal of token p + 1
    signal_ids = [NO_SIGNAL] * (len(prompt) - 1) + [NO_SIGNAL if s is None else int(s) for s, _ in seen]
    with torch.no_grad():
        forward = model(torch.tensor([ids]), signal_ids=torch.tensor([signal_ids]))[0][0, len(prompt) - 1 :]
    assert forward.argmax(-1).tolist() == tokens
    torch.testing.assert_close(forward, logits, atol=1e-4, rtol=1e-4)


def check_sources(model: Proposer, student: Student, monkeypatch) -> None:
    """Every source decodes the questions in one batch, as its kind should, and follows the forward."""
    for name, source in sources().items():
        decoded, seen = decode_recorded(student, source, monkeypatch)
        for q, d in zip(QUESTIONS, decoded, strict=True):
            assert d.question_id == q.id and d.signal_source == name and d.tokens == len(seen[q.id])
            signals = [s.signal for s in d.steps]
            if name == "none":
                assert signals == [None] * len(signals)
            elif name == "golden":
                assert signals == GOLDEN[q.id][: len(signals)]
            else:  # the head never chooses to answer, random draws two steps (an eos ends a step early)
                assert (signals or d.stop_reason == "eos") and set(signals) <= set(Signal) - {Signal.RESPONSE}
            assert_follows_the_forward(model, student, q, seen[q.id])


FAST = {("llama", "full"), ("gpt2", "lora"), ("gemma2", "full"), ("phi", "lora")}
"""The cells of the default suite (the families whose layout differs most); CI's slow suite runs all."""
CELLS = [
    pytest.param(family, mode, marks=() if (family, mode) in FAST else pytest.mark.slow)
    for family in FAMILIES
    for mode in ("full", "lora", "lora-adapter")
]


@pytest.mark.parametrize("family, mode", CELLS)
def test_a_family_trains_saves_loads_and_decodes_with_every_source(family, mode, tok, build_dir, tmp_path, monkeypatch):
    """LoRA is saved merged (the default), or as the adapter alone, which loading puts on the base again."""
    folder, cls = trained(family, mode, tok, build_dir, tmp_path)
    student = student_from_folder(folder)
    model, _, meta = load_student(folder)
    assert meta["weights"] == ("adapter" if mode == "lora-adapter" else "full") and type(student.lm) is cls
    check_sources(model, student, monkeypatch)


# -- the decode-time bias where the head is not a plain linear map ---------------------------------


def in_memory(model: Proposer, tok) -> Student:
    """The student as :func:`student_from_folder` makes it, without a folder."""
    return Student(
        lm=model.base_lm(),
        tokenizer=tok,
        prompt=lambda question: PROMPT.format(question=question),
        signal_head=model.signal_head,
        signal_bias=model.signal_bias(),
    )


def scaffolded(lm) -> Proposer:
    model = make_student(lm, ModelConfig(lora=False), sel=True, head=True)
    visible_signals(0, model)
    return model.eval()


def test_gemma2_soft_capping_applies_in_training_and_decoding(tok, monkeypatch):
    torch.manual_seed(0)
    lm = FAMILIES["gemma2"].build(tok, final_logit_softcapping=0.1).eval()  # a cap that binds (logits reach ~0.5)
    model = scaffolded(lm)
    ids = torch.tensor([tok.encode(PROMPT.format(question=QUESTIONS[0].text), add_special_tokens=False)])
    with torch.no_grad():
        own, uncapped = lm(ids).logits, lm.lm_head(lm.model(ids).last_hidden_state)
        assert uncapped.abs().max() > 0.3 and own.abs().max() < 0.1
        torch.testing.assert_close(model(ids)[0], own)  # no signal: the base model's own logits, capped
        labels = ids.masked_fill(torch.arange(ids.shape[1]) < 4, IGNORE)
        token = F.cross_entropy(own[0, 3:-1], ids[0, 4:])
        torch.testing.assert_close(model(ids, labels=labels).token, token)  # trained under the cap
    check_sources(model, in_memory(model, tok), monkeypatch)


def test_an_lm_head_with_a_bias_decodes_as_the_forward(tok, monkeypatch):
    torch.manual_seed(0)
    lm = FAMILIES["llama"].build(tok, tie_word_embeddings=False).eval()
    lm.lm_head = torch.nn.Linear(32, len(tok), bias=True)  # its bias cancels in signal_bias, stays in lm_head(h)
    with torch.no_grad():
        lm.lm_head.bias.normal_(0, 1.0)
    model = scaffolded(lm)
    check_sources(model, in_memory(model, tok), monkeypatch)


def test_lora_targets_the_family_lacks_name_the_ones_it_has(tok):
    with pytest.raises(InputError, match=r"GPT2LMHeadModel has no module of these names; .*'c_attn'"):
        make_student(gpt2(tok), ModelConfig(lora=True), sel=True, head=True)

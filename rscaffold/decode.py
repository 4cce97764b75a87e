"""Stage 6: signal-guided decoding (METHOD.md section 5).

For each question: predict the next signal, stop and answer when the predictor's confidence is
below tau (the gate), otherwise write one step under that signal up to the step boundary (a blank
line), and repeat; the answer is written under Response Generation.

Speed comes from three choices. Questions are decoded in batches with one KV cache, extended token by
token; no context is ever re-read, except the rows whose context pruning shortened. Each row moves on
its own: when its step ends, it picks its next signal at once, while the others go on writing. And the
signal embedding costs nothing at decode time: the proposer's last hidden state is final-normed, so
``lm_head(h + e_s) = lm_head(h) + lm_head(e_s)``, a per-signal bias over the vocabulary (METHOD.md
section 4) that is computed once.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from rscaffold.schema import Decoded, Question, Step
from rscaffold.signals import Signal

BOUNDARY = "\n\n"
SOURCES = ("predictor-head", "predictor-generative", "golden", "random", "none")


class DecodeConfig(BaseModel):
    """How decode chooses signals, when it stops, and how much it may write."""

    model_config = ConfigDict(extra="forbid")

    signal_source: Literal[SOURCES] = Field(  # type: ignore[valid-type]
        "predictor-head", description="Where step signals come from: " + ", ".join(SOURCES) + "."
    )
    tau: float = Field(0.96, ge=0, le=1, description="Gate: answer when the predictor's confidence is below tau.")
    prune: bool = Field(False, description="Keep only the Conclusion steps of finished stages in the context.")
    max_steps: int = Field(24, ge=0, description="Steps before the answer is forced.")
    max_step_tokens: int = Field(96, ge=1, description="Tokens of one step before it is cut.")
    max_answer_tokens: int = Field(64, ge=1, description="Tokens of the answer before it is cut.")
    max_tokens: int = Field(1024, ge=1, description="Tokens per question before the answer is forced.")
    batch_size: int = Field(8, ge=1, description="Questions decoded together.")
    temperature: float = Field(0.0, ge=0, description="0 is greedy; above 0 samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when sampling.")
    constrained: bool = Field(True, description="The generative predictor can only emit one of the seven names.")
    seed: int = Field(0, description="Seed of sampling and of random signals.")


@dataclass
class Student:
    """What decoding needs of a trained student.

    ``lm`` is a Hugging Face causal LM with ``.model`` (the backbone, returning final-normed hidden
    states) and ``.lm_head``; ``signal_head`` maps a hidden state to the C signal logits; ``signal_bias``
    is ``lm_head(SEL.weight)``, shape (C, vocab). Baselines have neither.
    """

    lm: Any
    tokenizer: Any
    prompt: Callable[[str], str]
    signal_head: torch.nn.Module | None = None
    signal_bias: torch.Tensor | None = None
    method: str = "scaffold"


class SignalSource(Protocol):
    """Chooses the next signal of each row at a decision point: (signal, confidence)."""

    name: str

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]: ...


@dataclass
class _Row:
    """One question being decoded."""

    question: Question
    context: list[int]
    """Token ids the cache of this row holds (prompt, then the kept steps)."""
    steps: list[Step] = field(default_factory=list)
    signal: Signal | None = None
    confidence: float = 1.0
    segment: list[int] = field(default_factory=list)
    answering: bool = False
    tokens: int = 0
    answer: str = ""
    stop_reason: str = ""
    prompt_len: int = 0
    step_tokens: list[list[int]] = field(default_factory=list)
    """Token ids of each written step, boundary included; pruning rebuilds the context from them."""

    def __post_init__(self) -> None:
        self.prompt_len = self.prompt_len or len(self.context)


class HeadPredictor:
    """The proposer's own signal head: softmax over the C signals, confidence = top probability."""

    name = "predictor-head"

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        assert signal_logits is not None, "the head predictor needs a student with a signal head"
        probs = signal_logits.float().softmax(-1)
        conf, idx = probs.max(-1)
        return [(Signal(int(i)), float(c)) for i, c in zip(idx, conf, strict=True)]


class GoldenSignals:
    """The teacher's signal sequence of each question (the oracle rows of the paper's tables)."""

    name = "golden"

    def __init__(self, sequences: dict[str, list[Signal | None]]):
        self.sequences = sequences

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        out = []
        for row in rows:
            seq = self.sequences.get(row.question.id, [])
            t = len(row.steps)
            signal = seq[t] if t < len(seq) else Signal.RESPONSE
            out.append((signal if signal is not None else Signal.REASONING, 1.0))
        return out


class RandomSignals:
    """Signals drawn from the training distribution, with a step count drawn from the training ones."""

    name = "random"

    def __init__(self, probs: dict[Signal, float], lengths: Sequence[int], seed: int = 0):
        self.rng = random.Random(seed)
        self.signals, self.weights = list(probs), list(probs.values())
        self.lengths = list(lengths) or [1]
        self.plan: dict[str, int] = {}

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        out = []
        for row in rows:
            n = self.plan.setdefault(row.question.id, self.rng.choice(self.lengths))
            done = len(row.steps) >= n
            out.append((Signal.RESPONSE if done else self.rng.choices(self.signals, self.weights)[0], 1.0))
        return out


class NoSignals:
    """Free decoding: one segment, the whole output, until end of text (the baselines)."""

    name = "none"

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        return [(Signal.RESPONSE, 1.0) for _ in rows]


def _cache_kwarg(lm: Any) -> str:
    # transformers 5.x renamed `past_key_values` to `cache` (the old name is deprecated, not gone).
    params = inspect.signature(lm.model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _Batch:
    """The rows decoded together and their shared, left-padded KV cache."""

    def __init__(self, student: Student, rows: list[_Row]):
        self.student, self.rows = student, rows
        self.kwarg = _cache_kwarg(student.lm)
        self.cache: Any = None
        self.mask = torch.zeros(len(rows), 0, dtype=torch.long)
        self.hidden = self._prefill([r.context for r in rows])

    @property
    def device(self) -> torch.device:
        return next(self.student.lm.parameters()).device

    def _prefill(self, contexts: list[list[int]], width: int | None = None) -> torch.Tensor:
        """Encode left-padded contexts from scratch; returns the last hidden state of each."""
        from transformers import DynamicCache

        width = width or max(len(c) for c in contexts)
        pad = self.student.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=self.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=self.device)
        out = self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), DynamicCache())
        self.cache, self.mask = out[self.kwarg], mask
        return out.last_hidden_state[:, -1]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> Any:
        kwargs = {self.kwarg: cache}
        return self.student.lm.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)

    def step(self, tokens: list[int]) -> None:
        """Feed one token per row."""
        ids = torch.tensor(tokens, device=self.device).unsqueeze(-1)
        pos = torch.tensor([len(r.context) for r in self.rows], device=self.device).unsqueeze(-1)
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long, device=self.device)], 1)
        out = self._forward(ids, self.mask, pos, self.cache)
        self.cache, self.hidden = out[self.kwarg], out.last_hidden_state[:, -1]
        for row, tok in zip(self.rows, tokens, strict=True):
            row.context.append(tok)

    def keep(self, keep: list[int]) -> None:
        """Drop finished rows, releasing their share of the cache."""
        if not keep:
            self.rows, self.cache = [], None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask, self.hidden = self.mask[index], self.hidden[index]
        self.rows = [self.rows[i] for i in keep]

    def reencode(self, which: list[int]) -> None:
        """Re-encode the rows whose context pruning changed, left-padded to the batch's width."""
        others = _Batch.__new__(_Batch)
        others.student, others.kwarg, others.rows = self.student, self.kwarg, [self.rows[i] for i in which]
        hidden = others._prefill([self.rows[i].context for i in which], width=self.mask.shape[1])
        for layer_new, layer in zip(_layers(others.cache), _layers(self.cache), strict=True):
            for new, old in zip(layer_new, layer, strict=True):
                old[which] = new
        self.mask[which] = others.mask
        self.hidden[which] = hidden


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers < 4.54


class GenerativePredictor:
    """The paper's predictor: a separate causal LM that answers ``\\boxed{name}`` after the context.

    Confidence is the geometric mean of the probabilities of the name's tokens. Constrained, it can
    only write one of the seven names (greedy over the names' token trie); unconstrained, an answer
    that names no signal has confidence 0, so the gate ends the reasoning.
    """

    name = "predictor-generative"

    def __init__(self, student: Student, query: Callable[[Question, list[Step]], str], constrained: bool = True):
        self.student, self.query, self.constrained = student, query, constrained
        tok = student.tokenizer
        self.names = {s: tok.encode(f"{s.title}}}", add_special_tokens=False) for s in Signal}
        self.close = tok.encode("}", add_special_tokens=False)[-1]

    def choose(self, rows: Sequence[_Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        tok = self.student.tokenizer
        probe = [_Row(r.question, tok.encode(self.query(r.question, r.steps))) for r in rows]
        batch = _Batch(self.student, probe)
        written: list[list[int]] = [[] for _ in probe]
        logps: list[list[float]] = [[] for _ in probe]
        for _ in range(max(len(v) for v in self.names.values()) if self.constrained else 16):
            logits = self.student.lm.lm_head(batch.hidden).float().log_softmax(-1)
            picks = [self._pick(logits[i], written[i]) for i in range(len(probe))]
            for i, p in enumerate(picks):
                if not self._finished(written[i]):
                    written[i].append(p)
                    logps[i].append(float(logits[i, p]))
            if all(self._finished(w) for w in written):
                break
            batch.step(picks)
        return [self._result(w, lp) for w, lp in zip(written, logps, strict=True)]

    def _pick(self, logp: torch.Tensor, written: list[int]) -> int:
        if not self.constrained:
            return int(logp.argmax())
        allowed = {
            ids[len(written)]
            for ids in self.names.values()
            if ids[: len(written)] == written and len(ids) > len(written)
        }
        if not allowed:
            return self.close
        allowed_ids = torch.tensor(sorted(allowed))
        return int(allowed_ids[logp[allowed_ids].argmax()])

    def _finished(self, written: list[int]) -> bool:
        return bool(written) and (written[-1] == self.close or len(written) >= 16)

    def _result(self, written: list[int], logps: list[float]) -> tuple[Signal, float]:
        text = self.student.tokenizer.decode(written).split("}")[0]
        try:
            signal = Signal.parse(text)
        except ValueError:
            return Signal.RESPONSE, 0.0
        name_logps = logps[:-1] if written and written[-1] == self.close else logps
        return signal, float(torch.tensor(name_logps).mean().exp()) if name_logps else 0.0


def _sample(logits: torch.Tensor, cfg: DecodeConfig, gen: torch.Generator) -> list[int]:
    if cfg.temperature == 0:
        return logits.argmax(-1).tolist()
    probs = (logits.float() / cfg.temperature).softmax(-1)
    if cfg.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        cut = sorted_p.cumsum(-1) - sorted_p > cfg.top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(cut, 0))
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1).tolist()


class Decoder:
    """Decodes questions in batches with one signal source; see the module docstring."""

    def __init__(self, student: Student, source: SignalSource, cfg: DecodeConfig):
        self.student, self.source, self.cfg = student, source, cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        tok = student.tokenizer
        self.eos = tok.eos_token_id
        self.newline = {i for i in range(len(tok)) if "\n" in tok.decode([i])}
        self.guided = source.name != "none" and student.signal_bias is not None

    def __call__(self, questions: Iterable[Question]) -> Iterator[Decoded]:
        chunk: list[Question] = []
        for q in questions:
            chunk.append(q)
            if len(chunk) == self.cfg.batch_size:
                yield from self._batch(chunk)
                chunk = []
        if chunk:
            yield from self._batch(chunk)

    @torch.no_grad()
    def _batch(self, questions: list[Question]) -> list[Decoded]:
        tok = self.student.tokenizer
        rows = [_Row(q, tok.encode(self.student.prompt(q.text))) for q in questions]
        batch = _Batch(self.student, rows)
        self._decide(batch, list(range(len(rows))))
        while batch.rows:
            self._advance(batch)
        return [self._output(r) for r in rows]

    def _advance(self, batch: _Batch) -> None:
        """One token for every row; then finish answers, close steps and choose the next signals."""
        tokens = _sample(self._logits(batch), self.cfg, self.gen)
        ends = [self._segment_end(row, tok) for row, tok in zip(batch.rows, tokens, strict=True)]
        keep = [i for i, end in enumerate(ends) if end != "answer"]
        if len(keep) < len(batch.rows):
            batch.keep(keep)
            tokens, ends = [tokens[i] for i in keep], [ends[i] for i in keep]
        if not batch.rows:
            return
        batch.step(tokens)
        closed = [i for i, end in enumerate(ends) if end == "step"]
        if closed:
            self._close_steps(batch, closed)
            self._decide(batch, closed)

    def _logits(self, batch: _Batch) -> torch.Tensor:
        logits = self.student.lm.lm_head(batch.hidden)
        if self.guided:
            signals = torch.tensor([int(r.signal) for r in batch.rows], device=logits.device)
            logits = logits + self.student.signal_bias[signals].to(logits.dtype)
        return logits

    def _segment_end(self, row: _Row, tok: int) -> str | None:
        """Add ``tok`` to the row's segment; 'answer' or 'step' when that ends the segment."""
        row.segment.append(tok)
        row.tokens += 1
        if row.answering:
            if tok == self.eos or len(row.segment) >= self.cfg.max_answer_tokens or row.tokens >= self.cfg.max_tokens:
                ended = "eos" if tok == self.eos else "max_tokens"
                row.answer = self.student.tokenizer.decode(row.segment, skip_special_tokens=True)
                row.stop_reason = row.stop_reason or ended
                return "answer"
            return None
        if tok == self.eos:  # the student ends inside a step: keep the step, with no answer
            row.stop_reason = "eos"
            return self._end_without_answer(row)
        boundary = tok in self.newline and BOUNDARY in self.student.tokenizer.decode(row.segment)
        if boundary or len(row.segment) >= self.cfg.max_step_tokens or row.tokens >= self.cfg.max_tokens:
            return "step"
        return None

    def _end_without_answer(self, row: _Row) -> str:
        text = self.student.tokenizer.decode(row.segment, skip_special_tokens=True)
        if text.strip():
            row.steps.append(Step(text=text, sep="", signal=row.signal, confidence=row.confidence))
        return "answer"

    def _close_steps(self, batch: _Batch, closed: list[int]) -> None:
        pruned = []
        for i in closed:
            row = batch.rows[i]
            text = self.student.tokenizer.decode(row.segment, skip_special_tokens=True).split(BOUNDARY)[0]
            row.steps.append(Step(text=text, sep=BOUNDARY, signal=row.signal, confidence=row.confidence))
            row.step_tokens.append(list(row.segment))
            if self.cfg.prune and row.signal is Signal.CONCLUSION:
                kept = [ids for s, ids in zip(row.steps, row.step_tokens, strict=True) if s.signal is Signal.CONCLUSION]
                row.context = row.context[: row.prompt_len] + [t for ids in kept for t in ids]
                pruned.append(i)
        if pruned:
            batch.reencode(pruned)

    def _decide(self, batch: _Batch, which: list[int]) -> None:
        rows = [batch.rows[i] for i in which]
        head = self.student.signal_head
        logits = head(batch.hidden[which]) if head is not None and self.source.name == "predictor-head" else None
        for row, (signal, conf) in zip(rows, self.source.choose(rows, logits), strict=True):
            row.segment, row.confidence = [], conf
            forced = "max_steps" if len(row.steps) >= self.cfg.max_steps else None
            forced = forced or ("max_tokens" if row.tokens >= self.cfg.max_tokens else None)
            if self.source.name == "none":
                row.answering, row.signal = True, None
            elif forced or signal is Signal.RESPONSE or conf < self.cfg.tau:
                row.answering, row.signal = True, Signal.RESPONSE
                row.stop_reason = forced or ("gate" if conf < self.cfg.tau else "response")
            else:
                row.signal = signal

    def _output(self, row: _Row) -> Decoded:
        q = row.question
        return Decoded(
            question_id=q.id,
            method=self.student.method,
            signal_source=self.source.name,
            benchmark=q.task,
            split=str(q.metadata.get("split", "")),
            question=q.text,
            gold=q.gold,
            steps=row.steps,
            answer_text=row.answer,
            tokens=row.tokens,
            stop_reason=row.stop_reason,
            metadata={"context_tokens": len(row.context), "step_tokens": [len(t) for t in row.step_tokens]},
        )

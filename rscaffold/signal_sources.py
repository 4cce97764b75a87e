"""Where the signal of each next step comes from (METHOD.md section 5): the proposer's head, the
paper's generative predictor, the teacher's sequence (golden), random draws, or none."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch

from rscaffold.kvbatch import Batch, Row, Student
from rscaffold.schema import InputError, Question, Step
from rscaffold.signals import Signal


class SignalSource(Protocol):
    """Chooses the next signal of each row at a decision point: (signal, confidence)."""

    name: str

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]: ...


class HeadPredictor:
    """The proposer's own signal head: softmax over the C signals, confidence = top probability."""

    name = "predictor-head"

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        assert signal_logits is not None, "the head predictor needs a student with a signal head"
        probs = signal_logits.float().softmax(-1)
        conf, idx = probs.max(-1)
        return [(Signal(int(i)), float(c)) for i, c in zip(idx, conf, strict=True)]


class GoldenSignals:
    """The teacher's signal sequence of each question (the oracle rows of the paper's tables)."""

    name = "golden"

    def __init__(self, sequences: dict[str, list[Signal | None]]):
        self.sequences = sequences

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        out = []
        for row in rows:
            seq = self.sequences.get(row.question.id)
            if seq is None:  # silently answering at once would score a wrong "golden" row
                raise InputError(
                    f"no golden signals for question {row.question.id!r}: the teacher traces lack it "
                    "(generate them with generate.filter_wrong=false)"
                )
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

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        out = []
        for row in rows:
            n = self.plan.setdefault(row.question.id, self.rng.choice(self.lengths))
            done = len(row.steps) >= n
            out.append((Signal.RESPONSE if done else self.rng.choices(self.signals, self.weights)[0], 1.0))
        return out


class NoSignals:
    """Free decoding: one segment, the whole output, until end of text (the baselines)."""

    name = "none"

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        return [(Signal.RESPONSE, 1.0) for _ in rows]


class GenerativePredictor:
    """The paper's predictor: a separate causal LM that writes ``\\boxed{name}`` after the context.

    ``query(question, steps)`` gives its input text (the context so far and the query line, as the
    training pairs of ``rscaffold build`` have it). Confidence is the geometric mean of the
    probabilities of the name's tokens. Constrained, it can only write one of the seven names (greedy
    over the token trie of the seven completions); unconstrained, an answer that names no signal has
    confidence 0, so the gate ends the reasoning.
    """

    name = "predictor-generative"
    MAX_TOKENS = 24

    def __init__(self, student: Student, query: Callable[[Question, list[Step]], str], constrained: bool = True):
        self.student, self.query, self.constrained = student, query, constrained
        tok = student.tokenizer
        self.completions = {s: tok.encode(f"\\boxed{{{s.title}}}", add_special_tokens=False) for s in Signal}
        # Tokens shared by every completion ("\\boxed{") are not part of the name's confidence.
        first = list(self.completions.values())
        self.shared = next(i for i in range(min(map(len, first))) if len({c[i] for c in first}) > 1)

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        probe = [Row(r.question, self.student.encode(self.query(r.question, r.steps))) for r in rows]
        batch = Batch(self.student, probe)
        written: list[list[int]] = [[] for _ in probe]
        logps: list[list[float]] = [[] for _ in probe]
        steps = max(map(len, self.completions.values())) if self.constrained else self.MAX_TOKENS
        for _ in range(steps):
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
        n = len(written)
        allowed = sorted({c[n] for c in self.completions.values() if c[:n] == written and len(c) > n})
        if not allowed:  # a completion is finished; the token is not used
            return int(logp.argmax())
        ids = torch.tensor(allowed)
        return int(ids[logp[ids].argmax()])

    def _finished(self, written: list[int]) -> bool:
        if self.constrained:
            return written in self.completions.values()
        text = self.student.tokenizer.decode(written)
        return "}" in text or len(written) >= self.MAX_TOKENS or (written[-1:] == [self.student.tokenizer.eos_token_id])

    def _result(self, written: list[int], logps: list[float]) -> tuple[Signal, float]:
        text = self.student.tokenizer.decode(written, skip_special_tokens=True)
        name = text.split("{", 1)[-1].split("}", 1)[0]
        try:
            signal = Signal.parse(name)
        except ValueError:
            return Signal.RESPONSE, 0.0
        name_logps = logps[self.shared :] or logps
        return signal, float(torch.tensor(name_logps).mean().exp())


def golden_sequences(traces: Iterable[Any]) -> dict[str, list[Signal | None]]:
    """The teacher's signal sequence (thinking steps) of each question, from labelled traces."""
    return {t.question_id: [s.signal for s in t.steps if s.signal is not Signal.RESPONSE] for t in traces}


def random_source(traces: Iterable[Any], seed: int = 0) -> RandomSignals:
    """Random signals that match the training traces' signal distribution and step counts."""
    counts: dict[Signal, int] = {}
    lengths = []
    for t in traces:
        thinking = [s for s in t.steps if s.signal is not Signal.RESPONSE]
        lengths.append(len(thinking))
        for s in thinking:
            if s.signal is not None:
                counts[s.signal] = counts.get(s.signal, 0) + 1
    total = sum(counts.values()) or 1
    return RandomSignals({s: n / total for s, n in sorted(counts.items())}, lengths, seed)

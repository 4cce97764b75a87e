"""Where the signal of each next step comes from (METHOD.md section 5): the proposer's head, the
paper's generative predictor, the teacher's sequence (golden), random draws, or none.

The two predictors give a distribution over the seven signals and take its top probability as the
confidence, so that one gate threshold tau means the same for both: the head by its softmax (for a
signal-as-text student, its own LM's likelihoods of the seven signal prefixes), the generative
predictor by the likelihoods of the seven completions ``\\boxed{<name>}``, both normalised over the
seven."""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import torch

from rscaffold.kvbatch import Batch, Row, RowCache, completion_trie, score_after, tree_scoring
from rscaffold.model import Student
from rscaffold.schema import InputError, Question, Step
from rscaffold.signals import Signal


class SignalSource(Protocol):
    """Chooses the next signal of each row at a decision point: (signal, confidence)."""

    name: str

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]: ...


class HeadPredictor:
    """The proposer's own prediction: softmax over the C signal logits, confidence = top probability.

    The logits are the signal head's; for a signal-as-text student, the log-likelihoods of the seven
    signal prefixes under its own LM (the decoder computes them)."""

    name = "predictor-head"

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        assert signal_logits is not None, "the head predictor needs a student with a signal head or signal prefixes"
        return _top(signal_logits.float().softmax(-1))


def _top(probs: torch.Tensor) -> list[tuple[Signal, float]]:
    """The most probable signal of each row of a (rows, C) distribution, with its probability."""
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


class SwappedSignals(GoldenSignals):
    """The teacher's sequence with one thinking signal replaced: at a step drawn per question (seeded by
    the question id, so any batching gives the same swap) by another thinking signal. Whether the step
    written there follows the new signal is evaluate's swap sensitivity; ``swaps`` records each swap."""

    name = "golden-swap"

    def __init__(self, sequences: dict[str, list[Signal | None]], seed: int = 0):
        super().__init__(sequences)
        self.swaps: dict[str, tuple[int, Signal, Signal]] = {}
        thinking = [s for s in Signal if s is not Signal.RESPONSE]
        for qid, seq in sequences.items():
            if seq:
                rng = random.Random(f"{seed}:{qid}")
                t = rng.randrange(len(seq))
                was = seq[t] if seq[t] is not None else Signal.REASONING
                self.swaps[qid] = (t, rng.choice([s for s in thinking if s is not was]), was)

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        out = super().choose(rows, signal_logits)
        for i, row in enumerate(rows):
            swap = self.swaps.get(row.question.id)
            if swap is not None and swap[0] == len(row.steps):
                out[i] = (swap[1], 1.0)
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
    """The paper's predictor: a separate causal LM trained to write ``\\boxed{name}`` after the context.

    ``query(question, steps)`` gives its input text (the context so far and the query line, as the
    training pairs of ``rscaffold build`` have it). Each of the seven whole completions
    ``\\boxed{<name>}`` is scored by its log-likelihood after the query (teacher-forced), and the
    scores are normalised over the seven: the signal is the most probable, the confidence its
    probability. (A mean over the name's tokens would be near 1 whenever the names' later tokens are
    certain, however unsure the token that decides between them.)

    With ``cache`` (the default) the predictor keeps a KV cache of each row's text
    (:class:`rscaffold.kvbatch.RowCache`): the query is still encoded whole at every decision, so the
    tokens are exactly those of training, but only the tokens past the longest prefix the cache shares
    with them are read (the new step, and the query line, which the next step's text replaces), with
    the seven completions in the same forward. Without it (or for a model whose attention takes no
    custom mask, :func:`rscaffold.kvbatch.tree_scoring`) every decision reads the whole query again:
    the simple path, the reference of the parity tests.
    """

    name = "predictor-generative"

    def __init__(self, student: Student, query: Callable[[Question, list[Step]], str], cache: bool = True):
        self.student, self.query = student, query
        self.cache = cache and tree_scoring(student.lm)  # else every decision reads the whole query
        tok = student.tokenizer
        self.completions = [tok.encode(f"\\boxed{{{s.title}}}", add_special_tokens=False) for s in Signal]
        self.trie = completion_trie(self.completions)
        self.caches: dict[int, tuple[weakref.ref[Row], RowCache]] = {}
        """Each row's cache, by ``id(row)``; an entry goes when its row is freed or answers."""

    @torch.no_grad()
    def probs(self, rows: Sequence[Row]) -> torch.Tensor:
        """(rows, C): the probability of each signal next, for each row."""
        ids = [self.student.encode(self.query(r.question, r.steps)) for r in rows]
        if not self.cache:
            probe = [Row(r.question, i) for r, i in zip(rows, ids, strict=True)]
            return Batch(self.student, probe).score(list(range(len(probe))), self.completions).softmax(-1)
        self._forget_answering()
        caches = [self._row_cache(r) for r in rows]
        return score_after(self.student, caches, ids, self.trie).softmax(-1)

    def _row_cache(self, row: Row) -> RowCache:
        key = id(row)
        entry = self.caches.get(key)
        if entry is None or entry[0]() is not row:
            forget = self.caches.pop
            entry = self.caches[key] = (weakref.ref(row, lambda _: forget(key, None)), RowCache())
        return entry[1]

    def _forget_answering(self) -> None:
        """A row that writes its answer is asked no more (the decoder decides only at a step's end)."""
        for key, (ref, _) in list(self.caches.items()):
            row = ref()
            if row is None or row.answering:
                self.caches.pop(key, None)

    def choose(self, rows: Sequence[Row], signal_logits: torch.Tensor | None) -> list[tuple[Signal, float]]:
        return _top(self.probs(rows))


def _signals(trace: Any, true: bool) -> list[Signal | None]:
    """A trace's step signals: as labelled, or (``true``) the testbed's true signals where known, as
    ``build.signal_source=true`` trains on them."""
    return [s.true_signal if true and s.true_signal is not None else s.signal for s in trace.steps]


def golden_sequences(traces: Iterable[Any], true: bool = False) -> dict[str, list[Signal | None]]:
    """The teacher's signal sequence (thinking steps) of each question, from labelled traces (``true``:
    the true signals, see :func:`_signals`)."""
    return {t.question_id: [s for s in _signals(t, true) if s is not Signal.RESPONSE] for t in traces}


def random_source(traces: Iterable[Any], seed: int = 0, true: bool = False) -> RandomSignals:
    """Random signals that match the training traces' signal distribution and step counts."""
    counts: dict[Signal, int] = {}
    lengths = []
    for t in traces:
        thinking = [s for s in _signals(t, true) if s is not Signal.RESPONSE]
        lengths.append(len(thinking))
        for s in thinking:
            if s is not None:
                counts[s] = counts.get(s, 0) + 1
    total = sum(counts.values()) or 1
    return RandomSignals({s: n / total for s, n in sorted(counts.items())}, lengths, seed)

"""The decode stage: signal-guided decoding (METHOD.md section 5), the loop of ``rscaffold decode``.

For each question: predict the next signal, stop and answer when the predictor's confidence (its
probability of that signal among the seven, for the head and the generative predictor alike: see
:mod:`rscaffold.signal_sources`) is below tau (the gate), otherwise write one step under that
signal up to the step boundary (a blank line), and repeat; the answer is written under Response
Generation. The thinking is bounded by ``max_steps`` and ``max_tokens``, the answer by its own
budget. A step that writes ``###Answer:`` becomes the answer from there; one that ends the text
(eos) is the answer.

A signal-as-text student (no SEL) is guided by text: the decoder feeds the signal's prefix
(``[Conclusion and Summary]``) before each step and the answer, as its training text has it, and its
own prediction of the next signal is its LM's likelihood of each of the seven prefixes.

Speed comes from three choices. Questions are decoded in batches with one KV cache, extended token by
token; nothing is re-read, except a conclusion that pruning moved to a new place. Each row moves on
its own: when its step ends, it picks its next signal at once, while the others go on writing. And the
signal embedding costs nothing at decode time: the LM head is affine, so
``lm_head(h + e_s) = lm_head(h) + lm_head(e_s) - lm_head(0)``, a per-signal bias over the vocabulary
(METHOD.md section 4) that is computed once; a base model's final soft-capping comes after it, as in
training (:func:`rscaffold.model.lm_logits`).
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from rscaffold import generate, label, parallel, runs, segment
from rscaffold.benchmarks import SPECS, load_questions
from rscaffold.config import Config, DecodeConfig, ExperimentVariant
from rscaffold.kvbatch import Batch, Row
from rscaffold.model import DEFAULT_ANSWER_BUDGET, Student, lm_logits, load_student, student_from_folder
from rscaffold.schema import ANSWER_MARK, BOUNDARY, Decoded, InputError, Question, Step, Trace, read_jsonl, write_jsonl
from rscaffold.segment import segment_text
from rscaffold.signal_sources import (
    GenerativePredictor,
    GoldenSignals,
    HeadPredictor,
    NoSignals,
    SignalSource,
    SwappedSignals,
    golden_sequences,
    random_source,
)
from rscaffold.signals import Signal


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

    def __init__(
        self,
        student: Student,
        source: SignalSource,
        cfg: DecodeConfig,
        on_step: Callable[[Question, Step], None] | None = None,
        golden: dict[str, list[Signal | None]] | None = None,
    ):
        """``on_step`` is called with each step as soon as it is written (for streaming); ``golden``
        (the teacher's signals per question), when given, is copied into each output for the signal
        metrics of evaluate."""
        self.student, self.source, self.cfg, self.on_step, self.golden = student, source, cfg, on_step, golden
        self.gen = torch.Generator().manual_seed(cfg.seed)
        tok = student.tokenizer
        self.eos = tok.eos_token_id
        self.newline, self.mark_end = _token_sets(tok)
        free = source.name == "none"
        self.bias = None if free else student.signal_bias
        # Signal position input: the signal enters the input embeddings; the SEL's bias writes only the
        # first token of a step.
        self.at_input = student.signal_input is not None and not free
        self.prefixes = {} if free else _prefixes(student)
        template = student.signal_prefix or ""
        # The student writes the prefix's trailing space itself ("[Title]" + " Now", as training tokenised it).
        self.space = template[len(template.rstrip()) :]
        self.answer_budget = cfg.max_answer_tokens or student.answer_budget or DEFAULT_ANSWER_BUDGET

    @torch.no_grad()
    def __call__(self, questions: Iterable[Question]) -> Iterator[Decoded]:
        """Decoded outputs in the order of ``questions``. The batch is refilled as rows finish
        (continuous batching), so it stays full until the questions run out."""
        pending = enumerate(questions)
        batch: Batch | None = None
        finished: dict[int, Decoded] = {}
        next_out = 0
        while True:
            batch = self._refill(batch, pending)
            if batch is None or not batch.rows:
                break
            for row in self.advance(batch):
                finished[row.index] = self.output(row)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
        yield from (finished[i] for i in sorted(finished))

    def _refill(self, batch: Batch | None, pending: Iterator[tuple[int, Question]]) -> Batch | None:
        """Let new questions join as soon as a row is free."""
        free = self.cfg.batch_size - (len(batch.rows) if batch else 0)
        rows = [self.row(i, q) for i, q in itertools.islice(pending, free)] if free > 0 else []
        return self.join(batch, rows) if rows else batch

    def row(self, index: int, q: Question) -> Row:
        """A row for question ``q``; ``index`` orders the outputs."""
        return Row(q, self.student.encode(self.student.prompt(q.text)), index=index)

    def join(self, batch: Batch | None, rows: list[Row]) -> Batch:
        """Rows join the running batch (a new one when there is none) and get their first signals: the
        step of continuous batching that the server also takes between tokens."""
        if batch is None or not batch.rows:
            batch, joined = Batch(self.student, rows), list(range(len(rows)))
        else:
            joined = batch.add(rows)
        self._decide(batch, joined)
        return batch

    def advance(self, batch: Batch) -> list[Row]:
        """One token for every row (the student's, or the next of a signal prefix); then finish answers,
        close steps and choose the next signals. Returns the rows that finished (and left the batch)."""
        tokens, ends, signals = [], [], []
        for row, tok in zip(batch.rows, _sample(self._logits(batch), self.cfg, self.gen), strict=True):
            signals.append(-1 if row.signal is None else int(row.signal))  # what the token is written under
            if row.pending:  # fed into the context, not written by the student
                tokens.append(row.pending.pop(0))
                ends.append(None)
            else:
                tokens.append(tok)
                ends.append(self._segment_end(row, tok))
        done = [row for row, end in zip(batch.rows, ends, strict=True) if end == "answer"]
        if done:
            keep = [i for i, end in enumerate(ends) if end != "answer"]
            batch.keep(keep)
            tokens, ends, signals = [tokens[i] for i in keep], [ends[i] for i in keep], [signals[i] for i in keep]
        if batch.rows:
            if self.at_input:  # a step's last token is the boundary: fed without a signal
                batch.step(tokens, [-1 if end == "step" else s for s, end in zip(signals, ends, strict=True)])
            else:
                batch.step(tokens)
            closed = [i for i, end in enumerate(ends) if end == "step"]
            if closed:
                self._close_steps(batch, closed)
                self._decide(batch, closed)
        return done

    def _logits(self, batch: Batch) -> torch.Tensor:
        """Each row's next-token logits: the proposer's under the row's signal (see the module docstring)."""
        bias = None
        if self.bias is not None:
            signals = torch.tensor([int(r.signal) for r in batch.rows], device=batch.hidden.device)
            bias = self.bias[signals]
            if self.at_input:  # the first token of a segment only
                first = torch.tensor([not r.segment for r in batch.rows], device=bias.device)
                bias = bias * first.unsqueeze(-1).to(bias.dtype)
        return lm_logits(self.student.lm, batch.hidden, bias)

    def _segment_end(self, row: Row, tok: int) -> str | None:
        """Add ``tok`` to the row's segment; 'answer' or 'step' when that ends the segment."""
        row.segment.append(tok)
        row.tokens += 1
        if self.cfg.max_new_tokens is not None and row.tokens >= self.cfg.max_new_tokens and tok != self.eos:
            self._cut(row)
            return "answer"
        if row.answering:
            return self._answer_end(row, tok)
        if tok == self.eos:  # the student ends inside a step: what it wrote is its answer
            row.answer, row.stop_reason = self._text(row), "eos"
            return "answer"
        # Only a token that holds the mark's last character can complete it, and the mark then lies in
        # the last len(ANSWER_MARK) tokens at most: the check costs little.
        if tok in self.mark_end and ANSWER_MARK in self.student.tokenizer.decode(row.segment[-len(ANSWER_MARK) :]):
            self._start_answer(row, "answer_in_step")  # the step so far is the start of the answer
            return None
        boundary = tok in self.newline and BOUNDARY in self.student.tokenizer.decode(row.segment)
        if boundary or len(row.segment) >= self.cfg.max_step_tokens or row.tokens >= self.cfg.max_tokens:
            return "step"
        return None

    def _cut(self, row: Row) -> None:
        """The row has written ``max_new_tokens``: what it has is its output (a step cut short stays a
        step, with no answer after it)."""
        if row.answering:
            self._finish_answer(row, self._text(row))
        else:
            row.steps.append(Step(text=self._text(row), sep="", signal=row.signal, confidence=row.confidence))
            row.step_tokens.append(row.prefix + row.segment)
            if self.on_step is not None:
                self.on_step(row.question, row.steps[-1])
        row.stop_reason = "length"

    def _answer_end(self, row: Row, tok: int) -> str | None:
        """'answer' when ``tok`` ends the answer: eos, or its budget. Free decoding writes its whole
        output as one segment, so max_tokens bounds it; a guided answer has its own budget, however
        many tokens the thinking took."""
        if self.source.name == "none":
            full = row.tokens >= self.cfg.max_tokens
        else:
            full = row.tokens - row.answer_from >= self.answer_budget
        if tok != self.eos and not full:
            return None
        self._finish_answer(row, self._text(row))
        row.stop_reason = row.stop_reason or ("eos" if tok == self.eos else "max_tokens")
        return "answer"

    def _text(self, row: Row) -> str:
        """The text the row wrote in its segment (without the signal prefix and the space after it)."""
        text = self.student.tokenizer.decode(row.segment, skip_special_tokens=True)
        return text.removeprefix(self.space) if row.prefix else text

    def _finish_answer(self, row: Row, text: str) -> None:
        """The answer; free decoding's output is cut on blank lines into steps (no signal) and the
        answer (the last fragment), as segmentation cuts a teacher's trace."""
        if self.source.name != "none":
            row.answer = text
            return
        *steps, last = segment_text(text) or [Step(text=text)]
        row.steps = [Step(text=s.text, sep=s.sep) for s in steps]
        row.answer = last.text

    def _close_steps(self, batch: Batch, closed: list[int]) -> None:
        for i in closed:
            row = batch.rows[i]
            text = self._text(row).split(BOUNDARY)[0]
            row.steps.append(Step(text=text, sep=BOUNDARY, signal=row.signal, confidence=row.confidence))
            row.step_tokens.append(row.prefix + row.segment)
            if self.on_step is not None:
                self.on_step(row.question, row.steps[-1])
            if self.cfg.prune and row.signal is Signal.CONCLUSION:
                # The stage is finished: only its conclusion stays. The prompt and the earlier
                # conclusions are unchanged, so only this step is encoded again, at its new place.
                earlier = [
                    ids
                    for s, ids in zip(row.steps[:-1], row.step_tokens[:-1], strict=True)
                    if s.signal is Signal.CONCLUSION
                ]
                ids = row.step_tokens[-1]
                fed = [int(Signal.CONCLUSION)] * (len(ids) - 1) + [-1] if self.at_input else None
                batch.shorten(i, row.prompt_len + sum(map(len, earlier)), ids, fed)

    def _decide(self, batch: Batch, which: list[int]) -> None:
        """The next signal of rows ``which``: a step under it, or the answer; its prefix, if any, is fed next."""
        rows = [batch.rows[i] for i in which]
        for row, (signal, conf) in zip(rows, self.source.choose(rows, self._signal_logits(batch, which)), strict=True):
            row.segment, row.confidence = [], conf
            if self.source.name == "none":  # free decoding: one segment, the whole output
                self._start_answer(row, "")
            elif (reason := self._stop(row, signal, conf)) is not None:
                self._start_answer(row, reason)
            else:
                row.signal = signal
            row.prefix = self.prefixes.get(row.signal, [])
            row.pending = list(row.prefix)

    def _signal_logits(self, batch: Batch, which: list[int]) -> torch.Tensor | None:
        """The student's own prediction for the head predictor: its signal head, or for a signal-as-text
        student its LM's log-likelihood of each signal's prefix (softmax: the normalised probability)."""
        if self.source.name != "predictor-head":
            return None
        if self.student.signal_head is not None:
            return self.student.signal_head(batch.hidden[which])
        return batch.score(which, [self.prefixes[s] for s in Signal]) if self.prefixes else None

    def _stop(self, row: Row, signal: Signal, conf: float) -> str | None:
        """Why the row answers now (the budgets, then the gate), or None: it writes a step under ``signal``."""
        if len(row.steps) >= self.cfg.max_steps:
            return "max_steps"
        if row.tokens >= self.cfg.max_tokens:
            return "max_tokens"
        if conf < self.cfg.tau:
            return "gate"
        return "response" if signal is Signal.RESPONSE else None

    def _start_answer(self, row: Row, reason: str) -> None:
        """The row writes its answer from here (under Response Generation when guided); the answer's
        budget counts from here."""
        row.answering, row.answer_from, row.stop_reason = True, row.tokens, reason
        row.signal = None if self.source.name == "none" else Signal.RESPONSE

    def _metadata(self, row: Row) -> dict:
        meta = {"context_tokens": len(row.context), "step_tokens": [len(t) for t in row.step_tokens]}
        if self.source.name.startswith("predictor"):
            meta["tau"] = self.cfg.tau
        if self.golden is not None and row.question.id in self.golden:
            meta["golden_signals"] = [s.key if s is not None else None for s in self.golden[row.question.id]]
        if (swap := getattr(self.source, "swaps", {}).get(row.question.id)) is not None:
            meta["swap"] = {"step": swap[0], "signal": swap[1].key, "golden": swap[2].key}
        if "choices" in row.question.metadata:
            meta["choices"] = row.question.metadata["choices"]
        return meta

    def output(self, row: Row) -> Decoded:
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
            metadata=self._metadata(row),
        )


_TOKEN_SETS: weakref.WeakKeyDictionary[Any, tuple[set[int], set[int]]] = weakref.WeakKeyDictionary()


def _token_sets(tok: Any) -> tuple[set[int], set[int]]:
    """The ids of tokens holding a newline, and of those holding the answer mark's last character; read
    once per tokenizer (the server makes a decoder per request setting)."""
    if tok not in _TOKEN_SETS:
        pieces = [tok.decode([i]) for i in range(len(tok))]
        newline = {i for i, piece in enumerate(pieces) if "\n" in piece}
        _TOKEN_SETS[tok] = newline, {i for i, piece in enumerate(pieces) if ANSWER_MARK[-1] in piece}
    return _TOKEN_SETS[tok]


def _prefixes(student: Student) -> dict[Signal, list[int]]:
    """Token ids of each signal's prefix for a signal-as-text student (none for the others), without its
    trailing space: in training's tokenisation the student's next word carries it (" Now")."""
    if student.signal_prefix is None:
        return {}
    tok = student.tokenizer
    return {
        s: tok.encode(student.signal_prefix.format(title=s.title).rstrip(), add_special_tokens=False) for s in Signal
    }


# -- signal sources, files, the stage -------------------------------------------------------------


def predictor_from_folder(path: str | Path, proposer: Student) -> GenerativePredictor:
    """The generative predictor trained with ``train.recipe=predictor``."""
    model, tokenizer, meta = load_student(path)
    query_line = meta.get("predictor_query", "Next signal:")
    student = Student(lm=model.base_lm(), tokenizer=tokenizer, prompt=proposer.prompt, add_bos=proposer.add_bos)

    def query(question: Question, steps: list[Step]) -> str:
        return proposer.prompt(question.text) + "".join(s.text + s.sep for s in steps) + query_line

    return GenerativePredictor(student, query)


def make_source(
    cfg: DecodeConfig,
    student: Student,
    golden: dict | None,
    train_traces: Path | None,
    predictor: str | Path | None,
    true: bool = False,
) -> SignalSource:
    """The signal source named by ``cfg.signal_source``, with what it needs or a clear error (``true``:
    random signals follow the training traces' true signals, as ``build.signal_source=true``)."""
    name = cfg.signal_source
    if name == "predictor-head":
        if student.signal_head is None and student.signal_prefix is None:
            raise InputError(
                f"{student.method}: this student has neither a signal head nor signal prefixes; "
                "choose another decode.signal_source"
            )
        return HeadPredictor()
    if name == "predictor-generative":
        if predictor is None:
            raise InputError(
                "decode.signal_source=predictor-generative needs --predictor DIR "
                "(a student trained with train.recipe=predictor)"
            )
        return predictor_from_folder(predictor, student)
    if name in ("golden", "golden-swap"):
        if golden is None:
            raise InputError(
                f"decode.signal_source={name} needs --golden TRACES.jsonl (labelled teacher traces of the questions)"
            )
        return GoldenSignals(golden) if name == "golden" else SwappedSignals(golden, cfg.seed)
    if name == "random":
        if train_traces is None:
            raise InputError("decode.signal_source=random needs --train-traces FILE (the labelled training traces)")
        return random_source(read_jsonl(train_traces, Trace), cfg.seed, true)
    return NoSignals()


def device_for(cfg: DecodeConfig) -> str:
    """The device decode.device names (auto: a GPU when there is one)."""
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def decode_file(
    cfg: DecodeConfig, student_dir: Path, questions: Path | Iterable[Question], output: Path, extras: dict[str, Any]
) -> dict:
    """Decode one questions file (or the questions given) with one student; returns counts for the manifest.

    Under ``accelerate launch`` every process decodes its share of the questions on its own device and
    the first merges them in input order; an interrupted run resumes (see :mod:`rscaffold.parallel`)."""
    w = parallel.world()
    group = parallel.Group(w)
    device = group.device if cfg.device == "auto" and group.device is not None else device_for(cfg)
    student = student_from_folder(student_dir, device, extras.get("prompt_template"))
    true = extras.get("signals") == "true"  # build.signal_source=true: golden and random signals are the true ones
    golden = golden_sequences(read_jsonl(extras["golden"], Trace), true) if extras.get("golden") else None
    source = None if student.follows_signals else NoSignals()
    source = source or make_source(cfg, student, golden, extras.get("train_traces"), extras.get("predictor"), true)
    decoder = Decoder(student, source, cfg, golden=golden)
    given = list(read_jsonl(questions, Question) if isinstance(questions, Path) else questions)
    settings = {"decode": cfg.model_dump(mode="json"), "extras": {k: str(v) for k, v in sorted(extras.items())}}
    key = parallel.part_key(student_dir, given, settings, w)
    desc = f"decode {student.method}" + (f" [process {w.rank + 1}/{w.size}]" if w.size > 1 else "")
    n = parallel.decode_sharded(given, output, key, lambda qs: runs.progress(decoder(qs), desc, len(qs)), group, w)
    out = {"student": student.method, "signal_source": source.name, "questions": n, "output": str(output)}
    return out | ({"process": w.rank, "processes": w.size} if w.size > 1 else {})


def golden_traces(cfg: Config, run_dir: Path, split: str) -> Path:
    """Labelled teacher traces of a test split (unfiltered: golden decoding needs every question),
    made once through the same generate, segment and label stages as the training traces."""
    out = runs.golden(run_dir, split)
    if out.exists():
        return out
    started = time.perf_counter()
    unfiltered = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"filter_wrong": False})})
    traces, segmented = out.with_suffix(".traces.jsonl"), out.with_suffix(".segmented.jsonl")
    generate.run_file(unfiltered, runs.questions(run_dir, split), traces)
    segment.run_file(cfg, traces, segmented)
    label.run_file(cfg, segmented, out)
    traces.unlink()
    segmented.unlink()
    runs.say(f"golden {split}: {time.perf_counter() - started:.1f}s -> {out}")
    return out


ORIGINAL = "original"
"""A variant's student that names the untrained ``model.base`` (the paper's Original row): decoded
freely with ``build.prompt_template``, once (under the first seed), trained by no stage."""


def _splits(cfg: Config, v: ExperimentVariant) -> list[str]:
    """The splits a variant decodes: the benchmark of ``run.benchmark`` when set, else testbed splits."""
    bench = cfg.run.benchmark
    if bench is not None:
        if bench.name not in SPECS or bench.name == "testbed":
            known = ", ".join(sorted(n for n in SPECS if n != "testbed"))
            raise InputError(f"run.benchmark.name: unknown benchmark {bench.name!r}; known: {known}")
        return [f"{bench.name}-{bench.split or SPECS[bench.name].default_split}"]
    return v.splits or cfg.experiment.splits


def _questions(cfg: Config, run_dir: Path, split: str, limit: int | None) -> Path:
    bench = cfg.run.benchmark
    if bench is None:
        questions = runs.require(runs.questions(run_dir, split), "testbed", run_dir)
    elif not (questions := runs.benchmark_questions(run_dir, split)).exists():
        given = load_questions(bench.name, bench.split, bench.path)
        write_jsonl(questions, itertools.islice(given, bench.limit))
    if not limit:
        return questions
    subset = runs.subset(run_dir, split, limit)
    if not subset.exists():
        write_jsonl(subset, itertools.islice(read_jsonl(questions, Question), limit))
    return subset


def _variant_config(cfg: DecodeConfig, v: ExperimentVariant, seed: int) -> DecodeConfig:
    update: dict[str, Any] = {"signal_source": v.source, "prune": v.prune, "seed": seed, **v.decode}
    if v.tau is not None:
        update["tau"] = v.tau
    return DecodeConfig.model_validate({**cfg.model_dump(), **update})


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The decode stage in a run folder: every variant of ``experiment.variants`` for every seed its
    student (and predictor) was trained for, on its splits (or on ``run.benchmark``), into
    ``decoded/``; a file already there is kept. The golden traces of the splits that golden variants
    decode are made first; every row decoded on such a split records the golden signals (evaluate's
    next-signal metrics compare against them). A benchmark has no teacher traces offline, so golden
    variants are left out there."""
    exp, bench = cfg.experiment, cfg.run.benchmark
    seeds = {s.name: s.seeds or exp.seeds for s in exp.students} | {ORIGINAL: exp.seeds[:1]}
    golden_sources = ("golden", "golden-swap")
    variants = [v for v in exp.variants if bench is None or v.source not in golden_sources]
    if len(variants) < len(exp.variants):
        runs.say(f"decode: golden variants left out on {bench.name} (no teacher traces of its questions)")
    for split in sorted({s for v in variants if v.source in golden_sources for s in _splits(cfg, v)}):
        parallel.on_first(lambda split=split: golden_traces(cfg, run_dir, split), None)
    written = 0
    for seed in exp.seeds:
        for v in variants:
            needs = [v.student] + ([v.predictor] if v.predictor else [])
            if any(seed not in seeds.get(name, exp.seeds) for name in needs):
                continue
            for split in _splits(cfg, v):
                out = runs.decoded(run_dir, runs.Decoding(v.student, seed, v.name, split))
                if out.exists():
                    continue
                golden = runs.golden(run_dir, split)  # where there are golden traces, every row records them
                extras = {
                    "golden": golden if golden.exists() else None,
                    "train_traces": runs.labelled(run_dir),
                    "predictor": runs.student_dir(run_dir, v.predictor, seed) if v.predictor else None,
                }
                if cfg.build.signal_source == "true":
                    extras["signals"] = "true"
                if v.student == ORIGINAL:
                    student, extras["prompt_template"] = Path(cfg.model.base), cfg.build.prompt_template
                else:
                    student = runs.require(runs.student_dir(run_dir, v.student, seed), "train", run_dir)
                started = time.perf_counter()
                questions = _questions(cfg, run_dir, split, v.limit)
                decode_file(_variant_config(cfg.decode, v, seed), student, questions, out, extras)
                runs.say(f"decode {out.stem}: {time.perf_counter() - started:.1f}s")
                written += 1
    return {"decoded": written}

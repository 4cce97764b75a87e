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

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from rscaffold.kvbatch import Batch, Row, Student
from rscaffold.schema import Decoded, InputError, Question, Step, Trace, read_jsonl, write_jsonl
from rscaffold.signal_sources import (
    GenerativePredictor,
    GoldenSignals,
    HeadPredictor,
    NoSignals,
    SignalSource,
    golden_sequences,
    random_source,
)
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
    students: list[str] = Field(["scaffold"], description="Run folder: the students/<name> folders to decode.")
    splits: list[str] = Field(["test_id"], description="Run folder: the testbed splits to decode.")
    device: str = Field("auto", description="auto (a GPU when there is one), cpu, cuda, ...")


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
        self.newline = {i for i in range(len(tok)) if "\n" in tok.decode([i])}
        self.guided = source.name != "none" and student.signal_bias is not None

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
            for row in self._advance(batch):
                finished[row.index] = self._output(row)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
        yield from (finished[i] for i in sorted(finished))

    def _refill(self, batch: Batch | None, pending: Iterator[tuple[int, Question]]) -> Batch | None:
        """Let new questions join as soon as a row is free."""
        free = self.cfg.batch_size - (len(batch.rows) if batch else 0)
        if free == 0:
            return batch
        rows = [self._row(i, q) for i, q in itertools.islice(pending, free)]
        if not rows:
            return batch
        if batch is None:
            batch, joined = Batch(self.student, rows), list(range(len(rows)))
        else:
            joined = batch.add(rows)
        self._decide(batch, joined)
        return batch

    def _row(self, index: int, q: Question) -> Row:
        return Row(q, self.student.encode(self.student.prompt(q.text)), index=index)

    def _advance(self, batch: Batch) -> list[Row]:
        """One token for every row; then finish answers, close steps and choose the next signals.
        Returns the rows that finished (and left the batch)."""
        tokens = _sample(self._logits(batch), self.cfg, self.gen)
        ends = [self._segment_end(row, tok) for row, tok in zip(batch.rows, tokens, strict=True)]
        done = [row for row, end in zip(batch.rows, ends, strict=True) if end == "answer"]
        if done:
            keep = [i for i, end in enumerate(ends) if end != "answer"]
            batch.keep(keep)
            tokens, ends = [tokens[i] for i in keep], [ends[i] for i in keep]
        if batch.rows:
            batch.step(tokens)
            closed = [i for i, end in enumerate(ends) if end == "step"]
            if closed:
                self._close_steps(batch, closed)
                self._decide(batch, closed)
        return done

    def _logits(self, batch: Batch) -> torch.Tensor:
        logits = self.student.lm.lm_head(batch.hidden)
        if self.guided:
            signals = torch.tensor([int(r.signal) for r in batch.rows], device=logits.device)
            logits = logits + self.student.signal_bias[signals].to(logits.dtype)
        return logits

    def _segment_end(self, row: Row, tok: int) -> str | None:
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

    def _end_without_answer(self, row: Row) -> str:
        text = self.student.tokenizer.decode(row.segment, skip_special_tokens=True)
        if text.strip():
            row.steps.append(Step(text=text, sep="", signal=row.signal, confidence=row.confidence))
        return "answer"

    def _close_steps(self, batch: Batch, closed: list[int]) -> None:
        for i in closed:
            row = batch.rows[i]
            text = self.student.tokenizer.decode(row.segment, skip_special_tokens=True).split(BOUNDARY)[0]
            row.steps.append(Step(text=text, sep=BOUNDARY, signal=row.signal, confidence=row.confidence))
            row.step_tokens.append(list(row.segment))
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
                batch.shorten(i, row.prompt_len + sum(map(len, earlier)), row.step_tokens[-1])

    def _decide(self, batch: Batch, which: list[int]) -> None:
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

    def _metadata(self, row: Row) -> dict:
        meta = {"context_tokens": len(row.context), "step_tokens": [len(t) for t in row.step_tokens]}
        if self.source.name.startswith("predictor"):
            meta["tau"] = self.cfg.tau
        if self.golden is not None and row.question.id in self.golden:
            meta["golden_signals"] = [s.key if s else None for s in self.golden[row.question.id]]
        if "choices" in row.question.metadata:
            meta["choices"] = row.question.metadata["choices"]
        return meta

    def _output(self, row: Row) -> Decoded:
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


def student_from_folder(path: str | Path, device: str | None = None) -> Student:
    """A trained student folder (``rscaffold train``) as decoding needs it."""
    from rscaffold.model import load_student

    model, tokenizer, meta = load_student(path, device)
    template = meta.get("prompt_template") or "{question}"
    return Student(
        lm=model.base_lm(),
        tokenizer=tokenizer,
        prompt=lambda question: template.format(question=question),
        signal_head=model.signal_head,
        signal_bias=model.signal_bias() if model.signal_embedding is not None else None,
        method=meta.get("recipe", Path(path).name),
        add_bos=bool(meta.get("add_bos", False)),
    )


def predictor_from_folder(path: str | Path, proposer: Student, constrained: bool) -> GenerativePredictor:
    """The generative predictor trained by ``rscaffold train --recipe predictor``."""
    from rscaffold.model import load_student

    model, tokenizer, meta = load_student(path)
    query_line = meta.get("predictor_query", "Next signal:")
    student = Student(lm=model.base_lm(), tokenizer=tokenizer, prompt=proposer.prompt, add_bos=proposer.add_bos)

    def query(question: Question, steps: list[Step]) -> str:
        return proposer.prompt(question.text) + "".join(s.text + s.sep for s in steps) + query_line

    return GenerativePredictor(student, query, constrained)


def make_source(
    cfg: DecodeConfig, student: Student, golden: dict | None, train_traces: Path | None, predictor: str | Path | None
) -> SignalSource:
    """The signal source named by ``cfg.signal_source``, with what it needs or a clear error."""
    name = cfg.signal_source
    if name == "predictor-head":
        if student.signal_head is None:
            raise InputError(f"{student.method}: this student has no signal head; choose another decode.signal_source")
        return HeadPredictor()
    if name == "predictor-generative":
        if predictor is None:
            raise InputError(
                "decode.signal_source=predictor-generative needs --predictor DIR (rscaffold train --recipe predictor)"
            )
        return predictor_from_folder(predictor, student, cfg.constrained)
    if name == "golden":
        if golden is None:
            raise InputError(
                "decode.signal_source=golden needs --golden TRACES.jsonl (labelled teacher traces of the questions)"
            )
        return GoldenSignals(golden)
    if name == "random":
        if train_traces is None:
            raise InputError("decode.signal_source=random needs --train-traces FILE (the labelled training traces)")
        return random_source(read_jsonl(train_traces, Trace), cfg.seed)
    return NoSignals()


def _device(cfg: DecodeConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def decode_file(cfg: DecodeConfig, student_dir: Path, questions: Path, output: Path, extras: dict[str, Any]) -> dict:
    """Decode one questions file with one student; returns counts for the manifest."""
    from tqdm import tqdm

    student = student_from_folder(student_dir, _device(cfg))
    golden = golden_sequences(read_jsonl(extras["golden"], Trace)) if extras.get("golden") else None
    source = NoSignals() if student.signal_bias is None else None
    source = source or make_source(cfg, student, golden, extras.get("train_traces"), extras.get("predictor"))
    decoder = Decoder(student, source, cfg, golden=golden)
    items = tqdm(read_jsonl(questions, Question), desc=f"decode {student.method}", disable=not sys.stderr.isatty())
    n = write_jsonl(output, decoder(items))
    return {"student": student.method, "signal_source": source.name, "questions": n, "output": str(output)}


def add_decode_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold decode`` (config options and KEY=VALUE overrides are added by the CLI)."""
    p.add_argument("--student", type=Path, help="trained student folder (rscaffold train)")
    p.add_argument("--input", type=Path, help="questions JSONL")
    p.add_argument("--output", type=Path, help="decoded JSONL")
    p.add_argument("--run-dir", help="run folder: decode students/<decode.students> on testbed/<decode.splits>")
    p.add_argument("--source", choices=SOURCES, help="signal source (decode.signal_source)")
    p.add_argument("--tau", type=float, help="gate threshold (decode.tau)")
    p.add_argument("--predictor", type=Path, help="generative predictor folder (rscaffold train --recipe predictor)")
    p.add_argument("--golden", type=Path, help="labelled teacher traces of the questions (golden signals)")
    p.add_argument("--train-traces", type=Path, help="labelled training traces (random signals)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The shortcut options as dotted config overrides."""
    return {"decode.signal_source": args.source, "decode.tau": args.tau}


def cmd_decode(args: argparse.Namespace, cfg: Any) -> int:
    """``rscaffold decode``: one student on one questions file, or every student and split of a run."""
    dcfg: DecodeConfig = cfg.decode
    extras = {"golden": args.golden, "train_traces": args.train_traces, "predictor": args.predictor}
    if args.run_dir is None:
        if args.student is None or args.input is None or args.output is None:
            raise InputError("decode: give --student DIR --input FILE --output FILE, or --run-dir DIR")
        print(json.dumps(decode_file(dcfg, args.student, args.input, args.output, extras)))
        return 0
    run = Path(args.run_dir)
    for name in dcfg.students:
        for split in dcfg.splits:
            print(json.dumps(decode_run_split(dcfg, run, name, split, extras)))
    return 0


def decode_run_split(cfg: DecodeConfig, run: Path, name: str, split: str, extras: dict[str, Any]) -> dict:
    """Decode students/<name> on testbed/<split>.jsonl of a run folder into decoded/."""
    student_dir, questions = run / "students" / name, run / "testbed" / f"{split}.jsonl"
    for path, stage in [(student_dir, "train"), (questions, "testbed")]:
        if not path.exists():
            raise InputError(f"{path}: not found; run `rscaffold {stage} --run-dir {run}` first")
    extras = {
        "golden": extras.get("golden") or _existing(run / "golden" / f"{split}.jsonl"),
        "train_traces": extras.get("train_traces") or _existing(run / "labelled.jsonl"),
        "predictor": extras.get("predictor") or _existing(run / "students" / "predictor"),
    }
    from rscaffold.model import SIGNAL_FILE

    source = cfg.signal_source if (student_dir / SIGNAL_FILE).exists() else "none"
    output = run / "decoded" / f"{name}__{source}__{split}.jsonl"
    return decode_file(cfg, student_dir, questions, output, extras)


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None

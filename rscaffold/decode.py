"""Stage 6: signal-guided decoding (METHOD.md section 5): its config and the ``rscaffold decode``
command. The loop itself is :class:`rscaffold.decoder.Decoder`; it is imported only when decoding
runs, so that reading a config does not load PyTorch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rscaffold.schema import InputError, Question, Step, Trace, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from rscaffold.kvbatch import Student
    from rscaffold.signal_sources import GenerativePredictor, SignalSource

BOUNDARY = "\n\n"
ANSWER_MARK = "###Answer:"
"""What starts the answer in the students' training text (``###Answer: \\boxed{...}``)."""
DEFAULT_ANSWER_BUDGET = 256
"""Answer tokens of a student whose training answers were not measured."""
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
    max_answer_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens of a guided answer (counted from its start, or from ###Answer: inside a step) before "
        "it is cut; None: the student's own, from its training answers (see answer_budget).",
    )
    max_tokens: int = Field(
        1024, ge=1, description="Tokens of thinking per question before the answer is forced (free decoding: all)."
    )
    batch_size: int = Field(8, ge=1, description="Questions decoded together.")
    temperature: float = Field(0.0, ge=0, description="0 is greedy; above 0 samples.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when sampling.")
    seed: int = Field(0, description="Seed of sampling and of random signals.")
    students: list[str] = Field(["scaffold"], description="Run folder: the students/<name> folders to decode.")
    splits: list[str] = Field(["test_id"], description="Run folder: the testbed splits to decode.")
    device: str = Field("auto", description="auto (a GPU when there is one), cpu, cuda, ...")


def student_from_folder(path: str | Path, device: str | None = None, prompt_template: str | None = None) -> Student:
    """A trained student folder (``rscaffold train``) as decoding needs it.

    A path without ``rscaffold_student.json`` (a base name such as ``smollm2``, a hub id, a plain
    Hugging Face folder) is the untrained base model, the paper's "Original" row: see :func:`base_student`.
    """
    from rscaffold.build import SIGNAL_TEXT
    from rscaffold.kvbatch import Student
    from rscaffold.model import META_FILE, load_student

    if not (Path(path) / META_FILE).is_file():
        return base_student(str(path), device, prompt_template)
    model, tokenizer, meta = load_student(path, device)
    template = meta.get("prompt_template") or "{question}"
    prefix = meta.get("signal_text", SIGNAL_TEXT) if meta.get("signal_as_text") else None
    return Student(
        lm=model.base_lm(),
        tokenizer=tokenizer,
        prompt=lambda question: template.format(question=question),
        signal_head=model.signal_head,
        signal_bias=model.signal_bias() if model.signal_embedding is not None else None,
        method=meta.get("recipe", Path(path).name),
        add_bos=bool(meta.get("add_bos", False)),
        signal_prefix=prefix,
        answer_budget=answer_budget(meta),
    )


def answer_budget(meta: dict[str, Any]) -> int:
    """A student's answer budget when ``decode.max_answer_tokens`` is None: 1.5 times the 99th
    percentile of its training answers' token lengths (``answer_tokens`` in rscaffold_student.json,
    written by training), at least 64; :data:`DEFAULT_ANSWER_BUDGET` when they were not measured."""
    p99 = meta.get("answer_tokens", {}).get("p99")
    return DEFAULT_ANSWER_BUDGET if p99 is None else max(64, math.ceil(1.5 * p99))


def base_student(name: str, device: str | None = None, prompt_template: str | None = None) -> Student:
    """An untrained base model (``model.base`` names: ``smollm2``, ``testbed``, a hub id or a folder) as
    decoding needs it: no signal layers, so it decodes freely (source none), with the students' prompt
    template (``build.prompt_template``; its default when None)."""
    from rscaffold.base_models import ModelConfig, load_base
    from rscaffold.build import BuildConfig
    from rscaffold.kvbatch import Student

    template = prompt_template or BuildConfig().prompt_template
    try:
        lm, tokenizer, info = load_base(ModelConfig(base=name))
    except InputError:
        raise
    except (OSError, ValueError) as e:  # no such folder or hub id, or tiny (a random model, no tokenizer)
        raise InputError(
            f"{name}: neither a trained student folder nor a base model ({type(e).__name__}: {e})"
        ) from None
    return Student(
        lm=lm.to(device or "cpu").eval(),
        tokenizer=tokenizer,
        prompt=lambda question: template.format(question=question),
        method="original",
        add_bos=bool(info.get("add_bos", False)),
    )


def predictor_from_folder(path: str | Path, proposer: Student) -> GenerativePredictor:
    """The generative predictor trained by ``rscaffold train --recipe predictor``."""
    from rscaffold.kvbatch import Student
    from rscaffold.model import load_student
    from rscaffold.signal_sources import GenerativePredictor

    model, tokenizer, meta = load_student(path)
    query_line = meta.get("predictor_query", "Next signal:")
    student = Student(lm=model.base_lm(), tokenizer=tokenizer, prompt=proposer.prompt, add_bos=proposer.add_bos)

    def query(question: Question, steps: list[Step]) -> str:
        return proposer.prompt(question.text) + "".join(s.text + s.sep for s in steps) + query_line

    return GenerativePredictor(student, query)


def make_source(
    cfg: DecodeConfig, student: Student, golden: dict | None, train_traces: Path | None, predictor: str | Path | None
) -> SignalSource:
    """The signal source named by ``cfg.signal_source``, with what it needs or a clear error."""
    from rscaffold.signal_sources import GoldenSignals, HeadPredictor, NoSignals, random_source

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
                "decode.signal_source=predictor-generative needs --predictor DIR (rscaffold train --recipe predictor)"
            )
        return predictor_from_folder(predictor, student)
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
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def decode_file(cfg: DecodeConfig, student_dir: Path, questions: Path, output: Path, extras: dict[str, Any]) -> dict:
    """Decode one questions file with one student; returns counts for the manifest."""
    from tqdm import tqdm

    from rscaffold.decoder import Decoder
    from rscaffold.signal_sources import NoSignals, golden_sequences

    student = student_from_folder(student_dir, _device(cfg), extras.get("prompt_template"))
    golden = golden_sequences(read_jsonl(extras["golden"], Trace)) if extras.get("golden") else None
    source = None if student.follows_signals else NoSignals()
    source = source or make_source(cfg, student, golden, extras.get("train_traces"), extras.get("predictor"))
    decoder = Decoder(student, source, cfg, golden=golden)
    items = tqdm(read_jsonl(questions, Question), desc=f"decode {student.method}", disable=not sys.stderr.isatty())
    n = write_jsonl(output, decoder(items))
    return {"student": student.method, "signal_source": source.name, "questions": n, "output": str(output)}


def add_decode_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold decode`` (config options and KEY=VALUE overrides are added by the CLI)."""
    p.add_argument(
        "--student",
        type=Path,
        help="trained student folder (rscaffold train); a base model (smollm2, a hub id, a folder without "
        "rscaffold_student.json) decodes untrained with build.prompt_template (the Original row)",
    )
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
    build_cfg = getattr(cfg, "build", None)  # an untrained base model is prompted like the students
    extras["prompt_template"] = build_cfg.prompt_template if build_cfg is not None else None
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
        "prompt_template": extras.get("prompt_template"),
    }
    source = cfg.signal_source if _follows_signals(student_dir) else "none"
    output = run / "decoded" / f"{name}__{source}__{split}.jsonl"
    return decode_file(cfg, student_dir, questions, output, extras)


def _follows_signals(student_dir: Path) -> bool:
    """:attr:`Student.follows_signals` from the folder's meta alone (decode_file decodes the others freely)."""
    from rscaffold.model import META_FILE

    meta_file = student_dir / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return bool(meta.get("signal_embedding") or meta.get("signal_as_text"))


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None

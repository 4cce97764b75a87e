"""The build stage: training sets from labelled traces (METHOD.md sections 3 and 4).

``rscaffold build --run-dir R`` reads ``R/labelled.jsonl`` and writes ``R/build/``:

- ``proposer.jsonl``: ``{id, prompt, segments: [{text, signal}]}``: the steps (each with its separator)
  and the answer step (Response Generation), the pairs ``(Q + A_1..A_t, signal_{t+1}) -> A_{t+1}`` of
  every ``t`` in one sequence; the loss falls on the step tokens only;
- ``predictor.jsonl``: ``{id, prompt, completion, signal}``: ``Q + A_1..A_t + "Next signal:"`` ->
  ``\\boxed{Signal Name}``, for the paper's generative predictor;
- ``cot.jsonl`` (question -> the teacher's own post-thinking answer, ``answer_text``: what CoT SFT learns
  from a real teacher), ``long.jsonl`` (question -> the whole trace as plain text, from exactly the
  traces of ``proposer.jsonl``), ``answer.jsonl`` (question -> final answer): the baselines, as
  ``{id, prompt, completion}``; ``oracle_cot.jsonl`` (question -> the equations-only solution computed
  from the testbed's hidden problem graph, which no teacher gives): a reference row, never CoT SFT;
- ``proposer_pruned.jsonl`` (only with ``build.pruned_contexts``): the proposer records plus, for every
  finished stage, a record whose context holds only the conclusions so far (what summaries-only decoding
  shows the student), so that the proposer also learns from pruned contexts;
- ``pretrain.jsonl`` (only with ``build.pretrain_questions > 0``): a generic corpus with no teacher
  traces and no signals, for a tiny from-scratch base model (METHOD.md section 7);
- ``stats.json``: counts and length statistics of every set.

Records are text, not tokens: the tokenizer belongs to the student (``rscaffold.tokenizer``).
"""

from __future__ import annotations

import json
import logging
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.base_models import base_tokenizer
from rscaffold.config import BuildConfig, Config, TestbedConfig
from rscaffold.schema import InputError, Question, Trace, atomic_writer, read_jsonl
from rscaffold.signals import TITLES, Signal

log = logging.getLogger(__name__)

"""The signal-as-text ablation writes this prefix before every step (and trains on it)."""
SETS = ("proposer", "predictor", "cot", "long", "answer", "oracle_cot")


def format_prompt(question: str, cfg: BuildConfig) -> str:
    """The student's prompt for a question (decode uses the same template, saved with the student)."""
    return cfg.prompt_template.format(question=question)


def step_signal(step: Any, cfg: BuildConfig) -> Signal | None:
    """The signal a step is trained with: its label (or true signal), the fallback, or None (drop)."""
    signal = step.true_signal if cfg.signal_source == "true" else step.signal
    if signal is None and cfg.unlabelled == "fallback":
        return Signal.parse(cfg.fallback_signal)
    return signal


def segments(trace: Trace, cfg: BuildConfig, counts: Counter[str]) -> list[dict[str, Any]] | None:
    """The steps as ``{text, signal}``, each thinking step ending in its blank-line separator; the
    answer step last with Response Generation. None when the trace has no steps or must be dropped."""
    if not trace.steps:
        counts["dropped_no_steps"] += 1
        return None
    out = []
    *thinking, answer = trace.steps
    for step in thinking:
        signal = step_signal(step, cfg)
        counts["steps_unlabelled"] += step.signal is None
        if signal is None:
            counts["dropped_unlabelled"] += 1
            return None
        out.append({"text": step.text + (step.sep or "\n\n"), "signal": int(signal)})
    out.append({"text": answer.text, "signal": int(Signal.RESPONSE)})
    return out


def proposer_record(trace: Trace, segs: list[dict[str, Any]], cfg: BuildConfig) -> dict[str, Any]:
    return {"id": trace.question_id, "prompt": format_prompt(trace.question, cfg), "segments": segs}


def predictor_records(record: dict[str, Any], cfg: BuildConfig) -> Iterator[dict[str, Any]]:
    """One pair per step: the context before it -> ``\\boxed{name of its signal}``."""
    context = record["prompt"]
    for t, seg in enumerate(record["segments"]):
        title = TITLES[Signal(seg["signal"])]
        yield {
            "id": f"{record['id']}#{t}",
            "prompt": context + cfg.predictor_query,
            "completion": f"\\boxed{{{title}}}",
            "signal": seg["signal"],
        }
        context += seg["text"]


def baseline_records(trace: Trace, record: dict[str, Any], counts: Counter[str]) -> dict[str, dict | None]:
    """CoT SFT, long-thinking SFT, answer-only SFT and oracle CoT pairs for one trace (None where data is
    missing). CoT SFT learns from the teacher's post-thinking answer, as it would from a real teacher."""
    pair = {"id": record["id"], "prompt": record["prompt"]}
    oracle = trace.metadata.get("cot_solution")
    answer = trace.final_answer or trace.gold
    written = record["segments"][-1]["text"]  # the answer step: the teacher's text after the thinking
    counts["answer_missing"] += answer is None
    return {
        "cot": {**pair, "completion": written} if written.strip() else None,
        "long": {**pair, "completion": "".join(s["text"] for s in record["segments"])},
        "answer": {**pair, "completion": f"###Answer: \\boxed{{{answer}}}"} if answer is not None else None,
        "oracle_cot": {**pair, "completion": oracle} if oracle else None,
    }


def pruned_records(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per stage after the first: the context is the prompt and the conclusions of the
    finished stages (as summaries-only decoding keeps it, METHOD.md section 5), the segments are the
    next stage's steps up to and including its conclusion, or up to the answer."""
    out, conclusions, stage = [], "", []
    segs = record["segments"]
    for i, seg in enumerate(segs):
        stage.append(seg)
        closes = seg["signal"] == int(Signal.CONCLUSION) or i == len(segs) - 1
        if not closes:
            continue
        if conclusions:
            out.append({"id": f"{record['id']}#p{len(out) + 1}", "prompt": record["prompt"] + conclusions,
                        "segments": stage})  # fmt: skip
        if seg["signal"] == int(Signal.CONCLUSION):
            conclusions += seg["text"]
        stage = []
    return out


def build_sets(traces: Iterable[Trace], cfg: BuildConfig) -> tuple[dict[str, list[dict]], Counter[str]]:
    """All training sets from labelled traces, and counts of what was kept and dropped."""
    sets: dict[str, list[dict]] = {name: [] for name in SETS}
    counts: Counter[str] = Counter()
    for trace in traces:
        counts["traces"] += 1
        segs = segments(trace, cfg, counts)
        if segs is None:
            continue
        record = proposer_record(trace, segs, cfg)
        sets["proposer"].append(record)
        sets["predictor"].extend(predictor_records(record, cfg))
        if cfg.pruned_contexts:
            sets.setdefault("proposer_pruned", []).extend([record, *pruned_records(record)])
        for name, pair in baseline_records(trace, record, counts).items():
            if pair is not None:
                sets[name].append(pair)
    return sets, counts


def _lengths(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(values), 1),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "max": ordered[-1],
    }


def set_stats(name: str, records: list[dict]) -> dict[str, Any]:
    """Counts and lengths (characters of prompt and target) of one set; token counts depend on the
    student's tokenizer and are logged by ``rscaffold train``."""
    if name.startswith("proposer"):
        targets = ["".join(s["text"] for s in r["segments"]) for r in records]
        signals = Counter(TITLES[Signal(s["signal"])] for r in records for s in r["segments"])
        extra = {"steps": sum(len(r["segments"]) for r in records), "signals": dict(signals)}
    else:
        targets = [r["completion"] for r in records]
        extra = {}
    return {
        "records": len(records),
        "prompt_chars": _lengths([len(r["prompt"]) for r in records]),
        "target_chars": _lengths([len(t) for t in targets]),
        **extra,
    }


def write_sets(out_dir: Path, sets: dict[str, list[dict]], summary: dict[str, Any]) -> dict[str, Any]:
    """Write one JSONL per set and ``stats.json`` (each file atomically)."""
    stats = {**summary, "sets": {name: set_stats(name, records) for name, records in sets.items()}}
    for name, records in sets.items():
        with atomic_writer(out_dir / f"{name}.jsonl") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with atomic_writer(out_dir / "stats.json") as f:
        json.dump(stats, f, indent=2)
    return stats


LOOKUP_FORMATS = {
    "N =": "{n} = {v}",
    "N has": "{n} has {v}",
    "Here N has": "Here {n} has {v}",
    "and N has": "Here {m} has {w} and {n} has {v}",
}
"""How the base corpus states a given value, and how the look-up probe asks for it (the text up to the
value): every format a recipe writes (CoT ``N = 19``, the teacher's ``N has 19``, ``Here N has 19``,
``Here M has 5 and N has 19``), equally often, so that the base favours no recipe (METHOD.md section 8)."""


def pretrain_records(questions: list[Question], drills: int, seed: int) -> list[dict[str, str]]:
    """A generic corpus with no traces and no signals (METHOD.md sections 7 and 8), for a tiny base
    model that can read facts before it sees any trace:

    - each question text followed by look-ups of all its given facts, in random order, each in a
      format of :data:`LOOKUP_FORMATS` drawn uniformly (``J = 10``, ``J has 10``, ``Here J has 10``,
      ``Here M has 2 and J has 10``), then a few expressions over them, written bare
      (``J + 8 = 10 + 8 = 18``) or after restating their operands (``Here J has 10 and M has 2, so
      J * M = 10 * 2 = 20``): reading a named value out of a text in any recipe's wording and
      computing with it, dense enough that a 1M-parameter model learns it in minutes;
    - arithmetic drills over the value range.

    The expressions are random, not the question's relations, and no derived quantity is ever
    stated: how the wording maps to an operation is left to the fine-tunes.
    """
    rng = random.Random(f"rscaffold-pretrain:{seed}")
    docs = []
    for q in questions:
        given = [(d["name"], d["value"]) for d in q.metadata["quantities"] if d["op"] == "given"]
        if not given:
            continue
        order = rng.sample(given, len(given))
        lines = [_lookup(rng, fact, order[i + 1 :]) for i, fact in enumerate(order)]
        lines += [_expression(rng, given) for _ in range(rng.randint(1, 3))]
        docs.append(q.text + "\n" + "\n".join(lines))
    for _ in range(drills):
        docs.append("\n".join(_drill(rng) for _ in range(8)))
    rng.shuffle(docs)
    return [{"id": f"pretrain-{i:06d}", "prompt": "", "completion": doc} for i, doc in enumerate(docs)]


def _lookup(rng: random.Random, fact: tuple[str, int], unstated: list[tuple[str, int]]) -> str:
    """One look-up of ``fact`` in a random format. The two-fact format's other fact is one not stated
    yet in the document: were it the previous line's, copying that line's value would be right in
    this format alone, and the base would learn a copying habit for one format only."""
    formats = list(LOOKUP_FORMATS.values())
    template = rng.choice(formats if unstated else formats[:-1])
    m, w = rng.choice(unstated) if unstated else ("", 0)
    return template.format(n=fact[0], v=fact[1], m=m, w=w)


def _expression(rng: random.Random, given: list[tuple[str, int]]) -> str:
    """``J + 8 = 10 + 8 = 18``, or the same after restating its operands in a look-up format drawn
    uniformly (``Here J has 10 and M has 2, so J * M = 10 * 2 = 20``, ``J = 10 and M = 2, so ...``), over
    the given facts (results stay >= 0). Every format restates equally often, so none is more often
    than the others a repeat of a value already written."""
    (x, a), op = rng.choice(given), rng.choice("+-*/")
    named = len(given) > 1 and rng.random() < 0.5
    if named:
        y, b = rng.choice([g for g in given if g[0] != x])
    else:
        b = rng.randint(1, 9 if op in "+-" else 4)
        y = str(b)
    if (op == "-" and b > a) or (op == "/" and (b == 0 or a % b)):
        op = "+"
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a // max(b, 1)}[op]
    equation = f"{x} {op} {y} = {a} {op} {b} = {value}"
    if rng.random() < 0.5:
        return equation
    single = [t for t in LOOKUP_FORMATS.values() if "{m}" not in t]
    template = rng.choice(single)
    restated = template.format(n=x, v=a)
    if named:
        restated += " and " + template.removeprefix("Here ").format(n=y, v=b)
    return f"{restated}, so {equation}"


def _drill(rng: random.Random) -> str:
    a, b = rng.randint(0, 19), rng.randint(1, 9)
    op = rng.choice("+-*/")
    if op == "-":
        a = max(a, b)
    if op == "/":
        a = a - a % b
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    return f"{a} {op} {b} = {value}"


def pretrain_questions(testbed_cfg: TestbedConfig, count: int, seed: int, exclude: set[str]) -> list[Question]:
    """Fresh testbed training questions (another seed) whose texts are not in ``exclude``."""
    from rscaffold.testbed.problems import make_splits

    sized = testbed_cfg.model_copy(
        update={"train": count, "test_id": 0, "test_ood": 0, "test_surface": 0, "perturbed_groups": 0}
    )
    return [q for q in make_splits(sized, seed)["train"] if q.text not in exclude]


def _test_texts(run_dir: Path | None) -> set[str]:
    if run_dir is None or not (run_dir / "testbed").is_dir():
        return set()
    paths = sorted((run_dir / "testbed").glob("test_*.jsonl"))
    return {q.text for p in paths for q in read_jsonl(p, Question)}


def answer_texts(records: list[dict]) -> list[str]:
    """The answer each record teaches: a proposer record's last step (Response Generation), a pair's completion."""
    return [r["segments"][-1]["text"] if "segments" in r else r["completion"] for r in records]


def answer_tokens(texts: list[str], tokenizer: Any) -> dict[str, int]:
    """Token lengths (eos included) of training answers, as p50/p95/p99/max: decode's answer budget
    (``decode.max_answer_tokens``) must cover them."""
    lengths = sorted(len(tokenizer.encode(t, add_special_tokens=False)) + 1 for t in texts)
    if not lengths:
        return {}
    at = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": lengths[-1]}


def build_folder(
    inp: Path,
    out_dir: Path,
    cfg: BuildConfig,
    testbed_cfg: TestbedConfig | None = None,
    seed: int = 0,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Read labelled traces, write every training set and ``stats.json`` into ``out_dir``. With the base
    model's ``tokenizer``, the answers' token lengths are measured too (``stats.json``: answer_tokens)."""
    Signal.parse(cfg.fallback_signal)  # a bad name fails before any work
    sets, counts = build_sets(read_jsonl(inp, Trace), cfg)
    if not sets["proposer"]:
        raise InputError(f"{inp}: no trace with steps survived (counts: {dict(counts)})")
    if cfg.pretrain_questions and testbed_cfg is not None:
        exclude = _test_texts(out_dir.parent)
        questions = pretrain_questions(testbed_cfg, cfg.pretrain_questions, seed + cfg.pretrain_seed, exclude)
        sets["pretrain"] = pretrain_records(questions, cfg.pretrain_drills, seed + cfg.pretrain_seed)
    layout = {"prompt_template": cfg.prompt_template, "predictor_query": cfg.predictor_query}
    measured = (
        {"answer_tokens": answer_tokens(answer_texts(sets["proposer"]), tokenizer)} if tokenizer is not None else {}
    )
    if measured:
        log.info("build: answer tokens %s (decode.max_answer_tokens must cover p99)", measured["answer_tokens"])
    return write_sets(out_dir, sets, {"input": str(inp), **layout, **counts, **measured})


def run_file(cfg: Config, inp: Path, out: Path) -> dict[str, Any]:
    """Every training set of the labelled traces in ``inp`` into the folder ``out``, and the answers'
    token lengths under the base model's tokenizer."""
    if not inp.exists():
        raise InputError(f"{inp}: not found")
    return build_folder(inp, out, cfg.build, cfg.testbed, cfg.run.seed, base_tokenizer(cfg.model))


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The build stage in a run folder: ``labelled.jsonl`` -> ``build/``."""
    inp = runs.require(runs.labelled(run_dir), "label", run_dir)
    return run_file(cfg, inp, runs.build_dir(run_dir))

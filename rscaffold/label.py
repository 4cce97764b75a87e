"""Stage 3: give each step one of the seven signals (METHOD.md section 3, "Label").

The labelling policy, in order:

1. **keywords** (stage 1): the lexicon's keyword that opens the step (``labelled_by="keyword"``,
   confidence 1.0: a table look-up is certain of what it read, not of the role);
2. **judge** (stage 2, optional): an LLM judge (:mod:`rscaffold.judge`) labels the steps it is
   configured to see; its labels below ``judge_min_confidence`` are dropped again;
3. **learned labeller** ([ours], :mod:`rscaffold.labeller`): labels the steps still unlabelled when its
   probability reaches ``learned_min_confidence``, and overrules a keyword label it disagrees with when
   its probability reaches ``learned_overrule`` (the role the paper gives its judge).

The answer step keeps Response Generation (``labelled_by="structure"``). Every step records how it
was labelled and with what confidence; steps no stage labels keep ``signal = None``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rscaffold.schema import Step, Trace, read_jsonl, write_jsonl
from rscaffold.signals import LEXICONS, Lexicon, Signal, load_lexicon

JudgeFn = Callable[[Iterable[Trace]], Iterable[Trace]]
"""A stage-2 judge bound to its config: traces in, the same traces with judge labels out."""


class LabelConfig(BaseModel):
    """The labelling policy: keywords, then the judge and/or the learned labeller."""

    model_config = ConfigDict(extra="forbid")

    lexicon: str = Field("paper", description="Stage-1 keyword lexicon: paper (the paper's table), extended, or a TSV.")
    judge: bool = Field(False, description="Call the stage-2 LLM judge (config section `judge`) after the keywords.")
    judge_min_confidence: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Judge labels reported below this confidence are dropped (the stage-1 label returns).",
    )
    learned: str | None = Field(
        "default", description="Learned labeller: default (the shipped one), a folder, or null for none."
    )
    learned_min_confidence: float = Field(
        0.0, ge=0, le=1, description="The learned labeller labels an unlabelled step only at or above this probability."
    )
    learned_overrule: float | None = Field(
        0.9,
        ge=0,
        le=1,
        description="The learned labeller replaces a keyword label it disagrees with at or above this probability; "
        "null: never.",
    )

    @field_validator("lexicon")
    @classmethod
    def _known_lexicon(cls, value: str) -> str:
        if value not in LEXICONS and not Path(value).is_file():
            raise ValueError(f"expected one of {', '.join(LEXICONS)} or an existing TSV file, got {value!r}")
        return value

    @field_validator("learned")
    @classmethod
    def _known_labeller(cls, value: str | None) -> str | None:
        if value in (None, "none", "null", ""):
            return None
        if value != "default" and not (Path(value) / "labeller.json").is_file():
            raise ValueError(f"expected default, null or a folder with labeller.json, got {value!r}")
        return value


# ------------------------------------------------------------------ stage 1


def label_step(step: Step, lexicon: Lexicon) -> Step:
    """Stage-1 label of one thinking step: the keyword's signal, or none."""
    hit = lexicon.match(step.text)
    return Step(
        text=step.text,
        sep=step.sep,
        signal=hit[0] if hit else None,
        labelled_by="keyword" if hit else None,
        confidence=1.0 if hit else None,
        true_signal=step.true_signal,
    )


def _answer(step: Step) -> Step:
    """The answer step is Response Generation by structure: certain (confidence 1.0)."""
    return step if step.confidence is not None else step.model_copy(update={"confidence": 1.0})


def label_trace(trace: Trace, lexicon: Lexicon) -> Trace:
    """Label every thinking step by keyword; the answer step keeps its signal (and gets confidence 1.0)."""
    steps = [_answer(s) if s.signal is Signal.RESPONSE else label_step(s, lexicon) for s in trace.steps]
    return trace.model_copy(update={"steps": steps})


def run(traces: Iterable[Trace], lexicon: Lexicon) -> Iterator[Trace]:
    """Label a stream of traces by keyword only (stage 1)."""
    for trace in traces:
        yield label_trace(trace, lexicon)


# ------------------------------------------------------------------ stages 2 and 3


def make_judge(judge_cfg: object, report: dict[str, Any] | None = None) -> JudgeFn:
    """The project's LLM judge bound to its config (imported only when a judge is asked for);
    ``report`` receives the judge's own summary once the stream is exhausted."""
    try:
        from rscaffold.judge import judge_traces
    except ImportError as e:
        raise RuntimeError(f"label.judge is on but the judge is unavailable: {e}") from e
    return lambda traces: judge_traces(traces, judge_cfg, report)


def _restore_unsure(trace: Trace, before: Trace, threshold: float) -> Trace:
    """Undo the judge labels whose reported confidence is below ``threshold``: the step gets its
    stage-1 label back. A judge label without a confidence (the judge gave none) is kept."""
    steps = [
        old if new.labelled_by == "judge" and new.confidence is not None and new.confidence < threshold else new
        for new, old in zip(trace.steps, before.steps, strict=True)
    ]
    return trace.model_copy(update={"steps": steps})


def _learned_label(step: Step, signal: Signal, p: float, cfg: LabelConfig, counts: Counter[str]) -> Step:
    """Apply the learned labeller's verdict on one step according to the policy."""
    if step.signal is None and p >= cfg.learned_min_confidence:
        return step.model_copy(update={"signal": signal, "labelled_by": "learned", "confidence": p})
    overrule = cfg.learned_overrule
    if step.labelled_by == "keyword" and signal is not step.signal and overrule is not None and p >= overrule:
        counts["overruled_keyword"] += 1
        return step.model_copy(update={"signal": signal, "labelled_by": "learned", "confidence": p})
    return step


def apply_learned(trace: Trace, learned, cfg: LabelConfig, counts: Counter[str]) -> Trace:
    """Stage 3 on one trace: one batched prediction for all the steps the policy may change."""
    wanted = [
        i
        for i, s in enumerate(trace.steps)
        if s.signal is None or (s.labelled_by == "keyword" and cfg.learned_overrule is not None)
    ]
    steps = list(trace.steps)
    for i, (signal, p) in zip(wanted, learned.predict([steps[i].text for i in wanted]), strict=True):
        steps[i] = _learned_label(steps[i], signal, p, cfg, counts)
    return trace.model_copy(update={"steps": steps})


def run_policy(
    traces: Iterable[Trace],
    cfg: LabelConfig,
    judge: JudgeFn | None = None,
    learned=None,
    counts: Counter[str] | None = None,
) -> Iterator[Trace]:
    """Label a stream of traces by the policy of ``cfg``; ``counts`` receives steps per ``labelled_by``.

    ``judge`` is required when ``cfg.judge`` is on (see :func:`make_judge`); ``learned`` defaults to
    the labeller named by ``cfg.learned``. Traces are handled one at a time (memory stays flat).
    """
    from rscaffold.labeller import LearnedLabeller

    counts = Counter() if counts is None else counts
    if cfg.judge and judge is None:
        raise ValueError("label.judge is on: pass the judge (label.make_judge(cfg.judge))")
    if learned is None and cfg.learned is not None:
        learned = LearnedLabeller.load(cfg.learned)
    stage1 = run(traces, load_lexicon(cfg.lexicon))
    stream = _judged(stage1, judge, cfg.judge_min_confidence) if cfg.judge else stage1
    for trace in stream:
        if learned is not None:
            trace = apply_learned(trace, learned, cfg, counts)
        counts.update(s.labelled_by or "none" for s in trace.steps if s.signal is not Signal.RESPONSE)
        yield trace


def _judged(traces: Iterable[Trace], judge: JudgeFn, threshold: float) -> Iterator[Trace]:
    """The judge's stream, with each trace's unsure judge labels undone against its stage-1 labels."""
    kept: dict[int, Trace] = {}

    def remember(stream: Iterable[Trace]) -> Iterator[Trace]:
        for n, trace in enumerate(stream):
            kept[n] = trace
            yield trace

    for n, trace in enumerate(judge(remember(traces))):
        before = kept.pop(n)
        yield _restore_unsure(trace, before, threshold) if threshold > 0 else trace


# ------------------------------------------------------------------ command wiring

POLICIES = {
    "keywords": {"label.judge": "false", "label.learned": "null"},
    "learned": {"label.judge": "false"},
    "judge": {"label.judge": "true", "label.learned": "null"},
    "judge+learned": {"label.judge": "true"},
}
"""``rscaffold label --policy P``: shortcuts for the policy's switches (config overrides)."""


def add_label_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``rscaffold label`` beyond the input/output/config ones."""
    p.add_argument("--lexicon", help=f"keyword lexicon: {', '.join(LEXICONS)} or a TSV path (label.lexicon)")
    p.add_argument("--learned", metavar="MODEL", help="learned labeller: default, a folder, or none (label.learned)")
    p.add_argument("--policy", choices=sorted(POLICIES), help="which stages label: keywords, then judge and/or learned")


def label_overrides(args: argparse.Namespace) -> dict[str, str]:
    """Dotted config overrides from ``rscaffold label``'s options (later ones win)."""
    out = dict(POLICIES[args.policy]) if getattr(args, "policy", None) else {}
    if getattr(args, "lexicon", None):
        out["label.lexicon"] = args.lexicon
    if getattr(args, "learned", None):
        out["label.learned"] = "null" if args.learned == "none" else args.learned
    return out


def run_stage(cfg: LabelConfig, inp: Path, out: Path, judge_cfg: object = None, progress=None) -> dict[str, Any]:
    """The label stage from file to file; returns the summary a run's manifest records."""
    counts: Counter[str] = Counter()
    judge_report: dict[str, Any] = {}
    judge = make_judge(judge_cfg, judge_report) if cfg.judge else None
    traces = read_jsonl(inp, Trace)
    n = write_jsonl(out, run_policy(progress(traces, "label") if progress else traces, cfg, judge, counts=counts))
    lexicon = load_lexicon(cfg.lexicon)
    steps = sum(v for k, v in counts.items() if k != "overruled_keyword")
    return {
        "traces": n,
        "lexicon": lexicon.name,
        "lexicon_version": lexicon.version,
        "learned": cfg.learned,
        "label_coverage": round(1 - counts["none"] / steps, 4) if steps else 0.0,
        "labelled_by": dict(counts),
    } | ({"judge": judge_report} if cfg.judge else {})

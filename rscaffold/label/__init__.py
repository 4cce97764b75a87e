"""The label stage: give each step one of the seven signals (METHOD.md section 3, "Label").

The labelling policy, in order:

1. **keywords** (stage 1): the lexicon's keyword that opens the step (``labelled_by="keyword"``,
   confidence 1.0: a table look-up is certain of what it read, not of the role);
2. **judge** (stage 2, optional): an LLM judge (:mod:`rscaffold.label.judge`) labels the steps it is
   configured to see; its labels below ``judge_min_confidence`` are dropped again;
3. **learned labeller** ([ours], :mod:`rscaffold.label.learned`): labels the steps still unlabelled when its
   probability reaches ``learned_min_confidence``, and overrules a keyword label it disagrees with when
   its probability reaches ``learned_overrule`` (the role the paper gives its judge). The shipped one reads
   each step with its context (the previous step and the next one's opening), and a trace is labelled left
   to right: the previous step's signal is the one the policy has given it.

The answer step keeps Response Generation (``labelled_by="structure"``). Every step records how it
was labelled and with what confidence; steps no stage labels keep ``signal = None``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config, JudgeConfig, LabelConfig
from rscaffold.runs import progress
from rscaffold.schema import InputError, Step, Trace, read_jsonl, write_jsonl
from rscaffold.signals import Lexicon, LexiconError, Signal, load_lexicon

JudgeFn = Callable[[Iterable[Trace]], Iterable[Trace]]
"""A stage-2 judge bound to its config: traces in, the same traces with judge labels out."""


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


def label_keywords(traces: Iterable[Trace], lexicon: Lexicon) -> Iterator[Trace]:
    """Label a stream of traces by keyword only (stage 1)."""
    for trace in traces:
        yield label_trace(trace, lexicon)


# ------------------------------------------------------------------ stages 2 and 3


def make_judge(judge_cfg: JudgeConfig, report: dict[str, Any] | None = None) -> JudgeFn:
    """The project's LLM judge bound to its config (imported only when a judge is asked for);
    ``report`` receives the judge's own summary once the stream is exhausted."""
    try:
        from rscaffold.label.judge import judge_traces
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


def _wanted(step: Step, cfg: LabelConfig) -> bool:
    """Whether the policy may change this step's label (it is unlabelled, or a keyword label it may overrule)."""
    return step.signal is None or (step.labelled_by == "keyword" and cfg.learned_overrule is not None)


def apply_learned(trace: Trace, learned, cfg: LabelConfig, counts: Counter[str]) -> Trace:
    """The policy on one trace, left to right: the labeller reads all thinking steps at once, and each step
    it may label with the signal its previous thinking step has by then (keyword, judge or learned)."""
    steps = list(trace.steps)
    thinking = [i for i, s in enumerate(steps) if s.signal is not Signal.RESPONSE]
    reader = learned.read([steps[i].text for i in thinking])
    previous: Signal | None = None
    for k, i in enumerate(thinking):
        if _wanted(steps[i], cfg):
            steps[i] = _learned_label(steps[i], *reader.predict(k, previous), cfg, counts)
        previous = steps[i].signal
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
    from rscaffold.label.learned import LearnedLabeller

    counts = Counter() if counts is None else counts
    if cfg.judge and judge is None:
        raise ValueError("label.judge is on: pass the judge (label.make_judge(cfg.judge))")
    if learned is None and cfg.learned is not None:
        learned = LearnedLabeller.load(cfg.learned)
    stage1 = label_keywords(traces, load_lexicon(cfg.lexicon))
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
    "keywords": {"label.judge": False, "label.learned": None},
    "learned": {"label.judge": False},
    "judge": {"label.judge": True, "label.learned": None},
    "judge+learned": {"label.judge": True},
}
"""``rscaffold label --policy P``: shortcuts for the policy's switches (config overrides)."""


def require_steps(traces: Iterable[Trace], path: Path) -> Iterator[Trace]:
    """The traces of ``path``, unchanged; an InputError at the end if none has steps (an unsegmented
    file would be labelled with coverage 0 and nothing to train on). It fails inside the stream, so
    the output file is never written."""
    steps = False
    for trace in traces:
        steps = steps or bool(trace.steps)
        yield trace
    if not steps:
        raise InputError(f"{path}: no trace has steps; run `rscaffold segment --input {path} --output SEGMENTED` first")


def run_file(cfg: Config, inp: Path, out: Path) -> dict[str, Any]:
    """The label stage from file to file; returns the summary a run's manifest records."""
    counts: Counter[str] = Counter()
    judge_report: dict[str, Any] = {}
    try:
        lexicon = load_lexicon(cfg.label.lexicon)  # checked by the config, unless it was built unchecked (model_copy)
    except LexiconError as e:
        raise InputError(str(e)) from None
    judge = make_judge(cfg.judge, judge_report) if cfg.label.judge else None
    traces = require_steps(progress(read_jsonl(inp, Trace), "label"), inp)
    n = write_jsonl(out, run_policy(traces, cfg.label, judge, counts=counts))
    steps = sum(v for k, v in counts.items() if k != "overruled_keyword")
    return {
        "traces": n,
        "lexicon": lexicon.name,
        "lexicon_version": lexicon.version,
        "learned": cfg.label.learned,
        "label_coverage": round(1 - counts["none"] / steps, 4) if steps else 0.0,
        "labelled_by": dict(counts),
    } | ({"judge": judge_report} if cfg.label.judge else {})


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The label stage in a run folder: ``segmented.jsonl`` -> ``labelled.jsonl``."""
    inp = runs.require(runs.segmented(run_dir), "segment", run_dir)
    return run_file(cfg, inp, runs.labelled(run_dir))

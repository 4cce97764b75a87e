"""Stage 2 of labelling: an LLM judge names the signal of each thinking step (METHOD.md section 3).

For every thinking step the judge sees the question, the thinking before the step and the step, with
the six non-final signals and their definitions, and answers ``\\boxed{name}``. Answers are parsed
strictly (case, spacing, ``&`` and key variants mapped; anything else is invalid and asked again).
The judge overrules a keyword label it disagrees with and labels the steps without a keyword; the
report gives keyword-vs-judge agreement per signal (the paper's 87%). Requests go through the same
client and cache as generation (kind ``judge``).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rscaffold.answers import last_boxed
from rscaffold.config import JudgeConfig
from rscaffold.prompts import DEFINITIONS, JUDGE_PROMPTS, JUDGED
from rscaffold.schema import InputError, Step, Trace
from rscaffold.signals import TITLES, Signal
from rscaffold.teachers import split_reasoning
from rscaffold.teachers.ledger import Ledger
from rscaffold.teachers.openai_compat import ApiClient, RequestFailed, iterate_async

_STEP = re.compile(r"Step to label:\n<<<\n(.*?)\n>>>\n\nChoose", re.DOTALL)


def judge_messages(version: str, question: str, context: str, step: str) -> list[dict[str, str]]:
    """The judge task for one step: question, preceding thinking, the step, six signals with definitions."""
    signals = "\n".join(f"- {TITLES[s]}: {DEFINITIONS[s]}" for s in JUDGED)
    text = JUDGE_PROMPTS[version].format(question=question, context=context or "(none)", step=step, signals=signals)
    return [{"role": "user", "content": text}]


def step_of_prompt(text: str) -> str | None:
    """The step a judge prompt asks about (the served scripted judge reads it back)."""
    m = _STEP.search(text)
    return m.group(1) if m else None


def _variants() -> dict[str, Signal]:
    out: dict[str, Signal] = {}
    for s in JUDGED:
        title = _norm(TITLES[s])
        out.update({title: s, s.key: s, title.split()[0]: s})
    out.update(examples=Signal.EXAMPLE, illustration=Signal.EXAMPLE, personal=Signal.OPINION, analysis=Signal.REASONING)
    out.update(summary=Signal.CONCLUSION, concession=Signal.CONTRAST, elaboration=Signal.ADDITION)
    return out


def _norm(text: str) -> str:
    text = re.sub(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}", r"\1", text).replace("&", " and ")
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


_VARIANTS = _variants()


def parse_judge_answer(text: str) -> Signal | None:
    """The signal of the last ``\\boxed{...}``, case and spacing variants mapped; None if invalid."""
    boxed = last_boxed(text)
    return None if boxed is None else _VARIANTS.get(_norm(boxed))


def _context(trace: Trace, index: int, limit: int) -> str:
    before = "".join(s.text + s.sep for s in trace.steps[:index]).rstrip()
    return before if len(before) <= limit else "..." + before[-limit:]


class _Judge:
    def __init__(self, cfg: JudgeConfig, client: ApiClient, report: Counter[str]):
        self.cfg, self.client, self.report = cfg, client, report

    async def step(self, trace: Trace, index: int) -> Signal | None:
        """The judge's signal for one step, asking again on invalid answers; None if none came."""
        step = trace.steps[index]
        context = _context(trace, index, self.cfg.context_chars)
        body = self.client.request_body(judge_messages(self.cfg.prompt, trace.question, context, step.text))
        item = {"question_id": trace.question_id, "step": index}
        for attempt in range(self.cfg.max_invalid_tries):
            try:
                done = await self.client.complete(body, self.client.key(body, self.cfg.prompt, attempt), item)
            except RequestFailed:
                self.report["failed"] += 1
                return None
            signal = parse_judge_answer(split_reasoning(done.message)[1])
            if signal is not None:
                return signal
            self.report["invalid_answers"] += 1
        self.report["unresolved"] += 1
        return None

    async def trace(self, trace: Trace) -> Trace:
        todo = [
            i
            for i, s in enumerate(trace.steps)
            if s.signal is not Signal.RESPONSE and not (self.cfg.only_unlabelled and s.signal is not None)
        ]
        verdicts = await asyncio.gather(*(self.step(trace, i) for i in todo))
        steps = list(trace.steps)
        for i, verdict in zip(todo, verdicts, strict=True):
            steps[i] = self.apply(steps[i], verdict)
        return trace.model_copy(update={"steps": steps})

    def apply(self, step: Step, verdict: Signal | None) -> Step:
        """Overrule a disagreeing keyword label, label an unlabelled step, count agreement."""
        r = self.report
        r["steps"] += 1
        if verdict is None:
            return step
        if step.true_signal is not None:
            r["truth_n"] += 1
            r["truth_agree"] += verdict is step.true_signal
        if step.signal is None:
            r["labelled_new"] += 1
        elif step.labelled_by == "keyword":
            r[f"kw_n:{step.signal.key}"] += 1
            r[f"kw_agree:{step.signal.key}"] += verdict is step.signal
        if verdict is step.signal:
            return step
        r["overruled"] += step.signal is not None
        return step.model_copy(update={"signal": verdict, "labelled_by": "judge", "confidence": None})


async def ordered_map(jobs: Iterable[Any], worker: Callable[[Any], Any], window: int) -> AsyncIterator[Any]:
    """Run ``worker(job)`` with at most ``window`` unfinished, yielding results in input order."""
    pending: deque[asyncio.Task[Any]] = deque()
    try:
        for job in jobs:
            pending.append(asyncio.create_task(worker(job)))
            if len(pending) >= window:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def judge_traces(traces: Iterable[Trace], cfg: JudgeConfig, report: dict[str, Any] | None = None) -> Iterator[Trace]:
    """Stage-2 labels for a stream of keyword-labelled traces, in input order.

    ``report`` (when given) receives, once the stream is exhausted, the counts, the keyword-vs-judge
    agreement per signal, agreement with true signals where the traces have them, and the ledger.
    """
    counts: Counter[str] = Counter()
    ledger = Ledger(cfg.price_input_per_m, cfg.price_output_per_m)

    async def run() -> AsyncIterator[Trace]:
        async with ApiClient(cfg, ledger, "judge") as client:
            judge = _Judge(cfg, client, counts)
            async for trace in ordered_map(traces, judge.trace, cfg.window):
                yield trace

    ledger.start_progress("judge")
    try:
        for trace in iterate_async(run()):
            ledger.item("traces")
            yield trace
    finally:
        ledger.close()
        if report is not None:
            report.update(summarise(counts, ledger))


def summarise(counts: Counter[str], ledger: Ledger) -> dict[str, Any]:
    """The judge report: counts, agreement per keyword signal (and overall), agreement with truth."""
    by_signal = {}
    for s in JUDGED:
        n, agree = counts[f"kw_n:{s.key}"], counts[f"kw_agree:{s.key}"]
        if n:
            by_signal[s.key] = {"n": n, "agree": agree, "rate": round(agree / n, 4)}
    n = sum(v["n"] for v in by_signal.values())
    agree = sum(v["agree"] for v in by_signal.values())
    plain = {k: v for k, v in counts.items() if ":" not in k and not k.startswith("truth")}
    out: dict[str, Any] = {**plain, "keyword_agreement": round(agree / n, 4) if n else None}
    out["keyword_agreement_by_signal"] = by_signal
    if counts["truth_n"]:
        out["judge_accuracy_vs_truth"] = round(counts["truth_agree"] / counts["truth_n"], 4)
    out["ledger"] = ledger.summary()
    return out


def load_judge_config(path: str | Path | None, base: JudgeConfig | None = None) -> JudgeConfig:
    """``base`` (default: defaults) updated by a YAML file of JudgeConfig fields or with a ``judge:`` section."""
    data = (base or JudgeConfig()).model_dump(exclude_unset=True)
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"{path}: cannot read judge config ({e})") from None
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: expected a mapping of judge settings")
        data.update(loaded.get("judge", loaded))
    try:
        return JudgeConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise InputError(f"{path}: judge key '{'.'.join(map(str, first['loc']))}': {first['msg']}") from None

"""Stage 3: give each step one of the seven signals (METHOD.md section 3, "Label").

Stage 1 is the keyword match of :mod:`rscaffold.signals`; steps whose opening matches no keyword
stay unlabelled (``signal = None``) for stage 2 (judge or learned labeller). The answer step keeps
Response Generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rscaffold.schema import Step, Trace
from rscaffold.signals import Lexicon, Signal


def label_step(step: Step, lexicon: Lexicon) -> Step:
    """Stage-1 label of one thinking step: the keyword's signal, or none."""
    hit = lexicon.match(step.text)
    return Step(
        text=step.text,
        sep=step.sep,
        signal=hit[0] if hit else None,
        labelled_by="keyword" if hit else None,
        true_signal=step.true_signal,
    )


def label_trace(trace: Trace, lexicon: Lexicon) -> Trace:
    """Label every thinking step by keyword; the answer step is left as it is."""
    steps = [s if s.signal is Signal.RESPONSE else label_step(s, lexicon) for s in trace.steps]
    return trace.model_copy(update={"steps": steps})


def run(traces: Iterable[Trace], lexicon: Lexicon) -> Iterator[Trace]:
    """Label a stream of traces."""
    for trace in traces:
        yield label_trace(trace, lexicon)

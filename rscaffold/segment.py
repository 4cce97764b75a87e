"""The segment stage: cut each trace into steps (METHOD.md section 3, "Segment").

The thinking text is split on blank lines; the answer text becomes one final step with signal
Response Generation. Segmentation is lossless: ``"".join(s.text + s.sep for s in thinking_steps)``
gives the thinking text back, whatever its line endings. Fenced code blocks and LaTeX display blocks
(``$$..$$``, ``\\[..\\]``, ``\\begin{env}..\\end{env}``) are never split, because a blank line inside
them does not end a thought.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config
from rscaffold.runs import progress
from rscaffold.schema import Step, Trace, read_jsonl, write_jsonl
from rscaffold.signals import Signal

# A maximal run of whitespace holding at least two line breaks ("\r\n" included).
SEPARATOR = re.compile(r"[^\S\n]*\n(?:[^\S\n]*\n)+[^\S\n]*")
# Blocks inside which a blank line does not separate steps; only closed blocks are protected,
# so one stray fence cannot swallow the rest of a trace.
_BLOCKS = re.compile(
    r"^[ \t]*```.*?^[ \t]*```"
    r"|\$\$.+?\$\$"
    r"|\\\[.+?\\\]"
    r"|\\begin\{([A-Za-z*]+)\}.+?\\end\{\1\}",
    re.DOTALL | re.MULTILINE,
)
_BLOCK_HINTS = ("```", "$$", "\\[", "\\begin{")


def _protected(text: str) -> list[tuple[int, int]]:
    if not any(h in text for h in _BLOCK_HINTS):
        return []
    return [m.span() for m in _BLOCKS.finditer(text)]


def _separators(text: str) -> Iterator[tuple[int, int]]:
    spans = _protected(text)
    i = 0
    for m in SEPARATOR.finditer(text):
        start, end = m.span()
        while i < len(spans) and spans[i][1] <= start:
            i += 1
        if i < len(spans) and spans[i][0] < end:
            continue  # inside (or overlapping) a protected block
        yield start, end


def segment_text(text: str) -> list[Step]:
    """Split a thinking text into steps; each step keeps the separator that follows it.

    Whitespace-only fragments are not steps: a leading one stays at the front of the first step,
    the others join the separator before them, so nothing is lost.
    """
    steps: list[Step] = []
    prefix = ""
    pos = 0
    for start, end in [*_separators(text), (len(text), len(text))]:
        fragment, sep = text[pos:start], text[start:end]
        pos = end
        if not fragment.strip():
            if steps:
                steps[-1].sep += fragment + sep
            else:
                prefix += fragment + sep
            continue
        steps.append(Step(text=prefix + fragment, sep=sep))
        prefix = ""
    return steps


def segment_trace(trace: Trace) -> Trace:
    """Return the trace with fresh steps: its thinking steps, then the answer step.

    Signals already on the trace (a scripted teacher's true signals) are kept where the new steps
    have the same texts as the old ones.
    """
    steps = segment_text(trace.thinking)
    old = [s for s in trace.steps if s.signal is not Signal.RESPONSE]
    if [s.text for s in old] == [s.text for s in steps]:
        steps = [o.model_copy(update={"sep": s.sep}) for o, s in zip(old, steps, strict=True)]
    if trace.answer_text.strip():
        truth = Signal.RESPONSE if any(s.true_signal is not None for s in steps) else None
        steps.append(Step(text=trace.answer_text, signal=Signal.RESPONSE, labelled_by="structure", true_signal=truth))
    return trace.model_copy(update={"steps": steps})


def segment_traces(traces: Iterable[Trace]) -> Iterator[Trace]:
    """Segment a stream of traces."""
    for trace in traces:
        yield segment_trace(trace)


def run_file(cfg: Config, inp: Path, out: Path) -> dict[str, Any]:
    return {"traces": write_jsonl(out, segment_traces(progress(read_jsonl(inp, Trace), "segment")))}


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The segment stage in a run folder: ``traces.jsonl`` -> ``segmented.jsonl``."""
    inp = runs.require(runs.traces(run_dir), "generate", run_dir)
    return run_file(cfg, inp, runs.segmented(run_dir))

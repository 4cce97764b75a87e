"""How well the signal head's confidence matches how often it is right, on held-out teacher traces.

The gate stops a question when the head's confidence (its top softmax probability among the seven
signals) is below tau, so the confidence has to mean what it says. Here the head reads held-out
labelled teacher traces (the golden traces of the test splits) laid out exactly as in training, and
at every decision point (the token before each step) its top signal and confidence are compared with
the signal the teacher's step carries. The reliability curve bins the confidences; the expected
calibration error (ECE) is the mean gap between confidence and accuracy, weighted by bin size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rscaffold.config import BuildConfig
from rscaffold.schema import Trace


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict[str, Any]:
    """Equal-width bins over [0, 1]: per bin the count, mean confidence and accuracy; and the ECE."""
    if len(confidence) != len(correct):
        raise ValueError("one correctness flag per confidence")
    n = len(confidence)
    totals: Counter[int] = Counter()
    conf_sum: dict[int, float] = {}
    right: Counter[int] = Counter()
    for c, ok in zip(confidence, correct, strict=True):
        b = min(int(c * bins), bins - 1)
        totals[b] += 1
        conf_sum[b] = conf_sum.get(b, 0.0) + c
        right[b] += bool(ok)
    curve = [
        {"low": b / bins, "high": (b + 1) / bins, "n": totals[b], "confidence": conf_sum[b] / totals[b],
         "accuracy": right[b] / totals[b]}
        for b in sorted(totals)
    ]  # fmt: skip
    ece = sum(p["n"] / n * abs(p["accuracy"] - p["confidence"]) for p in curve) if n else None
    return {"n": n, "accuracy": sum(map(bool, correct)) / n if n else None, "ece": ece, "curve": curve}


class HeadReader:
    """A student's signal head reading labelled teacher traces; the student is loaded once."""

    def __init__(self, student_dir: Path, build: BuildConfig, batch: int = 32):
        from rscaffold.model import load_student

        self.model, self.tokenizer, self.meta = load_student(student_dir)
        if self.model.signal_head is None:
            raise ValueError(f"{student_dir}: the student has no signal head")
        template = self.meta.get("prompt_template") or build.prompt_template
        self.cfg = build.model_copy(update={"prompt_template": template, "unlabelled": "drop"})
        self.batch = batch

    def decisions(self, traces: Iterable[Trace]) -> tuple[list[float], list[bool]]:
        """The head's confidence at every decision point of ``traces`` and whether its top signal is the
        teacher's (traces with an unlabelled thinking step are skipped, as build skips them)."""
        import torch

        from rscaffold.build import proposer_record, segments
        from rscaffold.tokenizer import IGNORE, encode_proposer

        counts: Counter[str] = Counter()
        longest = getattr(self.model.base_lm().config, "max_position_embeddings", None) or 4096
        add_bos = bool(self.meta.get("add_bos"))
        records = [
            proposer_record(trace, segs, self.cfg)
            for trace in traces
            if (segs := segments(trace, self.cfg, counts)) is not None
        ]
        if self.meta.get("signal_position") == "prefix":  # the head reads the steps as it was trained on them
            from rscaffold.train import with_signal_text

            with_signal_text(records, keep_signals=True)
        encoded = [encode_proposer(r, self.tokenizer, add_bos, longest) for r in records]
        encoded.sort(key=lambda e: len(e["input_ids"]))  # batches of similar lengths: little padding
        confidence: list[float] = []
        correct: list[bool] = []
        with torch.no_grad():
            for start in range(0, len(encoded), self.batch):
                chunk = encoded[start : start + self.batch]
                width = max(len(e["input_ids"]) for e in chunk)
                mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in chunk])
                ids, signal_ids = _padded(chunk, "input_ids", 0, width), _padded(chunk, "signal_ids", -1, width)
                targets = _padded(chunk, "signal_targets", IGNORE, width)  # right padding: positions unchanged
                # The targets mark the boundaries: a student whose signal enters at the input reads them unsignalled.
                out = self.model(ids, signal_ids=signal_ids, attention_mask=mask, signal_targets=targets)
                at = targets != IGNORE
                top, which = out.signal_logits.float().softmax(-1)[at].max(-1)
                confidence += top.tolist()
                correct += (which == targets[at]).tolist()
        return confidence, correct


def _padded(chunk: list[dict[str, list[int]]], key: str, fill: int, width: int) -> Any:
    import torch

    return torch.tensor([e[key] + [fill] * (width - len(e[key])) for e in chunk])

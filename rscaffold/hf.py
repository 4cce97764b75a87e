"""A saved student in plain transformers: ``model.generate`` writing under a chosen signal.

A student folder is a Hugging Face folder (``AutoModelForCausalLM`` loads it and generates as the
student with no signal) plus ``signal_bias.safetensors``: the signal embedding layer as a bias over the
vocabulary, ``lm_head(h + e_s) - lm_head(h)``, one row per signal (see
:meth:`rscaffold.model.Proposer.signal_bias`). :class:`SignalLogitsProcessor` adds a chosen signal's row
to the next-token scores, so that greedy ``generate`` with it writes the same tokens as
``rscaffold decode`` writes for a step under that signal::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from rscaffold.hf import SignalLogitsProcessor
    model, tok = AutoModelForCausalLM.from_pretrained(DIR), AutoTokenizer.from_pretrained(DIR)
    out = model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=64,
                         logits_processor=[SignalLogitsProcessor.from_pretrained(DIR, "reasoning")])

(The processor does not stop at the step's end, the blank line; ``rscaffold decode`` does that, and
chooses the next signal.) Where the base model soft-caps its final logits (Gemma 2), the scores
``generate`` sees are capped; the processor undoes the cap, adds the bias and caps again, as the
student's own forward does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rscaffold.signals import TITLES, Signal

BIAS_FILE = "signal_bias.safetensors"


def signal_of(name: str | int | Signal) -> Signal:
    """A signal by index, key (``reasoning``) or title (``Reasoning and Analysis``)."""
    if isinstance(name, int):
        return Signal(name)
    names = {s.key: s for s in Signal} | {TITLES[s].lower(): s for s in Signal}
    if str(name).lower() not in names:
        raise ValueError(f"unknown signal {name!r}; known: {', '.join(s.key for s in Signal)}")
    return names[str(name).lower()]


class SignalLogitsProcessor:
    """A transformers logits processor that writes under one signal (see the module docstring)."""

    def __init__(self, bias: torch.Tensor, signal: str | int | Signal, softcap: float | None = None):
        self.bias, self.signal, self.softcap = bias, signal_of(signal), softcap

    @classmethod
    def from_pretrained(cls, path: str | Path, signal: str | int | Signal) -> SignalLogitsProcessor:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / BIAS_FILE).exists():
            raise FileNotFoundError(
                f"{path / BIAS_FILE}: not there; only students whose signal enters at the output "
                "(signal embedding, train.signal_position=output) have one; decode the others with rscaffold"
            )
        config = json.loads((path / "config.json").read_text())
        cap = (config.get("text_config") or config).get("final_logit_softcapping")
        return cls(load_file(str(path / BIAS_FILE))["signal_bias"], signal, cap)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> Any:
        bias = self.bias[int(self.signal)].to(scores.device, scores.dtype)
        if not self.softcap:
            return scores + bias
        cap = self.softcap
        raw = torch.atanh((scores / cap).clamp(-1 + 1e-6, 1 - 1e-6)) * cap
        return torch.tanh((raw + bias) / cap) * cap

"""A batch of sequences decoded together with one left-padded KV cache.

Rows are fed one token each per forward; finished rows leave the batch (and the cache) at once;
a row whose context was shortened (pruning) is re-encoded alone and written back into the cache;
completions after a row's context are scored on a copy of its cache. Shared by the decoder and the
generative predictor.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import torch

from rscaffold.model import Student, cache_arg, lm_logits
from rscaffold.schema import Question, Step
from rscaffold.signals import Signal


@dataclass
class Row:
    """One question being decoded."""

    question: Question
    context: list[int]
    """Token ids the cache of this row holds (prompt, then the kept steps)."""
    steps: list[Step] = field(default_factory=list)
    signal: Signal | None = None
    confidence: float = 1.0
    segment: list[int] = field(default_factory=list)
    answering: bool = False
    tokens: int = 0
    answer: str = ""
    stop_reason: str = ""
    prompt_len: int = 0
    index: int = 0
    """Position of the question in the decoder's input (outputs keep that order)."""
    step_tokens: list[list[int]] = field(default_factory=list)
    """Token ids of each written step (its signal prefix and its boundary included); pruning rebuilds
    the context from them."""
    prefix: list[int] = field(default_factory=list)
    """The signal prefix of the current segment (signal-as-text students): context, not written text."""
    pending: list[int] = field(default_factory=list)
    """The tokens of ``prefix`` not yet fed."""
    answer_from: int = 0
    """``tokens`` when the answer began: its budget counts from there."""

    def __post_init__(self) -> None:
        self.prompt_len = self.prompt_len or len(self.context)


class Batch:
    """The rows decoded together and their shared, left-padded KV cache.

    Rows join (:meth:`add`) and leave (:meth:`keep`) at any token, so a decoder can keep the batch
    full while questions finish at different times. Every row carries its own position ids, so the
    left padding a row gets when it joins or when columns are trimmed never changes its attention.
    """

    def __init__(self, student: Student, rows: list[Row]):
        self.student, self.rows = student, rows
        self.backbone = student.lm.get_decoder()  # .model of Llama, .transformer of GPT-2
        self.kwarg = cache_arg(self.backbone)
        self.cache: Any = None
        self.mask = torch.zeros(len(rows), 0, dtype=torch.long)
        self.hidden = self._prefill([r.context for r in rows])

    @property
    def device(self) -> torch.device:
        return next(self.student.lm.parameters()).device

    def _prefill(self, contexts: list[list[int]], width: int | None = None) -> torch.Tensor:
        """Encode left-padded contexts from scratch; returns the last hidden state of each."""
        from transformers import DynamicCache

        width = width or max(len(c) for c in contexts)
        pad = self.student.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in contexts], device=self.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=self.device)
        out = self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), DynamicCache())
        self.cache, self.mask = out[self.kwarg], mask
        _set_kv(self.cache, _get_kv(self.cache))
        return out.last_hidden_state[:, -1]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> Any:
        kwargs = {self.kwarg: cache}
        return self.backbone(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)

    def step(self, tokens: list[int]) -> None:
        """Feed one token per row."""
        ids = torch.tensor(tokens, device=self.device).unsqueeze(-1)
        pos = torch.tensor([len(r.context) for r in self.rows], device=self.device).unsqueeze(-1)
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long, device=self.device)], 1)
        out = self._forward(ids, self.mask, pos, self.cache)
        self.cache, self.hidden = out[self.kwarg], out.last_hidden_state[:, -1]
        for row, tok in zip(self.rows, tokens, strict=True):
            row.context.append(tok)

    def score(self, which: list[int], completions: list[list[int]]) -> torch.Tensor:
        """Log-likelihood of each completion after the context of each row in ``which``: the sum of its
        tokens' log-probabilities, teacher-forced; shape (len(which), len(completions)).

        The batch is left as it was: each row's cache is copied once per completion, and the
        completions (right-padded to one width) are read in one forward.
        """
        from transformers import DynamicCache

        n, width = len(completions), max(map(len, completions))
        index = torch.tensor(which, dtype=torch.long, device=self.device).repeat_interleave(n)
        cache = DynamicCache()
        for layer, (k, v) in enumerate(_get_kv(self.cache)):
            cache.update(k[index], v[index], layer)
        pad = self.student.tokenizer.pad_token_id or 0
        ids = torch.tensor([c + [pad] * (width - len(c)) for c in completions], device=self.device).repeat(
            len(which), 1
        )
        start = torch.tensor([len(self.rows[i].context) for i in which], device=self.device).repeat_interleave(n)
        pos = start.unsqueeze(-1) + torch.arange(width, device=self.device)
        out = self._forward(ids, torch.cat([self.mask[index], torch.ones_like(ids)], 1), pos, cache)
        # Each token is predicted by the hidden state before it: the row's last, then the completion's own.
        hidden = torch.cat([self.hidden[index].unsqueeze(1), out.last_hidden_state[:, :-1]], 1)
        logits = lm_logits(self.student.lm, hidden).float()
        logp = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)  # no second vocab-wide copy
        lengths = torch.tensor([len(c) for c in completions], device=self.device).repeat(len(which))
        valid = torch.arange(width, device=self.device) < lengths.unsqueeze(-1)  # padding is not scored
        return logp.where(valid, 0.0).sum(-1).view(len(which), n)

    def keep(self, keep: list[int]) -> None:
        """Drop finished rows, releasing their share of the cache, and the columns no row uses any more."""
        if not keep:
            self.rows, self.cache, self.mask = [], None, self.mask[:0]
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        used = self.mask[index].any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        _set_kv(self.cache, [(k[index, :, start:], v[index, :, start:]) for k, v in _get_kv(self.cache)])
        self.mask, self.hidden = self.mask[index, start:], self.hidden[index]
        self.rows = [self.rows[i] for i in keep]

    def add(self, rows: list[Row]) -> list[int]:
        """Encode new rows and let them join; returns their indices in the batch."""
        if not self.rows:
            self.__init__(self.student, rows)  # type: ignore[misc]
            return list(range(len(rows)))
        new = Batch(self.student, rows)
        width = max(self.mask.shape[1], new.mask.shape[1])
        merged = [
            (
                torch.cat([_left_pad(k, width), _left_pad(k2, width)]),
                torch.cat([_left_pad(v, width), _left_pad(v2, width)]),
            )
            for (k, v), (k2, v2) in zip(_get_kv(self.cache), _get_kv(new.cache), strict=True)
        ]
        _set_kv(self.cache, merged)
        self.mask = torch.cat([_left_pad(self.mask, width), _left_pad(new.mask, width)])
        self.hidden = torch.cat([self.hidden, new.hidden])
        first = len(self.rows)
        self.rows = self.rows + rows
        return list(range(first, len(self.rows)))

    def shorten(self, i: int, keep: int, tokens: list[int]) -> None:
        """Row ``i``'s context becomes its first ``keep`` tokens followed by ``tokens`` (pruning).

        The kept tokens keep their cache entries (their positions do not change); only ``tokens``
        are encoded again, at their new positions, and the row is written back left-padded.
        """
        from transformers import DynamicCache

        row = self.rows[i]
        cols = self.mask[i].nonzero().squeeze(-1)[:keep]
        prefix = DynamicCache()
        for layer, (k, v) in enumerate(_get_kv(self.cache)):
            prefix.update(k[i : i + 1, :, cols], v[i : i + 1, :, cols], layer)
        n = keep + len(tokens)
        ids = torch.tensor([tokens], device=self.device)
        pos = torch.arange(keep, n, device=self.device).unsqueeze(0)
        out = self._forward(ids, torch.ones(1, n, dtype=torch.long, device=self.device), pos, prefix)
        width = self.mask.shape[1]
        for (k_new, v_new), (k, v) in zip(_get_kv(out[self.kwarg]), _get_kv(self.cache), strict=True):
            k[i], v[i] = _left_pad(k_new, width)[0], _left_pad(v_new, width)[0]
        self.mask[i] = torch.tensor([0] * (width - n) + [1] * n, device=self.device)
        self.hidden[i] = out.last_hidden_state[0, -1]
        row.context = row.context[:keep] + tokens


def _left_pad(t: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros on the left of the sequence dimension (-2 for keys/values, -1 for the mask)."""
    dim = -1 if t.dim() == 2 else -2
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim)


def _get_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers < 4.54


def _set_kv(cache: Any, kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    if hasattr(cache, "layers"):
        for layer, (k, v) in zip(cache.layers, kv, strict=True):
            _grow_in_place(layer, k, v)
    else:
        cache.key_cache, cache.value_cache = [k for k, _ in kv], [v for _, v in kv]


def _grow_in_place(layer: Any, keys: torch.Tensor, values: torch.Tensor, spare: int = 64) -> None:
    """Keep a layer's keys and values in buffers with spare room, so that appending a token writes
    into place instead of concatenating (which copies the whole cache at every token)."""
    b, h, n, d = keys.shape
    layer.buffers = (keys.new_empty(b, h, n + spare, d), values.new_empty(b, h, n + spare, values.shape[-1]))
    layer.buffers[0][:, :, :n], layer.buffers[1][:, :, :n] = keys, values
    layer.keys, layer.values = layer.buffers[0][:, :, :n], layer.buffers[1][:, :, :n]
    layer.update = types.MethodType(_append, layer)


def _append(layer: Any, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``DynamicLayer.update`` for a layer set up by :func:`_grow_in_place`."""
    n, add = layer.keys.shape[-2], key_states.shape[-2]
    if n + add > layer.buffers[0].shape[-2]:
        _grow_in_place(layer, layer.keys, layer.values, spare=max(64, n))  # doubling: amortised O(1)
    k_buf, v_buf = layer.buffers
    k_buf[:, :, n : n + add], v_buf[:, :, n : n + add] = key_states, value_states
    layer.keys, layer.values = k_buf[:, :, : n + add], v_buf[:, :, : n + add]
    return layer.keys, layer.values

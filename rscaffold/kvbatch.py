"""A batch of sequences decoded together with one left-padded KV cache.

Rows are fed one token each per forward; finished rows leave the batch (and the cache) at once;
a row whose context was shortened (pruning) is re-encoded alone and written back into the cache;
completions after a row's context are scored on a copy of its cache. Shared by the decoder and the
generative predictor's simple path.

A :class:`RowCache` is one sequence's cache kept apart from any batch: the generative predictor keeps
one per row and reads, at each decision, only the tokens past the prefix it already holds, together
with the completions it scores, as a trie (:func:`score_after`).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

import torch

from rscaffold.model import Student, cache_arg, embed_with_signals, lm_logits
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

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any, signals: list | None = None
    ) -> Any:
        """The backbone on ``ids``; ``signals`` (same shape; -1: none) enter the input embeddings of a
        student whose signal enters at the input (see :mod:`rscaffold.model`)."""
        kwargs = {self.kwarg: cache}
        tokens: dict[str, Any] = {"input_ids": ids}
        if signals is not None and self.student.signal_input is not None:
            at = torch.tensor(signals, device=self.device).view_as(ids)
            tokens = {"inputs_embeds": embed_with_signals(self.backbone, ids, at, self.student.signal_input)}
        return self.backbone(attention_mask=mask, position_ids=pos, use_cache=True, **tokens, **kwargs)

    def step(self, tokens: list[int], signals: list[int] | None = None) -> None:
        """Feed one token per row (``signals``: the signal each was written under, for a student whose
        signal enters at the input; -1 for a step's last token, the boundary)."""
        ids = torch.tensor(tokens, device=self.device).unsqueeze(-1)
        pos = torch.tensor([len(r.context) for r in self.rows], device=self.device).unsqueeze(-1)
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long, device=self.device)], 1)
        out = self._forward(ids, self.mask, pos, self.cache, signals)
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

    def shorten(self, i: int, keep: int, tokens: list[int], signals: list[int] | None = None) -> None:
        """Row ``i``'s context becomes its first ``keep`` tokens followed by ``tokens`` (pruning), fed
        with ``signals`` as :meth:`step` feeds them.

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
        out = self._forward(ids, torch.ones(1, n, dtype=torch.long, device=self.device), pos, prefix, signals)
        width = self.mask.shape[1]
        for (k_new, v_new), (k, v) in zip(_get_kv(out[self.kwarg]), _get_kv(self.cache), strict=True):
            k[i], v[i] = _left_pad(k_new, width)[0], _left_pad(v_new, width)[0]
        self.mask[i] = torch.tensor([0] * (width - n) + [1] * n, device=self.device)
        self.hidden[i] = out.last_hidden_state[0, -1]
        row.context = row.context[:keep] + tokens


@dataclass
class RowCache:
    """The keys and values of one sequence, kept apart from any batch, and the token ids they hold."""

    ids: list[int] = field(default_factory=list)
    kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    """Per layer, keys and values of shape (1, heads, room, head_dim): the first ``len(ids)`` positions
    are used, the rest is room to append into without copying."""

    def reuse(self, ids: list[int]) -> int:
        """Keep the longest prefix of the cache that ``ids`` also starts with, short of ids' last token
        (whose hidden state a reader needs); returns its length. A token's keys and values depend only
        on the tokens before it, so the kept entries are those of encoding ``ids`` whole; where the new
        text tokenises differently at the old end (a merge across it), the entries from there go."""
        n = 0
        for a, b in zip(self.ids, ids[:-1], strict=False):
            if a != b:
                break
            n += 1
        del self.ids[n:]
        return n

    def reserve(self, room: int, like: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        """Room for ``room`` positions (doubling, so appending is amortised O(1) per token); ``like``
        gives the shapes of a cache that has none yet."""
        n = len(self.ids)
        if not self.kv or room > self.kv[0][0].shape[2]:
            room = max(room, 2 * n, 64)
            self.kv = [(_room(k, n, room), _room(v, n, room)) for k, v in (self.kv or like or [])]

    def append(self, ids: list[int], kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Append ``ids`` and their keys and values (per layer, (1, heads, len(ids), head_dim))."""
        n, add = len(self.ids), len(ids)
        self.reserve(n + add, kv)
        for (k_buf, v_buf), (k, v) in zip(self.kv, kv, strict=True):
            k_buf[:, :, n : n + add], v_buf[:, :, n : n + add] = k, v
        self.ids.extend(ids)


def _room(t: torch.Tensor, n: int, room: int) -> torch.Tensor:
    """A (1, heads, room, head_dim) buffer holding the first ``n`` positions of ``t``."""
    buf = t.new_empty(1, t.shape[1], room, t.shape[3])
    buf[:, :, :n] = t[:, :, :n]
    return buf


@dataclass
class CompletionTrie:
    """Completions (token ids) as :func:`score_after` reads them: their common first tokens, read once after
    the text, then one node per other token that predicts a next one (a last token is never read)."""

    shared: list[int]
    tokens: list[int]
    """Each node's token."""
    depth: list[int]
    """Each node's distance from the common part: its position after it."""
    ancestors: torch.Tensor
    """(nodes, nodes): whether node j is node i or lies before it in its completion."""
    reads: list[list[int]]
    """Per completion, per token after the common part: the node that predicts it (-1: the common part's last)."""
    own: list[list[int]]
    """Per completion, its tokens after the common part."""


def completion_trie(completions: list[list[int]]) -> CompletionTrie:
    n = 0  # the common part leaves each completion at least one token of its own
    while n < min(map(len, completions)) - 1 and len({tuple(c[: n + 1]) for c in completions}) == 1:
        n += 1
    own = [c[n:] for c in completions]
    index: dict[tuple[int, ...], int] = {}
    for s in own:
        for u in range(1, len(s)):
            index.setdefault(tuple(s[:u]), len(index))
    nodes = list(index)
    ancestors = torch.tensor([[a == b[: len(a)] for a in nodes] for b in nodes])
    reads = [[index.get(tuple(s[:u]), -1) for u in range(len(s))] for s in own]
    return CompletionTrie(
        completions[0][:n], [p[-1] for p in nodes], [len(p) - 1 for p in nodes], ancestors, reads, own
    )


def score_after(student: Student, caches: list[RowCache], ids: list[list[int]], trie: CompletionTrie) -> torch.Tensor:
    """Log-likelihood of each completion after each sequence ``ids[i]`` (the sum of its tokens'
    log-probabilities, teacher-forced), shape (len(ids), completions), reading only the tokens of
    ``ids[i]`` past what ``caches[i]`` already holds; each cache then holds ``ids[i]`` (and the
    completions' common first tokens).

    A forward reads a row's new tokens, the common part, then the trie, each node seeing the row's text
    and its own completion's tokens before it, at the positions they have there: the cache is read once,
    not copied once per completion. Rows with nothing cached are read together; each other row alone,
    from its own buffers (rows seldom end their steps at the same token).
    """
    kept = [c.reuse(i) for c, i in zip(caches, ids, strict=True)]
    new = [r for r, k in enumerate(kept) if not k]
    scores: list[torch.Tensor] = [torch.empty(0)] * len(ids)
    for group in ([new] if new else []) + [[r] for r, k in enumerate(kept) if k]:
        got = _read(student, [caches[r] for r in group], [ids[r][kept[r] :] for r in group], kept[group[0]], trie)
        for r, s in zip(group, got, strict=True):
            scores[r] = s
    return torch.stack(scores)


def _read(
    student: Student, rows: list[RowCache], new: list[list[int]], past: int, trie: CompletionTrie
) -> torch.Tensor:
    """:func:`score_after` for rows that all hold ``past`` tokens (one row, or new rows)."""
    from transformers import DynamicCache

    lm, backbone = student.lm, student.lm.get_decoder()
    device = next(lm.parameters()).device
    blocks = [n + trie.shared for n in new]
    width = max(map(len, blocks)) + len(trie.tokens)
    cache = DynamicCache()
    if past:
        rows[0].reserve(past + width)  # the forward appends into the row's own buffers
        for layer, (k_buf, v_buf) in enumerate(rows[0].kv):
            cache.update(k_buf[:, :, :0], v_buf[:, :, :0], layer)  # creates and initialises the layer
            _use_buffers(cache.layers[layer], k_buf, v_buf, past)
    pad = student.tokenizer.pad_token_id or 0
    tokens = torch.tensor([b + trie.tokens + [pad] * (width - len(b) - len(trie.tokens)) for b in blocks])
    layouts = [_layout(trie, past, len(b), width) for b in blocks]
    pos = torch.tensor([p for p, _ in layouts], device=device)
    mask = _tree_mask(lm, torch.stack([s for _, s in layouts]).to(device), pos, past)
    kwargs = {cache_arg(backbone): cache}
    out = backbone(input_ids=tokens.to(device), attention_mask=mask, position_ids=pos, use_cache=True, **kwargs)
    # Which hidden state predicts which completion token: the common tokens once, then each completion's own.
    read, target, owner = (
        torch.tensor(t, device=device) for t in zip(*[_reads(trie, len(b)) for b in blocks], strict=True)
    )
    hidden = out.last_hidden_state.gather(1, read.unsqueeze(-1).expand(-1, -1, out.last_hidden_state.shape[-1]))
    logits = lm_logits(lm, hidden).float()
    logp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    scores = logp.new_zeros(len(blocks), len(trie.own) + 1).scatter_add(1, owner, logp)
    kv = _get_kv(out[cache_arg(backbone)])
    for r, (row, block) in enumerate(zip(rows, blocks, strict=True)):
        if past:
            row.ids.extend(block)  # their keys and values are in the row's buffers already
        else:
            row.append(block, [(k[r : r + 1, :, : len(block)], v[r : r + 1, :, : len(block)]) for k, v in kv])
    return scores[:, 1:] + scores[:, :1]


def _layout(trie: CompletionTrie, past: int, block: int, width: int) -> tuple[list[int], torch.Tensor]:
    """One row's positions, and which of its columns each column sees: its text causally, then the trie
    (every node sees the text and its ancestors); the padding after them, nothing."""
    n = len(trie.tokens)
    pos = [*range(past, past + block), *(past + block + d for d in trie.depth)]
    sees = torch.zeros(width, width, dtype=torch.bool)
    sees[:block, :block] = torch.ones(block, block, dtype=torch.bool).tril()
    sees[block : block + n, :block] = True
    sees[block : block + n, block : block + n] = trie.ancestors
    return pos + [past] * (width - len(pos)), sees


def _reads(trie: CompletionTrie, block: int) -> tuple[list[int], list[int], list[int]]:
    """For a row whose text (with the common part) fills its first ``block`` columns: the column whose
    hidden state predicts each completion token, the token, and whose it is (0: the common part, j + 1:
    completion j)."""
    shared = len(trie.shared)
    read, target, owner = list(range(block - shared - 1, block - 1)), list(trie.shared), [0] * shared
    for j, (s, nodes) in enumerate(zip(trie.own, trie.reads, strict=True)):
        read += [block - 1 if node < 0 else block + node for node in nodes]
        target += s
        owner += [j + 1] * len(s)
    return read, target, owner


def tree_scoring(lm: Any) -> bool:
    """Whether :func:`score_after` can read ``lm``: its attention takes a custom mask (eager or SDPA) and
    its layers attend fully or in a sliding window, which the mask then carries."""
    cfg = lm.config.get_text_config()
    kinds = set(getattr(cfg, "layer_types", None) or [])
    return cfg._attn_implementation in ("eager", "sdpa") and kinds <= {"full_attention", "sliding_attention"}


def _tree_mask(lm: Any, sees: torch.Tensor, pos: torch.Tensor, past: int) -> Any:
    """The additive (rows, 1, width, past + width) mask: a token sees the ``past`` cached tokens and the
    columns ``sees`` names; padding sees only itself. Sliding-window layers see only keys less than the
    window before them (by position, as the whole sequence has them); a model with both kinds of layers
    gets one mask per kind."""
    cfg, dtype, device = lm.config.get_text_config(), next(lm.parameters()).dtype, sees.device
    rows, width = sees.shape[:2]
    real = sees.any(-1, keepdim=True)
    allowed = torch.cat([real.expand(rows, width, past), sees], -1)
    itself = torch.arange(past + width, device=device) == past + torch.arange(width, device=device).unsqueeze(-1)

    def additive(a: torch.Tensor) -> torch.Tensor:
        a = (a | itself).unsqueeze(1)  # no row without a key: padding would read NaN into the cache
        return torch.zeros(a.shape, dtype=dtype, device=device).masked_fill(~a, torch.finfo(dtype).min)

    window = getattr(cfg, "sliding_window", None)
    if not window:
        return additive(allowed)
    keys = torch.cat([torch.arange(past, device=device).expand(rows, past), pos], -1)
    near = allowed & (pos.unsqueeze(-1) - keys.unsqueeze(1) < window)
    kinds = getattr(cfg, "layer_types", None)
    if not kinds:  # every layer slides (Mistral)
        return additive(near)
    return {kind: additive(near if kind == "sliding_attention" else allowed) for kind in set(kinds)}


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
    k_buf, v_buf = keys.new_empty(b, h, n + spare, d), values.new_empty(b, h, n + spare, values.shape[-1])
    k_buf[:, :, :n], v_buf[:, :, :n] = keys, values
    _use_buffers(layer, k_buf, v_buf, n)


def _use_buffers(layer: Any, k_buf: torch.Tensor, v_buf: torch.Tensor, n: int) -> None:
    """The layer's keys and values are the first ``n`` positions of the buffers; appending writes after them."""
    layer.buffers = (k_buf, v_buf)
    layer.keys, layer.values = k_buf[:, :, :n], v_buf[:, :, :n]
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

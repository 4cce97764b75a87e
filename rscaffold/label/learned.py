"""The learned labellers [ours] (METHOD.md section 3): small offline linear classifiers for stage 2.

Two kinds share one class and one file layout (plain arrays in safetensors and JSON, never pickle;
prediction needs numpy alone and reproduces scikit-learn's ``predict_proba``, which the parity tests check):

- **context** (``rscaffold-learned-labeller/2``, shipped as ``default``): trained on the shipped judge labels
  (``judge_labels/steps.jsonl``, its train split only) plus distant labels of scripted-teacher steps. It
  reads the step, the end of the previous step, the opening of the next one (``Context.next_chars``), the
  keywords that open them, and the signal the policy has given the previous step so far: a trace is
  labelled left to right (:meth:`LearnedLabeller.read`).
- **distant** (``rscaffold-learned-labeller/1``, shipped as ``distant``): every keyword-opened step is an
  example of its keyword's signal with the keyword removed; it reads the rest of the step alone.

Both are TF-IDF (word 1-2 grams, character 2-4 grams, first word) and a multinomial logistic regression:
fast on two CPU cores and deterministic. This module reads and applies a fitted labeller; fitting is in
:mod:`rscaffold.label.fit`, the choice by cross-validation and ``rscaffold labeller train`` in
:mod:`rscaffold.label.training`. Build the shipped ones with ``scripts/build_labeller.sh``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rscaffold.config.data import SHIPPED_LABELLERS
from rscaffold.schema import InputError
from rscaffold.signals import Lexicon, Signal, load_lexicon

FORMAT = "rscaffold-learned-labeller/1"
CONTEXT_FORMAT = "rscaffold-learned-labeller/2"
SHIPPED = SHIPPED_LABELLERS
"""Names of the labellers shipped in ``rscaffold/label/labellers/``; ``default`` is the default policy's."""
THINKING = [s for s in Signal if s is not Signal.RESPONSE]
"""The six signals the labeller chooses from (the answer step is Response Generation by structure)."""
START = "start"
"""The previous signal of a trace's first thinking step."""

_DIGITS = re.compile(r"\d+")
_TOKEN = re.compile(r"[^\W\d_]+|0|[^\w\s]")
# What is left at the front once the keyword is gone: punctuation, markdown, whitespace.
_LEAD = re.compile(r"^[\s,;:.!?*_#>`\"'“”‘’()\[\]—–-]*")


@dataclass(frozen=True)
class Features:
    """How a step's text becomes the terms the model weighs."""

    word_ngrams: int = 2
    char_ngrams: tuple[int, int] = (2, 4)
    max_chars: int = 400
    """Only the opening of a step is read: its role shows there, and long steps stay cheap."""


@dataclass(frozen=True)
class Context:
    """What the context labeller reads besides the step (format 2)."""

    previous_chars: int = 300
    """The end of the previous step that is read: where it stands when this step begins."""
    previous_scale: float = 0.3
    """Weight of the previous step's terms against the step's own (both L2-normalised)."""
    flag_scale: float = 0.3
    """Value of an indicator (opening keywords, previous signal): below 1 so that L2 holds them in check."""
    lexicons: tuple[str, ...] = ("paper", "extended")
    """Lexicons whose opening keyword (and its signal) is an indicator; the first one's also for the previous step."""
    next_chars: int = 0
    """The opening of the next step that is read (0: none): what the step leads to."""
    next_scale: float = 0.3
    """Weight of the next step's terms against the step's own."""


def analyze(text: str, f: Features = Features()) -> list[str]:
    """The terms of one step: word n-grams (``w ...``), character n-grams within words (``c ...``) and
    the first word (``f ...``). Numbers all read ``0``: values carry no role."""
    text = _DIGITS.sub("0", text[: f.max_chars].lower())
    words = _TOKEN.findall(text)
    terms = [f"f {words[0]}"] if words else []
    for n in range(1, f.word_ngrams + 1):
        terms += ["w " + " ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    lo, hi = f.char_ngrams
    for word in text.split():
        padded = f" {word} "
        for n in range(lo, min(hi, len(padded)) + 1):
            terms += ["c " + padded[i : i + n] for i in range(len(padded) - n + 1)]
    return terms


def strip_opening(text: str, lexicon: Lexicon, most: int = 3) -> str:
    """The step without the keywords it opens with and without leading markdown and punctuation.

    Chains are stripped whole ("Well, I think ...", "But wait, ..."): a step whose first keyword
    names another signal than its second would otherwise teach the model that the second keyword's
    words mean the first one's signal."""
    for _ in range(most):
        m = lexicon.pattern.match(text)
        if m is None:
            break
        text = _LEAD.sub("", text[m.end() :])
    return _LEAD.sub("", text)


def previous_flag(previous: Signal | str | None) -> str:
    """The indicator of the previous step's signal as labelled so far (``start``: none before; ``none``: unlabelled)."""
    return "prev " + (previous.key if isinstance(previous, Signal) else previous or "none")


def context_terms(texts: list[str], i: int, features: Features, context: Context) -> dict[str, list[str]]:
    """Terms of thinking step ``i`` of a trace, per block, except its previous signal (see :func:`previous_flag`)."""
    flags = []
    for name in context.lexicons:
        hit = load_lexicon(name).match(texts[i])
        flags += [f"{name} {hit[0].key}", f"{name} kw {hit[1]}"] if hit else [f"{name} none"]
    if i > 0:
        hit = load_lexicon(context.lexicons[0]).match(texts[i - 1])
        flags.append(f"prev opens {hit[0].key if hit else 'none'}")
    tail = texts[i - 1][-context.previous_chars :] if i > 0 else ""
    out = {
        "step": analyze(texts[i], features),
        "previous": analyze(tail, replace(features, max_chars=context.previous_chars)),
    }
    if context.next_chars:
        head = texts[i + 1] if i + 1 < len(texts) else ""
        out["next"] = analyze(head, replace(features, max_chars=context.next_chars))
        hit = load_lexicon(context.lexicons[0]).match(head) if head else None
        flags.append(f"next opens {hit[0].key if hit else 'none' if head else 'end'}")
    return out | {"flags": flags}


@dataclass
class Block:
    """A group of terms with its own weighting: sublinear TF-IDF, L2-normalised (as scikit-learn's), when
    ``idf`` is given, else indicators of 1; times ``scale``. ``rows``: its rows of the weight matrix."""

    vocabulary: dict[str, int]
    idf: np.ndarray | None
    scale: float
    rows: slice

    def values(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(i for t in terms if (i := self.vocabulary.get(t)) is not None)
        ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        if self.idf is None:
            return ids, np.full(len(ids), self.scale)
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        vals = (1.0 + np.log(tf)) * self.idf[ids] if len(ids) else tf
        norm = np.sqrt(vals @ vals)
        return ids, (vals / norm if norm > 0 else vals) * self.scale


@dataclass
class TraceReader:
    """The scores of a trace's thinking steps without their previous signal, which :meth:`predict` adds."""

    base: np.ndarray
    labeller: LearnedLabeller

    def proba(self, i: int, previous: Signal | str | None) -> np.ndarray:
        """Class probabilities of step ``i`` given the previous step's signal (ignored by a distant labeller)."""
        scores = self.base[i].copy()
        flags = self.labeller.blocks.get("flags")
        if flags is not None:
            prev = flags.vocabulary.get(previous_flag(START if i == 0 else previous))
            if prev is not None:
                scores += flags.scale * self.labeller.weights[flags.rows][prev]
        p = np.exp(scores - scores.max())
        return p / p.sum()

    def predict(self, i: int, previous: Signal | str | None) -> tuple[Signal, float]:
        p = self.proba(i, previous)
        k = int(p.argmax())
        return self.labeller.classes[k], float(p[k])


@dataclass
class LearnedLabeller:
    """A fitted labeller as plain arrays; reading and predicting need numpy only."""

    blocks: dict[str, Block]
    """``step`` (both kinds); ``previous`` and ``flags`` (context)."""
    weights: np.ndarray
    """(terms of all blocks, classes): the logistic regression's coefficients, transposed for row gathers."""
    bias: np.ndarray
    classes: tuple[Signal, ...]
    lexicon: str | None
    """Distant kind: the lexicon whose keywords are stripped before reading a step; None for the context kind."""
    features: Features = field(default_factory=Features)
    context: Context | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def terms(self, texts: list[str], i: int, stripped: bool = False) -> dict[str, list[str]]:
        """The terms of thinking step ``i`` of a trace (``stripped``: distant kind, keyword already removed)."""
        if self.context is not None:
            return context_terms(texts, i, self.features, self.context)
        text = texts[i] if stripped or self.lexicon is None else strip_opening(texts[i], load_lexicon(self.lexicon))
        return {"step": analyze(text, self.features)}

    def read(self, texts: list[str], stripped: bool = False) -> TraceReader:
        """Read the thinking steps of one trace at once (all but their previous signals)."""
        base = np.tile(self.bias.astype(np.float64), (len(texts), 1))
        for i in range(len(texts)):
            for name, terms in self.terms(texts, i, stripped).items():
                block = self.blocks[name]
                ids, vals = block.values(terms)
                base[i] += vals @ self.weights[block.rows][ids]
        return TraceReader(base, self)

    def predict(self, texts: list[str]) -> list[tuple[Signal, float]]:
        """Signal and probability of each thinking step of one trace, read left to right with the labeller's
        own previous prediction (the label policy gives it the policy's label instead)."""
        reader, out = self.read(texts), []
        for i in range(len(texts)):
            out.append(reader.predict(i, out[-1][0] if out else START))
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Distant kind: class probabilities (rows: texts, columns: ``classes``) of texts already stripped."""
        reader = self.read(texts, stripped=True)
        return np.stack([reader.proba(i, None) for i in range(len(texts))]) if texts else np.zeros((0, 6))

    def classify(self, texts: list[str]) -> list[tuple[Signal, float]]:
        """Distant kind: signal and probability for texts already stripped of their keyword."""
        p = self.predict_proba(texts)
        return [(self.classes[k], float(p[i, k])) for i, k in enumerate(p.argmax(axis=1))]

    def save(self, folder: str | Path) -> None:
        """Write ``model.safetensors``, ``vocabulary.json`` and ``labeller.json`` (see :func:`load`)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"weights": self.weights, "bias": self.bias}
        arrays |= {f"idf.{k}": b.idf for k, b in self.blocks.items() if b.idf is not None}
        if self.context is None:  # format 1's names
            arrays["idf"] = arrays.pop("idf.step")
        plain = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        save_file(plain, folder / "model.safetensors")
        vocab = {k: sorted(b.vocabulary, key=b.vocabulary.__getitem__) for k, b in self.blocks.items()}
        text = json.dumps(vocab["step"] if self.context is None else vocab, ensure_ascii=False)
        (folder / "vocabulary.json").write_text(text, encoding="utf-8")
        info: dict[str, Any] = {"format": FORMAT if self.context is None else CONTEXT_FORMAT}
        info |= {"classes": [s.key for s in self.classes], "lexicon": self.lexicon, "features": asdict(self.features)}
        if self.context is not None:
            info["context"] = asdict(self.context)
        (folder / "labeller.json").write_text(json.dumps(info | self.meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, where: str | Path = "default") -> LearnedLabeller:
        """Load from a folder written by :meth:`save`, or a shipped labeller by name (``default``, ``distant``)."""
        return load(where)


def shipped(name: str) -> Path:
    """The folder of a shipped labeller."""
    return Path(str(resources.files("rscaffold").joinpath(f"label/labellers/{name}")))


def load(where: str | Path = "default") -> LearnedLabeller:
    """A labeller folder (``labeller.json``, ``vocabulary.json``, ``model.safetensors``: no pickle), or a
    shipped one by name; write ``./default`` to mean a folder of that name."""
    from safetensors.numpy import load_file

    folder = shipped(str(where)) if str(where) in SHIPPED else Path(where)
    try:
        info = json.loads((folder / "labeller.json").read_text(encoding="utf-8"))
        terms = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        arrays = {k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()}
    except OSError as e:
        raise InputError(f"learned labeller {str(where)!r}: cannot read {e.filename} ({e.strerror})") from None
    fmt = info.get("format")
    if fmt not in (FORMAT, CONTEXT_FORMAT):
        expected = f"expected {FORMAT} or {CONTEXT_FORMAT}, got {fmt}"
        raise InputError(f"{folder / 'labeller.json'}: field 'format': {expected}")
    feats = info["features"]
    context = None
    if fmt == CONTEXT_FORMAT:
        context = Context(**{**info["context"], "lexicons": tuple(info["context"]["lexicons"])})
    blocks = _blocks({"step": terms} if context is None else terms, arrays, context)
    known = {"format", "classes", "lexicon", "features", "context"}
    return LearnedLabeller(
        blocks=blocks,
        weights=arrays["weights"],
        bias=arrays["bias"],
        classes=tuple(Signal.parse(k) for k in info["classes"]),
        lexicon=info["lexicon"],
        features=Features(feats["word_ngrams"], tuple(feats["char_ngrams"]), feats["max_chars"]),
        context=context,
        meta={k: v for k, v in info.items() if k not in known},
    )


def _blocks(terms: dict[str, list[str]], arrays: dict[str, np.ndarray], context: Context | None) -> dict[str, Block]:
    """The blocks of a loaded labeller, in the weight matrix's row order (step, previous, next, flags)."""
    out, start = {}, 0
    for name in ("step", "previous", "next", "flags"):
        if name in terms:
            vocab = {t: i for i, t in enumerate(terms[name])}
            idf = arrays.get("idf" if context is None else f"idf.{name}")
            out[name] = Block(vocab, idf, block_scale(name, context), slice(start, start + len(vocab)))
            start += len(vocab)
    return out


def block_scale(block: str, context: Context | None) -> float:
    """The factor on a block's values (see :class:`Context`); 1 for the step and for the distant kind."""
    if context is None or block == "step":
        return 1.0
    return {"previous": context.previous_scale, "next": context.next_scale}.get(block, context.flag_scale)

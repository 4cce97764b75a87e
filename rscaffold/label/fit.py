"""Fitting the learned labellers [ours] (:mod:`rscaffold.label.learned`): their training data and the
scikit-learn fit, exported as the plain arrays a :class:`~rscaffold.label.learned.LearnedLabeller` holds.

Training data: distant labels (a keyword-opened step is an example of its keyword's signal, the keyword
removed), the shipped judge labels as whole traces, and scripted-teacher traces of the testbed. Fitting
needs scikit-learn and scipy; prediction does not.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rscaffold.label.learned import (
    START,
    Block,
    Context,
    Features,
    LearnedLabeller,
    analyze,
    block_scale,
    context_terms,
    previous_flag,
    strip_opening,
)
from rscaffold.schema import InputError, Trace, read_json_objects
from rscaffold.signals import Lexicon, Signal

# ------------------------------------------------------------------ training data


@dataclass(frozen=True)
class Example:
    """One distant-kind training step: keyword-stripped text, its label, where the label came from, its trace set."""

    text: str
    signal: Signal
    supervision: str
    """keyword (distant), judge, or truth."""
    source: str
    held_out: bool


def held_out(trace: Trace, share: float) -> bool:
    """A stable per-trace split (by teacher and question id), so no trace is on both sides."""
    return zlib.crc32(f"{trace.teacher}\t{trace.question_id}".encode()) % 1000 < share * 1000


def examples(
    traces: Iterable[Trace], lexicon: Lexicon, use_truth: bool, held_share: float, source: str
) -> Iterator[Example]:
    """Training examples of a stream of segmented traces: judge labels, else true signals (if
    ``use_truth``), else the keyword's signal (distant supervision); other steps are skipped."""
    for trace in traces:
        out = held_out(trace, held_share)
        for step in trace.steps:
            if step.signal is Signal.RESPONSE or step.true_signal is Signal.RESPONSE:
                continue
            hit = lexicon.match(step.text)
            if step.labelled_by == "judge" and step.signal is not None:
                signal, how = step.signal, "judge"
            elif use_truth and step.true_signal is not None:
                signal, how = step.true_signal, "truth"
            elif hit is not None:
                signal, how = hit[0], "keyword"
            else:
                continue
            yield Example(strip_opening(step.text, lexicon), signal, how, source, out)


def scripted_traces(n: int, seed: int) -> list[Trace]:
    """``n`` scripted-teacher traces of fresh testbed training problems (true signals included)."""
    from rscaffold.config import ScriptedConfig, TestbedConfig
    from rscaffold.testbed.problems import make_splits
    from rscaffold.testbed.teacher import ScriptedTeacher

    tb = TestbedConfig(train=n, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    return list(ScriptedTeacher(ScriptedConfig(), seed).generate(make_splits(tb, seed)["train"]))


@dataclass(frozen=True)
class Sequence:
    """The thinking steps of one trace as the context labeller learns from them."""

    group: str
    """The trace (teacher and question id): cross-validation folds never split one."""
    texts: tuple[str, ...]
    signals: tuple[Signal | None, ...]
    """Each step's label; None: the step is read only as the context of the next one."""
    supervision: str
    """judge, or keyword (distant: the keyword is stripped from the text and names the label)."""
    source: str
    held_out: bool = False
    unsure: frozenset[int] = frozenset()
    """The steps whose judge found two signals fitting about equally well."""


def judged_sequences(path: Path) -> list[Sequence]:
    """The traces of judge-labelled step rows (``judge_labels/steps.jsonl``: every thinking step of each trace)."""
    rows: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for lineno, row in read_json_objects(path):
        missing = {"set", "teacher", "question_id", "index", "split", "signal", "text"} - row.keys()
        if missing:
            raise InputError(f"{path}:{lineno}: field {sorted(missing)[0]!r} is missing")
        rows.setdefault((row["teacher"], row["question_id"]), []).append((lineno, row))
    out = []
    for (teacher, qid), steps in rows.items():
        steps.sort(key=lambda r: r[1]["index"])
        for k, (lineno, row) in enumerate(steps):
            if row["index"] != k:
                raise InputError(f"{path}:{lineno}: field 'index': expected {k} (every thinking step of a trace)")
        first = steps[0][1]
        signals = tuple(Signal.parse(r["signal"]) for _, r in steps)
        texts = tuple(r["text"] for _, r in steps)
        unsure = frozenset(k for k, (_, r) in enumerate(steps) if r.get("sure") is False)
        group, held = f"{teacher}\t{qid}", first["split"] == "held_out"
        out.append(Sequence(group, texts, signals, "judge", first["set"], held, unsure))
    return out


def check_texts(judged: list[Sequence], traces: Iterable[Trace], path: Path) -> int:
    """Check that the judged texts are the steps ``rscaffold segment`` cuts from the traces; returns traces checked."""
    by_group = {q.group: q for q in judged}
    n = 0
    for trace in traces:
        seq = by_group.get(f"{trace.teacher}\t{trace.question_id}")
        if seq is None:
            continue
        texts = tuple(s.text for s in trace.steps if s.signal is not Signal.RESPONSE)
        if texts != seq.texts:
            raise InputError(f"{path}: trace {trace.question_id!r}: its steps differ from the judged steps' texts")
        n += 1
    return n


def distant_sequences(traces: Iterable[Trace], lexicon: Lexicon, source: str) -> list[Sequence]:
    """Distant supervision, whole traces: a keyword-opened step is an example of its keyword's signal
    (the keyword stripped); other steps are read as context only. No true signal is used."""
    out = []
    for trace in traces:
        steps = [s for s in trace.steps if s.signal is not Signal.RESPONSE and s.true_signal is not Signal.RESPONSE]
        hits = [lexicon.match(s.text) for s in steps]
        texts = tuple(strip_opening(s.text, lexicon) if h else s.text for s, h in zip(steps, hits, strict=True))
        signals = tuple(h[0] if h else None for h in hits)
        out.append(Sequence(f"{trace.teacher}\t{trace.question_id}", texts, signals, "keyword", source))
    return out


# ------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class FitSettings:
    """Model size and regularisation; the defaults keep the shipped files near 3 MB."""

    features: Features = field(default_factory=Features)
    max_terms: int = 60000
    min_df: int = 2
    c: float = 10.0
    """Inverse L2 strength of the logistic regression."""
    class_weight_power: float = 0.5
    """Class weights (n / (classes * n_class)) ** power: 0 none, 1 balanced. 0.5 raised held-out accuracy on
    the rare real-trace signals (contrast 0.47 -> 0.57, opinion 0.22 -> 0.56) at the same overall accuracy."""
    context: Context = field(default_factory=Context)
    """Context kind only: what is read besides the step."""
    previous_terms: int = 30000
    distant_weight: float = 1.0
    """Context kind only: weight of a distant (keyword) example against a judged one."""
    unsure_weight: float = 1.0
    """Context kind only: factor on a judge label marked not sure."""
    contrast_weight: float = 1.0
    """Context kind only: factor on the class weight of Contrast, the signal the judge targets single out."""


CANDIDATES = {
    "c": "inverse regularisation strength (context kind: candidates, the cross-validation chooses)",
    "class_weight_power": "class weights (n / (classes * n_class)) ** P (context kind: candidates)",
    "contrast_weight": "context kind: candidate factors on Contrast's class weight",
    "unsure_weight": "context kind: candidate factors on a judge label marked not sure",
    "distant_weight": "context kind: candidate weights of a distant example",
}
"""FitSettings fields that ``rscaffold labeller train`` takes as lists of candidates."""


def fit_sklearn(texts: list[str], labels: list[int], s: FitSettings) -> tuple[Any, Any]:
    """Distant kind, the scikit-learn reference: TfidfVectorizer + multinomial LogisticRegression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(
        analyzer=partial(analyze, f=s.features), sublinear_tf=True, min_df=s.min_df, max_features=s.max_terms
    )
    x = vec.fit_transform(texts)
    clf = LogisticRegression(C=s.c, max_iter=2000, class_weight=_class_weights(labels, s)).fit(x, labels)
    return vec, clf


def _class_weights(labels: list[int], s: FitSettings) -> dict[int, float]:
    counts = Counter(labels)
    return {k: (len(labels) / (len(counts) * n)) ** s.class_weight_power for k, n in counts.items()}


def from_sklearn(vec: Any, clf: Any, lexicon: str, features: Features, meta: dict[str, Any]) -> LearnedLabeller:
    """Distant kind: export a fitted vectoriser and classifier as plain arrays."""
    vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
    block = Block(vocab, np.asarray(vec.idf_, dtype=np.float64), 1.0, slice(0, len(vocab)))
    weights, bias = _linear(clf)
    classes = tuple(Signal(int(k)) for k in clf.classes_)
    return LearnedLabeller({"step": block}, weights, bias, classes, lexicon, features, meta=meta)


def _same(terms: list[str]) -> list[str]:
    """The analyzer of term lists made beforehand (by :func:`context_terms`, as at prediction)."""
    return terms


def design(data: list[Sequence], s: FitSettings) -> tuple[dict[str, list[list[str]]], list[int], list[str]]:
    """Context kind: the terms per block of every labelled step, its label and its supervision (judge, unsure:
    a judge label marked not sure, keyword). The previous signal is the previous step's own label."""
    docs: dict[str, list[list[str]]] = {"step": [], "previous": []}
    docs |= {"next": []} if s.context.next_chars else {}
    docs["flags"] = []
    labels, supervision = [], []
    for seq in data:
        for i, signal in enumerate(seq.signals):
            if signal is None:
                continue
            terms = context_terms(list(seq.texts), i, s.features, s.context)
            terms["flags"].append(previous_flag(START if i == 0 else seq.signals[i - 1]))
            for name, doc in docs.items():
                doc.append(terms[name])
            labels.append(int(signal))
            supervision.append("unsure" if i in seq.unsure else seq.supervision)
    return docs, labels, supervision


def fit_context_sklearn(data: list[Sequence], s: FitSettings) -> tuple[dict[str, Any], Any]:
    """The context kind's scikit-learn reference: a vectoriser per block (TF-IDF for step and previous,
    indicators for flags) and one logistic regression. Class weights (from the judged steps' label
    counts) weigh the judged steps; a distant step weighs ``distant_weight``: scripted-teacher steps are
    another population, not rarer judged ones."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    docs, labels, supervision = design(data, s)
    judged = [y for y, how in zip(labels, supervision, strict=True) if how != "keyword"]
    if len(set(judged)) < 2:
        raise InputError("labeller train: fewer than two signals among the judged training steps")
    tfidf = partial(TfidfVectorizer, analyzer=_same, sublinear_tf=True, min_df=s.min_df)
    vecs = {"step": tfidf(max_features=s.max_terms), "previous": tfidf(max_features=s.previous_terms)}
    vecs |= {"next": tfidf(max_features=s.previous_terms)} if s.context.next_chars else {}
    vecs["flags"] = TfidfVectorizer(analyzer=_same, use_idf=False, norm=None, binary=True)
    for name, vec in vecs.items():
        vec.fit(docs[name])
    cw = _class_weights(judged, s)
    cw[int(Signal.CONTRAST)] = cw.get(int(Signal.CONTRAST), 1.0) * s.contrast_weight
    pairs = zip(labels, supervision, strict=True)
    weight = np.asarray([cw.get(y, 1.0) * s.unsure_weight ** (how == "unsure") for y, how in pairs])
    weight[np.asarray(supervision) == "keyword"] = s.distant_weight
    clf = LogisticRegression(C=s.c, max_iter=3000).fit(context_matrix(vecs, docs, s.context), labels, weight)
    return vecs, clf


def context_matrix(vecs: dict[str, Any], docs: dict[str, list[list[str]]], context: Context) -> Any:
    """The design matrix of the context kind: the blocks side by side, each times its scale."""
    from scipy.sparse import hstack

    return hstack([vec.transform(docs[name]) * block_scale(name, context) for name, vec in vecs.items()]).tocsr()


def _linear(clf: Any) -> tuple[np.ndarray, np.ndarray]:
    """(weights (terms, classes), bias) of a fitted logistic regression; two classes become the softmax
    over (0, z) that equals scikit-learn's (1 - sigmoid(z), sigmoid(z))."""
    coef, bias = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
    if len(clf.classes_) == 2:
        coef, bias = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], bias])
    return np.ascontiguousarray(coef.T), bias


def from_context_sklearn(vecs: dict[str, Any], clf: Any, s: FitSettings) -> LearnedLabeller:
    """Export a fitted context kind as plain arrays."""
    blocks, start = {}, 0
    for name, vec in vecs.items():
        vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
        idf = np.asarray(vec.idf_, dtype=np.float64) if name != "flags" else None
        blocks[name] = Block(vocab, idf, block_scale(name, s.context), slice(start, start + len(vocab)))
        start += len(vocab)
    weights, bias = _linear(clf)
    classes = tuple(Signal(int(k)) for k in clf.classes_)
    return LearnedLabeller(blocks, weights, bias, classes, None, s.features, s.context)


def fit_context(data: list[Sequence], s: FitSettings) -> LearnedLabeller:
    """Fit the context kind (see :func:`fit_context_sklearn`)."""
    return from_context_sklearn(*fit_context_sklearn(data, s), s)

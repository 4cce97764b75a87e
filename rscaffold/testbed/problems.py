"""The embedded testbed's problems and splits (METHOD.md section 7).

Each problem comes from a hidden computation graph (:mod:`rscaffold.testbed.graph`): named
quantities, each given or computed by one operation from earlier ones; the question asks for one
target that takes ``ops`` operations; some facts are distractors. Every question stores its graph and
the true value of every quantity in ``metadata``, so equations and intermediate conclusions that a
model writes can be checked exactly.

Splits (deterministic by seed, disjoint by text): ``train``; ``test_id`` (the training operation
counts); ``test_ood`` (more operations); ``test_surface`` (the training operation counts, worded with
held-out templates, names, items and distractor counts); ``test_perturbed`` (variants of ``test_id``
problems with the same graph shape, grouped by ``metadata["group"]``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rscaffold import runs
from rscaffold.config import Config, TestbedConfig
from rscaffold.schema import Question, write_jsonl
from rscaffold.testbed import graph, phrasing
from rscaffold.testbed.graph import Quantity, Ranges

SPLITS = ("train", "test_id", "test_ood", "test_surface", "test_perturbed")


@dataclass
class Problem:
    """A graph with its wording; turned into a :class:`Question` by :func:`to_question`."""

    qs: list[Quantity]
    target: str
    item: str
    names: dict[str, str]
    templates: dict[str, int]
    question_template: int
    order: list[str]
    ops: int
    meta: dict = field(default_factory=dict)

    @property
    def facts(self) -> dict[str, str]:
        return {
            q.qid: phrasing.render_fact(
                graph.kinds(q), self.templates[q.qid], self.names, self.item, q.qid, q.args, q.value
            )
            for q in self.qs
        }

    @property
    def text(self) -> str:
        facts = self.facts
        ask = phrasing.render_question(self.question_template, self.names[self.target], self.item)
        return " ".join([*(facts[qid] for qid in self.order), ask])


@dataclass(frozen=True)
class SplitSpec:
    """What one split draws from."""

    ops: tuple[int, int]
    distractors: tuple[int, int]
    surface: bool


def _ranges(cfg: TestbedConfig) -> Ranges:
    return Ranges(cfg.max_value, cfg.min_given, min(cfg.max_addend, cfg.max_value), cfg.max_factor)


def _graph(cfg: TestbedConfig, ops: int, distractors: int, rng: random.Random) -> list[Quantity]:
    """A valued graph; the structure is redrawn when its numbers cannot be satisfied."""
    for _ in range(200):
        qs = graph.needed_structure(ops, rng, cfg.op_weights, cfg.constant_share, cfg.reuse_share)
        if graph.assign_values(qs, rng, _ranges(cfg)):
            graph.add_distractors(qs, distractors, rng, _ranges(cfg), cfg.op_weights)
            return qs
    raise ValueError(f"testbed: cannot build {ops}-operation graphs within max_value={cfg.max_value}")


def _names(cfg: TestbedConfig, qs: list[Quantity], surface: bool, rng: random.Random) -> dict[str, str]:
    """One distinct name per quantity; test_surface gives held-out names to the needed ones first."""
    train, held = phrasing.name_pools(cfg.names, cfg.name_pool_size, cfg.surface_names)
    if surface:
        picked = rng.sample(held, min(len(held), len(qs)))
        picked += rng.sample(train, len(qs) - len(picked))
    else:
        picked = rng.sample(train, len(qs))
    # Target first, then the other needed quantities, so held-out names land on the path.
    ranked = sorted(qs, key=lambda q: (not q.needed, q.op == "given", -int(q.qid[1:])))
    return {q.qid: name for q, name in zip(ranked, picked, strict=True)}


def _order(cfg: TestbedConfig, qs: list[Quantity], rng: random.Random) -> list[str]:
    if cfg.fact_order == "dependency":
        return graph.dependency_order(qs, rng)
    order = [q.qid for q in qs]
    rng.shuffle(order)
    return order


def _templates(qs: list[Quantity], surface: bool, rng: random.Random, keep: dict | None = None) -> dict:
    """A template index per quantity; ``keep`` fixes some (a variant keeps its source's wording)."""
    drawn = {q.qid: rng.choice(phrasing.template_choices(graph.kinds(q), surface)) for q in qs}
    return drawn | (keep or {})


def make_problem(cfg: TestbedConfig, spec: SplitSpec, rng: random.Random) -> Problem:
    """Draw one problem for a split."""
    ops = rng.randint(*spec.ops)
    qs = _graph(cfg, ops, rng.randint(*spec.distractors), rng)
    return Problem(
        qs=qs,
        target=[q for q in qs if q.needed][-1].qid,
        item=rng.choice(phrasing.item_pool(spec.surface)),
        names=_names(cfg, qs, spec.surface, rng),
        templates=_templates(qs, spec.surface, rng),
        question_template=rng.choice(phrasing.template_choices("question", spec.surface)),
        order=_order(cfg, qs, rng),
        ops=ops,
    )


def perturb(cfg: TestbedConfig, source: Problem, rng: random.Random) -> Problem:
    """A variant with the same graph shape: new names, numbers and fact order, one more distractor.

    The needed facts keep their wording templates, so the variant differs only in what a
    consistent reasoner should be indifferent to.
    """
    needed = [q for q in source.qs if q.needed]
    distractors = len(source.qs) - len(needed) + 1
    for _ in range(200):
        qs = graph.fresh_copy(needed)
        if graph.assign_values(qs, rng, _ranges(cfg)):
            break
    else:
        raise ValueError(f"testbed: cannot renumber a graph of shape {graph.shape(needed)}")
    graph.add_distractors(qs, distractors, rng, _ranges(cfg), cfg.op_weights)
    keep = {q.qid: source.templates[q.qid] for q in needed}
    return Problem(
        qs=qs,
        target=source.target,
        item=source.item,
        names=_names(cfg, qs, False, rng),
        templates=_templates(qs, False, rng, keep),
        question_template=source.question_template,
        order=_order(cfg, qs, rng),
        ops=source.ops,
    )


def to_question(p: Problem, qid: str, split: str) -> Question:
    """The stored record: text, gold answer and the full graph with true values."""
    facts = p.facts
    values = {q.qid: q.value for q in p.qs}
    quantities = [
        {
            "id": q.qid,
            "name": p.names[q.qid],
            "op": q.op,
            "args": list(q.args),
            "value": q.value,
            "needed": q.needed,
            "fact": facts[q.qid],
        }
        for q in p.qs
    ]
    meta = {
        "split": split,
        "ops": p.ops,
        "target": p.target,
        "item": p.item,
        "shape": graph.shape(p.qs),
        "distractors": sum(not q.needed for q in p.qs),
        "fact_order": p.order,
        "quantities": quantities,
        "values": {p.names[k]: v for k, v in values.items()},
        **p.meta,
    }
    return Question(id=qid, text=p.text, gold=str(values[p.target]), task="testbed", metadata=meta)


def _fill(count: int, draw, seen: set[str], split: str) -> list[Problem]:
    """``count`` problems from ``draw()`` whose texts are not in ``seen`` (which they join)."""
    out: list[Problem] = []
    for _ in range(50 * count + 1000):
        if len(out) == count:
            return out
        p = draw()
        if p.text not in seen:
            seen.add(p.text)
            out.append(p)
    if len(out) == count:
        return out
    raise ValueError(
        f"testbed: only {len(out)} of {count} distinct {split} problems; widen max_value, the name pool "
        f"or the operation range"
    )


def _split_rng(seed: int, split: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and platforms.
    return random.Random(f"rscaffold-testbed:{seed}:{split}")


def make_problems(cfg: TestbedConfig, seed: int) -> dict[str, list[Problem]]:
    """All splits as :class:`Problem` lists (train first, so test texts are checked against it)."""
    specs = {
        "train": SplitSpec(cfg.train_ops, cfg.distractors, False),
        "test_id": SplitSpec(cfg.train_ops, cfg.distractors, False),
        "test_ood": SplitSpec(cfg.ood_ops, cfg.distractors, False),
        "test_surface": SplitSpec(cfg.train_ops, cfg.surface_distractors, True),
    }
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {}
    for split, spec in specs.items():
        rng = _split_rng(seed, split)
        out[split] = _fill(getattr(cfg, split), partial(make_problem, cfg, spec, rng), seen, split)
    out["test_perturbed"] = _perturbed(cfg, out["test_id"], _split_rng(seed, "test_perturbed"), seen)
    return out


def _perturbed(cfg: TestbedConfig, sources: list[Problem], rng: random.Random, seen: set[str]) -> list:
    if cfg.perturbed_groups > len(sources):
        raise ValueError(f"perturbed_groups: {cfg.perturbed_groups} exceeds test_id ({len(sources)})")
    out: list[Problem] = []
    for g, source in enumerate(sources[: cfg.perturbed_groups]):
        variants = _fill(cfg.perturbed_variants, partial(perturb, cfg, source, rng), seen, "test_perturbed")
        for v, p in enumerate(variants):
            p.meta = {"group": f"test_id-{g:06d}", "variant": v}
        out += variants
    return out


def make_splits(cfg: TestbedConfig, seed: int) -> dict[str, list[Question]]:
    """All five splits as questions with ids ``<split>-000123``, stable for a given seed and config."""
    return {
        split: [to_question(p, f"{split}-{i:06d}", split) for i, p in enumerate(problems)]
        for split, problems in make_problems(cfg, seed).items()
    }


def write_splits(cfg: TestbedConfig, seed: int, out_dir: Path) -> dict[str, int]:
    """Write ``<out_dir>/<split>.jsonl`` for every split; returns the number of questions in each."""
    out_dir = Path(out_dir)
    splits = make_splits(cfg, seed)
    return {split: write_jsonl(out_dir / f"{split}.jsonl", qs) for split, qs in splits.items()}


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The testbed stage in a run folder: ``testbed/<split>.jsonl`` for every split."""
    return {"splits": write_splits(cfg.testbed, cfg.run.seed, runs.testbed_dir(run_dir))}

"""The embedded testbed's problems and splits: structure, disjointness, perturbation groups, files."""

from __future__ import annotations

import pydantic
import pytest

from rscaffold.benchmarks import BENCHMARKS
from rscaffold.benchmarks.testbed import load
from rscaffold.config import TestbedConfig
from rscaffold.schema import InputError, Question
from rscaffold.testbed import phrasing
from rscaffold.testbed.graph import Quantity, apply, kinds
from rscaffold.testbed.problems import SPLITS, make_splits, write_splits

SMALL = TestbedConfig(
    train=300,
    test_id=100,
    test_ood=60,
    test_surface=60,
    perturbed_groups=20,
    perturbed_variants=3,
)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Question]]:
    return make_splits(SMALL, seed=7)


def nodes(q: Question) -> dict[str, dict]:
    return {d["id"]: d for d in q.metadata["quantities"]}


def shape_of(q: Question) -> str:
    """The needed structure, recomputed here rather than read from metadata["shape"]."""
    needed = [d for d in q.metadata["quantities"] if d["needed"]]
    index = {d["id"]: f"n{i}" for i, d in enumerate(needed)}
    return ";".join(
        "g"
        if d["op"] == "given"
        else f"{d['op']}({','.join(index.get(a, 'c') if isinstance(a, str) else 'c' for a in d['args'])})"
        for d in needed
    )


def ancestors(q: Question, qid: str) -> set[str]:
    node = nodes(q)[qid]
    out = {qid}
    for a in node["args"]:
        if isinstance(a, str):
            out |= ancestors(q, a)
    return out


def test_sizes_ids_and_records(splits):
    assert list(splits) == list(SPLITS)
    expected = {"train": 300, "test_id": 100, "test_ood": 60, "test_surface": 60, "test_perturbed": 60}
    assert {k: len(v) for k, v in splits.items()} == expected
    ids = [q.id for qs in splits.values() for q in qs]
    assert len(ids) == len(set(ids))
    assert splits["train"][123].id == "train-000123"
    for split, qs in splits.items():
        assert all(q.task == "testbed" and q.metadata["split"] == split for q in qs)


def test_splits_are_disjoint_by_content(splits):
    seen: set[str] = set()
    for qs in splits.values():
        texts = {q.text for q in qs}
        assert len(texts) == len(qs)
        assert not texts & seen
        seen |= texts


def test_operation_counts_per_split(splits):
    ranges = {
        "train": SMALL.train_ops,
        "test_id": SMALL.train_ops,
        "test_surface": SMALL.train_ops,
        "test_perturbed": SMALL.train_ops,
        "test_ood": SMALL.ood_ops,
    }
    for split, (lo, hi) in ranges.items():
        ops = {q.metadata["ops"] for q in splits[split]}
        assert ops == set(range(lo, hi + 1)), split
        for q in splits[split]:
            derived = [d for d in q.metadata["quantities"] if d["needed"] and d["op"] != "given"]
            assert len(derived) == q.metadata["ops"]


def test_true_values_satisfy_the_graph(splits):
    for q in (q for qs in splits.values() for q in qs):
        node = nodes(q)
        for d in node.values():
            assert isinstance(d["value"], int) and 0 <= d["value"] <= SMALL.max_value
            if d["op"] != "given":
                a, b = (node[x]["value"] if isinstance(x, str) else x for x in d["args"])
                assert apply(d["op"], a, b) == d["value"], (q.id, d)
        target = q.metadata["target"]
        assert q.gold == str(node[target]["value"])
        assert {k for k, d in node.items() if d["needed"]} == ancestors(q, target)
        assert q.metadata["values"] == {d["name"]: d["value"] for d in node.values()}
        assert len({d["name"] for d in node.values()}) == len(node)


def test_text_states_every_fact_in_order_then_asks(splits):
    for q in splits["train"][:50]:
        node = nodes(q)
        facts = " ".join(node[qid]["fact"] for qid in q.metadata["fact_order"])
        assert q.text.startswith(facts + " ")
        assert node[q.metadata["target"]]["name"] in q.text[len(facts) :]


def test_dependency_order_puts_each_fact_after_its_operands(splits):
    for q in splits["train"]:
        pos = {qid: i for i, qid in enumerate(q.metadata["fact_order"])}
        for d in q.metadata["quantities"]:
            assert all(pos[a] < pos[d["id"]] for a in d["args"] if isinstance(a, str))


def _rendered_with(q: Question, template: int) -> list[bool]:
    names = {d["id"]: d["name"] for d in q.metadata["quantities"]}
    out = []
    for d in q.metadata["quantities"]:
        key = kinds(Quantity(d["id"], d["op"], d["args"]))
        t = template % len(phrasing.TEMPLATES[key])
        fact = phrasing.render_fact(key, t, names, q.metadata["item"], d["id"], d["args"], d["value"])
        out.append(fact == d["fact"])
    return out


def test_surface_split_uses_only_held_out_wording_names_and_counts(splits):
    train_names, held = phrasing.name_pools(SMALL.names, SMALL.name_pool_size, SMALL.surface_names)
    train_items = {q.metadata["item"] for q in splits["train"]}
    for q in splits["test_surface"]:
        assert all(_rendered_with(q, -1))
        assert nodes(q)[q.metadata["target"]]["name"] in held
        assert q.metadata["item"] not in train_items
        assert SMALL.surface_distractors[0] <= q.metadata["distractors"] <= SMALL.surface_distractors[1]
    for q in splits["train"]:
        assert not any(_rendered_with(q, -1))
        assert {d["name"] for d in q.metadata["quantities"]} <= set(train_names)
        assert SMALL.distractors[0] <= q.metadata["distractors"] <= SMALL.distractors[1]


def test_perturbed_groups_keep_the_shape_with_new_surface(splits):
    by_id = {q.id: q for q in splits["test_id"]}
    groups: dict[str, list[Question]] = {}
    for q in splits["test_perturbed"]:
        groups.setdefault(q.metadata["group"], []).append(q)
    assert len(groups) == SMALL.perturbed_groups
    for group, variants in groups.items():
        source = by_id[group]
        assert [v.metadata["variant"] for v in variants] == list(range(SMALL.perturbed_variants))
        for v in variants:
            assert shape_of(v) == shape_of(source) == v.metadata["shape"]
            assert v.metadata["distractors"] == source.metadata["distractors"] + 1
            assert v.text != source.text
            assert v.gold == str(nodes(v)[v.metadata["target"]]["value"])
        assert len({v.text for v in variants}) == len(variants)


def test_same_seed_same_splits_other_seed_other_splits():
    cfg = TestbedConfig(
        train=40,
        test_id=10,
        test_ood=10,
        test_surface=10,
        perturbed_groups=3,
        perturbed_variants=2,
    )
    dump = lambda s: {k: [q.model_dump() for q in v] for k, v in s.items()}  # noqa: E731
    assert dump(make_splits(cfg, 3)) == dump(make_splits(cfg, 3))
    assert dump(make_splits(cfg, 3))["train"] != dump(make_splits(cfg, 4))["train"]


def test_harder_settings_build():
    cfg = TestbedConfig(
        train=60,
        test_id=20,
        test_ood=20,
        test_surface=20,
        perturbed_groups=5,
        perturbed_variants=2,
        names="words",
        name_pool_size=48,
        surface_names=12,
        fact_order="shuffled",
        max_value=200,
        max_factor=9,
        train_ops=(2, 4),
        ood_ops=(6, 7),
        op_weights={"mul": 1, "div": 1},
    )
    splits = make_splits(cfg, 0)
    assert {q.metadata["ops"] for q in splits["test_ood"]} == {6, 7}
    ops = {d["op"] for q in splits["train"] for d in q.metadata["quantities"] if d["needed"]}
    assert ops == {"given", "mul", "div"}
    assert any(q.text[0] == "T" and q.text.startswith("The ") for q in splits["train"])


def test_config_errors_are_clear():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        TestbedConfig(trian=5)
    with pytest.raises(pydantic.ValidationError, match="training names"):
        TestbedConfig(name_pool_size=14)
    with pytest.raises(pydantic.ValidationError, match="ood_ops"):
        TestbedConfig(ood_ops=(5, 4))
    with pytest.raises(ValueError, match="perturbed_groups"):
        make_splits(TestbedConfig(train=5, test_id=2, test_ood=1, test_surface=1, perturbed_groups=3), 0)
    for name, field in TestbedConfig.model_fields.items():
        assert field.description, name


def test_write_and_load_roundtrip(tmp_path):
    cfg = TestbedConfig(
        train=20,
        test_id=8,
        test_ood=5,
        test_surface=5,
        perturbed_groups=2,
        perturbed_variants=2,
    )
    counts = write_splits(cfg, 1, tmp_path / "tb")
    assert counts == {"train": 20, "test_id": 8, "test_ood": 5, "test_surface": 5, "test_perturbed": 4}
    expected = make_splits(cfg, 1)
    assert list(BENCHMARKS["testbed"](tmp_path / "tb")) == expected["test_id"]
    assert list(load(tmp_path / "tb" / "test_ood.jsonl")) == expected["test_ood"]
    assert list(load(str(tmp_path / "tb"), split="train")) == expected["train"]
    with pytest.raises(InputError, match=r"no split 'dev'.*test_id"):
        list(load(tmp_path / "tb", split="dev"))

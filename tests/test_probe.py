"""The look-up probe: its prompts, and the shipped testbed base read values in every recipe's format."""

from __future__ import annotations

import pytest

from rscaffold.build import LOOKUP_FORMATS
from rscaffold.cli import main
from rscaffold.config import TestbedConfig
from rscaffold.probe import lookup_probe, probe_prompts
from rscaffold.testbed.problems import make_splits


@pytest.fixture(scope="module")
def questions():
    cfg = TestbedConfig(train=0, test_id=200, test_ood=0, test_surface=0, perturbed_groups=0)
    return make_splits(cfg, 4242)["test_id"]


def test_prompts_ask_for_one_given_value_in_every_format(questions):
    two = [q for q in questions if sum(d["op"] == "given" for d in q.metadata["quantities"]) >= 2][:10]
    prompts = probe_prompts(two)
    assert len(prompts) == 10 * len(LOOKUP_FORMATS)
    for i, q in enumerate(two):
        mine = prompts[i * len(LOOKUP_FORMATS) : (i + 1) * len(LOOKUP_FORMATS)]
        assert [name for name, _, _ in mine] == list(LOOKUP_FORMATS)
        assert len({value for _, _, value in mine}) == 1  # one fact per question, asked in every format
        values = {d["name"]: str(d["value"]) for d in q.metadata["quantities"] if d["op"] == "given"}
        for _, prompt, value in mine:
            assert prompt.startswith(q.text + "\n")
            asked = prompt.split("\n")[-1].split()[-2]  # the name before "=" or "has"
            assert values[asked] == value


@pytest.mark.slow  # 4-5 s: reads every format of the shipped base
def test_the_shipped_base_favours_no_format(questions):
    """METHOD.md section 8: no format more than 0.10 below the best one (200 fresh questions, greedy)."""
    result = lookup_probe("testbed", questions)
    assert set(result["accuracy"]) == set(LOOKUP_FORMATS)
    assert max(result["gap_to_best"].values()) <= 0.10, result["accuracy"]
    assert min(result["accuracy"].values()) > 0.3, result["accuracy"]


def test_probe_command_prints_each_format(tmp_path, capsys):
    from rscaffold.schema import write_jsonl

    cfg = TestbedConfig(train=0, test_id=5, test_ood=0, test_surface=0, perturbed_groups=0)
    write_jsonl(tmp_path / "q.jsonl", make_splits(cfg, 1)["test_id"])
    assert main(["probe", "--questions", str(tmp_path / "q.jsonl"), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in LOOKUP_FORMATS)
    assert main(["probe", "--questions", str(tmp_path / "missing.jsonl")]) == 2

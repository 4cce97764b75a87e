"""Metrics: bootstrap interval, consistency within groups, equations, conclusions, signal metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rscaffold import metrics


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n() -> None:
    small = metrics.bootstrap_ci([1, 0] * 20, samples=500)
    large = metrics.bootstrap_ci([1, 0] * 2000, samples=500)
    for ci in (small, large):
        assert ci["lo"] <= ci["mean"] == 0.5 <= ci["hi"]
    assert large["hi"] - large["lo"] < small["hi"] - small["lo"]
    assert metrics.bootstrap_ci([])["mean"] is None
    assert metrics.bootstrap_ci([1, 1, 1]) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 3}


def test_group_consistency() -> None:
    rows = [("a", True), ("a", True), ("b", False), ("b", True), ("c", False), ("c", False), ("d", True)]
    out = metrics.group_consistency(rows)
    assert out == {"groups": 3, "all_correct": 1 / 3, "same_outcome": 2 / 3, "pair_agreement": 2 / 3}


def test_equations_are_checked() -> None:
    text = "16 - 3 - 4 = 9 eggs, 9 * 2 = 18, 26 / 6 = 4.33, 2 + 2 = 5, 3 × 4 = 12, <<2/2=1>>1 and 1,000 + 1 = 1,001"
    found = metrics.equations(text)
    assert [e["right"] for e in found] == [True, True, True, False, True, True, True]
    assert metrics.equations("x = 3, there are 5 apples") == []
    huge = "9" * 400  # a number no float holds, as a decoding student once wrote; the equation is skipped
    assert metrics.equations(f"{huge} + 1 = 2, 2 + 2 = 4") == [{"equation": "2 + 2 = 4", "right": True}]


def test_stated_values_and_conclusions() -> None:
    steps = [
        "D has 2 and C has 8, so F = 2 * 8 = 16.",
        "Clearly, F = 16.",
        "Wait, N ends up with 3 stickers.",
        "So N = 17 - 16 = 1.",
    ]
    truth = {"D": 2, "C": 8, "F": 16, "N": 1}
    assert metrics.stated_values(steps[0], list(truth)) == [("D", 2.0), ("C", 8.0), ("F", 16.0)]
    counts = metrics.conclusion_metrics(steps, truth)
    assert counts == {"stated": 6, "checked": 6, "true": 5, "contradicted": 1}
    assert metrics.conclusion_metrics(["x = 4", "then x = 5"])["contradicted"] == 1


def test_signal_metrics() -> None:
    teacher = ["reasoning", "conclusion", "response"]
    out = metrics.next_signal_accuracy([(["reasoning", "contrast", "response"], teacher), (teacher, teacher)])
    assert out["accuracy"] == 5 / 6 and out["per_signal"]["conclusion"]["accuracy"] == 0.5
    assert metrics.next_signal_accuracy([(["reasoning"], teacher)])["accuracy"] == 1 / 3
    keys = ["reasoning", "conclusion", "response", "contrast"]
    m = metrics.transitions([teacher, teacher], keys)
    assert m[0, 1] == 2 and m.sum() == 4
    assert metrics.transition_divergence(m, m) == pytest.approx(0.0)
    other = metrics.transitions([["reasoning", "contrast", "response"]] * 2, keys)
    assert 0 < metrics.transition_divergence(other, m) <= 1
    assert metrics.transition_divergence(m, np.zeros_like(m)) is None


@given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
def test_edit_distance_is_a_metric(a: list[str], b: list[str]) -> None:
    d = metrics.edit_distance(a, b)
    assert d == metrics.edit_distance(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)

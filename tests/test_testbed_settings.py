"""The scripted teacher's settings (realistic, clean, informative), the question reader, and the
reference predictor of the next signal."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict

import numpy as np
import pydantic
import pytest

from rscaffold import generate, runs
from rscaffold.config import ScriptedConfig, TestbedConfig, load_config
from rscaffold.schema import Question, Trace, read_jsonl
from rscaffold.signals import Signal
from rscaffold.testbed import problems, reading
from rscaffold.testbed.discourse import BODIES, OWN_OPENERS, SIGNAL
from rscaffold.testbed.graph import apply
from rscaffold.testbed.phrasing import INVERSE, template_index
from rscaffold.testbed.reference import ReferencePredictor, plans
from rscaffold.testbed.teacher import ScriptedTeacher, _Script, _write

# sha256 of the JSON traces the teacher wrote before it had settings (see _digest), per case.
PINNED = {
    "default": "63d6054e4d28fd0bf73f2c491cfcac42de948f5a0e338e627ff530c048b6f3ee",
    "slips": "a2628ae387211966aa44270306869cf768aa1606f3a820f012184414fcdff839",
    "words": "7b5dd7c826a94f010c657f388aebd8811a5ea10189cdf99b4368117b1b9ebd6e",
}
SMALL = TestbedConfig(train=60, test_id=10, test_ood=20, test_surface=20, perturbed_groups=2, perturbed_variants=2)
WORDS = TestbedConfig(
    train=30,
    test_id=5,
    test_ood=10,
    test_surface=10,
    perturbed_groups=1,
    perturbed_variants=2,
    names="words",
    name_pool_size=48,
    surface_names=12,
    fact_order="shuffled",
)
NUMBER = re.compile(r"\d+")
EQUATION = re.compile(r"(\d+) ([-+*/]) (\d+) (?:=|is|gives) (\d+)")
OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    cfg = TestbedConfig(train=160, test_id=0, test_ood=30, test_surface=30, perturbed_groups=0)
    return [q for qs in problems.make_splits(cfg, seed=11).values() for q in qs]


def _digest(cfg: ScriptedConfig, tb: TestbedConfig, seed: int) -> str:
    qs = [q for v in problems.make_splits(tb, seed=3).values() for q in v]
    lines = [json.dumps(t.model_dump(mode="json"), sort_keys=True) for t in ScriptedTeacher(cfg, seed).generate(qs)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def written(cfg: ScriptedConfig, q: Question, seed: int = 0) -> _Script:
    """The teacher's script of one trace after writing, with the kind of every step."""
    s = ScriptedTeacher(cfg, seed)._script(q)
    _write(s)
    return s


def test_realistic_traces_are_unchanged():
    assert ScriptedConfig().setting == "realistic"
    assert _digest(ScriptedConfig(), SMALL, 5) == PINNED["default"]
    slips = ScriptedConfig(setting="realistic", restate_facts=False, detour_share=0.7, wrong_share=0.4)
    assert _digest(slips, SMALL, 1) == PINNED["slips"]
    assert _digest(ScriptedConfig(), WORDS, 2) == PINNED["words"]


def test_setting_is_checked_and_set_from_the_command_line():
    with pytest.raises(pydantic.ValidationError, match="setting"):
        ScriptedConfig(setting="easy")
    assert load_config(None, ["generate.scripted.setting=informative"]).generate.scripted.setting == "informative"


def test_clean_never_slips_even_when_told_to(questions, monkeypatch):
    def refuse(*_):
        raise AssertionError("the clean setting wrote a slip")

    monkeypatch.setattr(_Script, "slip", refuse)
    monkeypatch.setattr(_Script, "correct", refuse)
    cfg = ScriptedConfig(setting="clean", detour_share=1, wrong_share=1)
    for t in ScriptedTeacher(cfg).generate(questions):
        assert not t.metadata["wrong"] and not t.metadata["detour"] and t.final_answer == t.gold


def _untrue(q: Question, text: str) -> list[str]:
    """False equations and numbers that are neither in the question nor a true value nor the operation count."""
    allowed = set(NUMBER.findall(q.text)) | {str(v) for v in q.metadata["values"].values()} | {str(q.metadata["ops"])}
    false = [m[0] for m in EQUATION.finditer(text) if apply(OPS[m[2]], int(m[1]), int(m[3])) != int(m[4])]
    return false + [n for n in NUMBER.findall(text) if n not in allowed]


def _body_pattern(key: str) -> re.Pattern[str]:
    return re.compile("|".join(re.sub(r"\\\{\w+\\\}", ".+", re.escape(b)) + "$" for b in BODIES[key]))


def test_clean_writes_true_numbers_and_contrast_only_confirms(questions):
    untrue = {}
    for setting in ("realistic", "clean"):
        traces = list(ScriptedTeacher(ScriptedConfig(setting=setting)).generate(questions[:100]))
        untrue[setting] = sum(bool(_untrue(q, t.thinking)) for q, t in zip(questions, traces, strict=False))
        contrast = [s.text for t in traces for s in t.steps if s.true_signal is Signal.CONTRAST]
        confirming = sum(bool(_body_pattern("contrast_confirm").search(text)) for text in contrast)
        assert (confirming == len(contrast) > 0) is (setting == "clean")
    # The check has teeth: realistic traces write slips, misreads and hypothetical numbers.
    assert untrue == {"realistic": untrue["realistic"], "clean": 0} and untrue["realistic"] > 10


def expected_informative(q: Question) -> list[str]:
    """The informative rules, restated from the hidden graph."""
    node = {d["id"]: d for d in q.metadata["quantities"]}
    names = {k: d["name"] for k, d in node.items()}
    derived = [k for k, d in node.items() if d["needed"] and d["op"] != "given"]
    out = ["intro", *(["plan"] if len(derived) >= 2 else []), *(["opinion"] if q.metadata["distractors"] else [])]
    for x in derived:
        d = node[x]
        key = d["op"] + "_" + "".join("q" if isinstance(a, str) else "c" for a in d["args"])
        t = template_index(key, d["fact"], names, q.metadata["item"], x, d["args"], d["value"])
        out += ["contrast"] if t in INVERSE.get(key, ()) else []
        out += ["example"] if d["op"] == "div" else []
        out += ["compute"]
        out += ["recheck"] if d["op"] in ("mul", "div") else []
        out += ["addition"] if all(isinstance(a, str) for a in d["args"]) else []
        out += ["result"] if x != derived[-1] else []
    return [*out, "conclude"]


def test_informative_follows_its_rules(questions):
    cfg = ScriptedConfig(setting="informative")
    kinds = Counter()
    for q in questions:
        s = written(cfg, q)
        assert s.kinds == expected_informative(q), q.id
        kinds.update(s.kinds)
        # An Example before a division illustrates that very split, with the problem's numbers.
        for i, kind in enumerate(s.kinds):
            if kind == "example":
                expr = re.search(r"\d+ / \d+ = \d+", s.steps[i][1])[0]
                assert expr in s.steps[i + 1][1]
    assert min(kinds[k] for k in ("contrast", "example", "recheck", "addition", "opinion")) >= 5, kinds


def test_informative_openers_name_their_signal(questions):
    first = defaultdict(set)
    for kind, openers in OWN_OPENERS.items():
        for o in (*openers.keyword, *openers.free, *openers.other):
            first[o.split()[0].strip(",:").lower()].add(SIGNAL[kind])
    assert all(len(signals) == 1 for signals in first.values()), first
    seen = defaultdict(set)
    for t in ScriptedTeacher(ScriptedConfig(setting="informative")).generate(questions[:100]):
        for s in t.steps[:-1]:
            seen[s.text.split()[0].strip(",:").lower()].add(s.true_signal)
    assert all(len(signals) == 1 for signals in seen.values())
    realistic = defaultdict(set)
    for t in ScriptedTeacher(ScriptedConfig()).generate(questions[:50]):
        for s in t.steps[:-1]:
            realistic[s.text.split()[0].strip(",:").lower()].add(s.true_signal)
    assert any(len(signals) > 1 for signals in realistic.values())


def _graph(q: Question) -> tuple:
    name = {d["id"]: d["name"] for d in q.metadata["quantities"]}
    relations = {
        d["name"]: (d["op"], tuple(name[a] if isinstance(a, str) else a for a in d["args"]), d["value"])
        for d in q.metadata["quantities"]
    }
    derived = tuple(name[d["id"]] for d in q.metadata["quantities"] if d["needed"] and d["op"] != "given")
    distractors = sorted(name[d["id"]] for d in q.metadata["quantities"] if not d["needed"])
    return relations, name[q.metadata["target"]], derived, distractors


def test_reading_recovers_the_hidden_graph(questions):
    words = [q for qs in problems.make_splits(WORDS, seed=4).values() for q in qs]
    for q in questions[::3] + words:
        r = reading.read_question(q.text)
        got = {n: (x.op, x.args, x.value) for n, x in r.relations.items()}
        assert (got, r.target, r.derived, sorted(r.distractors)) == _graph(q), q.id
    with pytest.raises(ValueError, match="cannot read"):
        reading.read_question("A has 3 apples. B has 2 more pears than C. How many apples does B have?")


def test_step_kinds_recover_what_the_teacher_wrote(questions):
    for setting in ("realistic", "clean", "informative"):
        cfg, exact, total = ScriptedConfig(setting=setting), 0, 0
        for q in questions[::3]:
            s = written(cfg, q)
            for kind, (signal, text) in zip(s.kinds, s.steps, strict=True):
                fits = reading.step_kinds(signal, text)
                assert kind in fits, (setting, kind, text)
                exact += fits == {kind}
                total += 1
        assert exact / total > 0.9, setting


def test_plan_prior_is_the_teachers():
    q = next(q for q in problems.make_splits(SMALL, seed=3)["train"] if q.metadata["ops"] == 2)
    cfg = ScriptedConfig()
    drawn = Counter(ScriptedTeacher(cfg, seed).plan(q) for seed in range(2000))
    prior = dict(plans(reading.read_question(q.text), cfg))
    assert set(drawn) <= set(prior) and abs(sum(prior.values()) - 1) < 1e-9
    # Total variation: about 0.05 from sampling alone; recheck_share 0.35 or wrong_share 0.2 in the prior give 0.11+.
    assert sum(abs(drawn[p] / 2000 - prior[p]) for p in prior) / 2 < 0.08


def _scores(setting: str, questions: list[Question]) -> dict[str, float]:
    """The reference predictor on every step: accuracy, mean entropy and log loss (bits), and the worst
    z-score of a signal's count against the sum of its predicted probabilities."""
    cfg = ScriptedConfig(setting=setting)
    teacher, predictor = ScriptedTeacher(cfg, seed=1), ReferencePredictor(cfg)
    dists, truth = [], []
    for q in questions:
        steps = [(s.true_signal, s.text) for s in teacher.trace(q).steps]
        dists += predictor.distributions(q.text, steps[:-1])
        truth += [signal for signal, _ in steps]
    p, y = np.array(dists), np.eye(len(Signal))[truth]
    z = (y - p).sum(0) / np.sqrt((p * (1 - p)).sum(0) + 1e-12)
    return {
        "accuracy": float((p.argmax(1) == np.array(truth)).mean()),
        "entropy": float(-(p * np.log2(np.where(p > 0, p, 1))).sum(1).mean()),
        "log_loss": float(-np.log2(np.maximum((p * y).sum(1), 1e-12)).mean()),
        "worst_z": float(np.abs(z).max()),
    }


def test_informative_signals_are_predictable_and_realistic_ones_are_not(questions):
    realistic = _scores("realistic", questions[:50])
    informative = _scores("informative", questions[:50])
    assert informative["accuracy"] > realistic["accuracy"] + 0.15
    assert informative["accuracy"] == 1.0 and informative["entropy"] < 1e-9
    q = questions[0]
    trace = ScriptedTeacher(ScriptedConfig(setting="informative"), seed=1).trace(q)
    steps = [(s.true_signal, s.text) for s in trace.steps]
    predictor = ReferencePredictor(ScriptedConfig(setting="informative"))
    assert [max(predictor.predict(q.text, steps[:i]).items(), key=lambda kv: kv[1]) for i in range(len(steps))] == [
        (signal, 1.0) for signal, _ in steps
    ]
    assert 0.6 < realistic["accuracy"] < 0.9 and realistic["entropy"] > 0.5
    # Calibrated: each signal occurs about as often as predicted (z about 1 by chance; the addition
    # share mistaken for 0.5 gives 4.3), and the log loss on what the teacher wrote matches the entropy.
    assert realistic["worst_z"] < 4 and abs(realistic["log_loss"] - realistic["entropy"]) < 0.1, realistic


def test_the_setting_reaches_the_generate_stage(tmp_path):
    cfg = load_config(None, ["generate.scripted.setting=informative", "run.seed=2"])
    cfg.testbed = TestbedConfig(train=12, test_id=2, test_ood=2, test_surface=2, perturbed_groups=1)
    problems.run(cfg, tmp_path)
    generate.run(cfg, tmp_path)
    traces = list(read_jsonl(runs.traces(tmp_path), Trace))
    questions = list(read_jsonl(runs.questions(tmp_path, "train"), Question))
    expected = ScriptedTeacher(ScriptedConfig(setting="informative"), 2).generate(questions)
    assert [t.model_dump() for t in traces] == [t.model_dump() for t in expected]

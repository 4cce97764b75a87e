"""lm-evaluation-harness: the rscaffold model through the lm_eval CLI, the task files, and GSM8K scoring
parity between the harness's own filters and the project's extraction."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_metric
from lm_eval.filters import build_filter_ensemble
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval.utils import apply_template

from rscaffold import harness
from rscaffold.answers import INVALID
from rscaffold.benchmarks import load_questions
from rscaffold.config import DecodeConfig, EvaluateConfig
from rscaffold.decode import Decoder
from rscaffold.evaluate import score_predictions
from rscaffold.model import student_from_folder
from rscaffold.schema import InputError, Question, Step, Trace, write_jsonl
from rscaffold.signal_sources import HeadPredictor
from rscaffold.signals import Signal
from tests.conftest import tiny_llama

LM_EVAL_TASKS = Path(sys.modules["lm_eval"].__file__).parent / "tasks"
QUESTIONS = [
    f"Tom has {a} apples and buys {b} more. How many apples does he have?" for a, b in [(3, 4), (4, 4), (6, 1)]
]


@pytest.fixture(scope="module")
def seven_student(tmp_path_factory) -> Path:
    """A saved tiny scaffolded student (random weights, as conftest's served_student) whose answer is
    the token "7": its Response Generation embedding points along that token's (tied) embedding."""
    import torch

    from rscaffold.config import ModelConfig
    from rscaffold.model import make_student, save_student, student_meta
    from rscaffold.tokenizer import train_bpe

    tok = train_bpe(
        ["Question: A has 12 apples.\nThinking:\nSo the total is 19.\n\nLet me see, 3 + 4 is 7.\n\n"] * 10, 300
    )
    model = make_student(
        tiny_llama(tok, 0, positions=128, tie_word_embeddings=True), ModelConfig(lora=False), True, True
    )
    (seven,) = tok.encode("7", add_special_tokens=False)
    with torch.no_grad():
        model.signal_embedding.weight.normal_(0, 1.0)
        row = model.base_lm().get_input_embeddings().weight[seven]
        model.signal_embedding.weight[Signal.RESPONSE] = row * (40.0 / row.dot(row))  # bias 40 on "7"
        model.signal_head.bias[Signal.RESPONSE] = -10.0  # the head never ends early
    out = tmp_path_factory.mktemp("seven")
    layout = {"prompt_template": "Question: {question}\nThinking:\n", "predictor_query": "Next signal:"}
    save_student(model.eval(), tok, out, student_meta("scaffold", model, {"base": "tiny", "add_bos": True}, layout))
    return out


def gsm8k_folder(root: Path, answers: list[str], questions: list[str] | None = None) -> Path:
    """``root/gsm8k/test.jsonl`` in GSM8K's format (the gold answer after ``####``); returns ``root``."""
    questions = questions or [f"Question {i}: how many?" for i in range(len(answers))]
    (root / "gsm8k").mkdir(parents=True, exist_ok=True)
    records = [
        {"question": q, "answer": f"Worked solution.\n#### {a}"} for q, a in zip(questions, answers, strict=True)
    ]
    (root / "gsm8k" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


# -- the CLI ----------------------------------------------------------------------------------------

DECODE_ARGS = {"tau": 0.0, "max_steps": 1, "max_step_tokens": 4, "max_answer_tokens": 1}


@pytest.mark.slow
def test_lm_eval_cli_scores_the_student_on_local_gsm8k(tmp_path, seven_student):
    lm_eval = Path(sys.executable).with_name("lm_eval")
    if not lm_eval.exists():
        pytest.skip(f"{lm_eval}: the lm_eval command is not installed")
    data = gsm8k_folder(tmp_path / "bench", ["7", "8", "1,234", "9"], [*QUESTIONS, "Ann has 1,000 and 234 more."])
    model_args = ",".join([f"pretrained={seven_student}", "signal_source=predictor-head"])
    model_args += "".join(f",{k}={v}" for k, v in DECODE_ARGS.items())
    cmd = [
        str(lm_eval),
        "--model",
        "rscaffold",
        "--model_args",
        model_args,
        "--tasks",
        str(harness.TASKS / "gsm8k.yaml"),
    ]
    cmd += ["--metadata", f"benchmarks={data}", "--device", "cpu", "--batch_size", "4"]
    cmd += ["--output_path", str(tmp_path / "out"), "--log_samples"]
    env = {k: v for k, v in os.environ.items() if k != "RSCAFFOLD_BENCHMARKS"}
    env |= {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["rscaffold_gsm8k"]["effective"] == 4
    assert results["config"]["signal_source"] == "predictor-head"
    scores = {k: v for k, v in results["results"]["rscaffold_gsm8k"].items() if k.startswith("exact_match,")}
    # Every answer is "7": right for the first question only, and marked neither with "####" nor \boxed{}.
    assert scores == {
        "exact_match,strict-match": 0.0,
        "exact_match,flexible-extract": 0.25,
        "exact_match,rscaffold-strict": 0.0,
        "exact_match,rscaffold-flexible": 0.25,
    }
    (samples_file,) = (tmp_path / "out").rglob("samples_rscaffold_gsm8k_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    student = student_from_folder(seven_student, "cpu")
    cfg = DecodeConfig(**DECODE_ARGS, batch_size=4, device="cpu")
    questions = [Question(id=str(i), text=s["doc"]["question"]) for i, s in enumerate(samples)]
    assert [s["resps"][0][0] for s in samples] == [
        d.answer_text for d in Decoder(student, HeadPredictor(), cfg)(questions)
    ]
    assert samples[0]["resps"][0][0] == "7"


# -- the model in process ---------------------------------------------------------------------------


def request(context: str, **gen) -> Instance:
    return Instance("generate_until", {}, (context, {"until": [], "do_sample": False, **gen}), 0)


def test_generate_until_returns_what_the_decoder_writes(seven_student):
    lm = harness.ScaffoldLM(pretrained=str(seven_student), output="full", device="cpu", batch_size=2, **DECODE_ARGS)
    reqs = [request(q) for q in QUESTIONS] + [request(QUESTIONS[0], max_gen_toks=2)]
    out = lm.generate_until(reqs, disable_tqdm=True)
    student = student_from_folder(seven_student, "cpu")
    cfg = DecodeConfig(**DECODE_ARGS, batch_size=2, device="cpu")
    decoded = list(Decoder(student, HeadPredictor(), cfg)(Question(id=str(i), text=q) for i, q in enumerate(QUESTIONS)))
    assert out[:3] == ["".join(s.text + s.sep for s in d.steps) + d.answer_text for d in decoded]
    assert all(d.steps and d.answer_text == "7" for d in decoded)  # one step, then the answer
    (capped,) = Decoder(student, HeadPredictor(), cfg.model_copy(update={"max_new_tokens": 2}))(
        [Question(id="c", text=QUESTIONS[0])]
    )
    assert out[3] == capped.steps[0].text and len(out[3]) < len(out[0])  # max_gen_toks caps all tokens written
    assert harness.cut_at("a\n\nb ###c", ["###", "\n\n"]) == "a"


def test_golden_signals_are_matched_by_question_text(seven_student, tmp_path):
    steps = [Step(text="So 3 + 4 is 7.", sep="\n\n", signal=Signal.CONCLUSION), Step(text="7", signal=Signal.RESPONSE)]
    traces = tmp_path / "golden.jsonl"
    write_jsonl(traces, [Trace(question_id="gsm8k-test-00000", question=QUESTIONS[0], thinking="", steps=steps)])
    lm = harness.ScaffoldLM(
        pretrained=str(seven_student), signal_source="golden", golden=str(traces), device="cpu", **DECODE_ARGS
    )
    assert lm.question(QUESTIONS[0]).id == "gsm8k-test-00000"
    assert lm.generate_until([request(QUESTIONS[0])], disable_tqdm=True) == ["7"]
    with pytest.raises(InputError, match="no golden signals for question 'lm_eval-"):
        lm.generate_until([request(QUESTIONS[1])], disable_tqdm=True)


def test_bad_model_arguments_and_likelihood_requests_say_what_to_do(seven_student):
    with pytest.raises(InputError, match="--model_args taux: Extra inputs"):
        harness.ScaffoldLM(pretrained=str(seven_student), taux=0.5)
    with pytest.raises(InputError, match="output=steps"):
        harness.ScaffoldLM(pretrained=str(seven_student), output="steps")
    lm = harness.ScaffoldLM(pretrained=str(seven_student), device="cpu")
    with pytest.raises(NotImplementedError, match="--model hf"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("Q", " A"), 0)])


# -- the task files ---------------------------------------------------------------------------------


def task_filters(task_file: Path) -> tuple[dict, list]:
    """A task file as lm_eval reads it (functions resolved): its config and its filter ensembles."""
    cfg = load_yaml(task_file, resolve_func=True)
    ensembles = [
        build_filter_ensemble(
            f["name"], [(s["function"], {k: v for k, v in s.items() if k != "function"}) for s in f["filter"]]
        )
        for f in cfg["filter_list"]
    ]
    return cfg, ensembles


def exact_match(cfg: dict, instances: list[Instance], filter_name: str, references: list[str]) -> list[bool]:
    """The task's exact_match, with its settings, for each instance's answer under one filter."""
    kwargs = {k: v for k, v in cfg["metric_list"][0].items() if k not in ("metric", "aggregation", "higher_is_better")}
    return [
        bool(
            get_metric("exact_match")(references=[ref], predictions=[inst.filtered_resps[filter_name]], **kwargs)[
                "exact_match"
            ]
        )
        for inst, ref in zip(instances, references, strict=True)
    ]


def scored(task_file: Path, docs: list[dict], predictions: list[str], references: list[str]) -> dict[str, list]:
    """Each filter's (answers, exact_match) for the predictions, through lm_eval's filter classes."""
    cfg, ensembles = task_filters(task_file)
    instances = [
        Instance("generate_until", doc, ("", {}), i, resps=[p])
        for i, (doc, p) in enumerate(zip(docs, predictions, strict=True))
    ]
    out = {}
    for ensemble in ensembles:
        ensemble.apply(instances)
        out[ensemble.name] = (
            [i.filtered_resps[ensemble.name] for i in instances],
            exact_match(cfg, instances, ensemble.name, references),
        )
    return out


def test_every_task_file_loads_its_benchmark_offline_and_scores_a_right_answer(shared_benchmarks):
    files = sorted(harness.TASKS.glob("*.yaml"))
    assert {f.stem for f in files} == {
        "gsm8k",
        "math500",
        "svamp",
        "gsm_hard",
        "gsm_plus",
        "strategyqa",
        "commonsenseqa",
        "truthfulqa",
    }
    for task_file in files:
        cfg = load_yaml(task_file, resolve_func=True)
        data = cfg["custom_dataset"](**cfg["metadata"], **cfg["dataset_kwargs"], benchmarks=str(shared_benchmarks))
        docs = [data[cfg["test_split"]][i] for i in range(3)]
        # The model is given the bare question as the project's loader makes it; the gold is the loader's.
        benchmark, split = cfg["dataset_kwargs"]["benchmark"], cfg["dataset_kwargs"]["split"]
        questions = list(itertools.islice(load_questions(benchmark, split, shared_benchmarks / benchmark), 3))
        assert [apply_template(cfg["doc_to_text"], d) for d in docs] == [q.text for q in questions], task_file.name
        golds = [apply_template(cfg["doc_to_target"], d) for d in docs]
        assert golds == [q.gold for q in questions], task_file.name
        right = [f"So it is.\n\n###Answer: \\boxed{{{g}}}" for g in golds]
        wrong = ["###Answer: \\boxed{" + golds[(i + 1) % 3] + "}" for i in range(3)]
        result = scored(task_file, docs * 2, right + wrong, golds * 2)
        for name in ("rscaffold-strict", "rscaffold-flexible"):
            assert result[name][1] == [True] * 3 + [golds[(i + 1) % 3] == golds[i] for i in range(3)], (
                task_file.name,
                name,
            )


# -- GSM8K: the harness's filters beside the project's scoring --------------------------------------


class Case(NamedTuple):
    prediction: str
    gold: str
    """As a GSM8K record writes it after ``####``."""
    reader: str
    """Which strict rule reads the prediction: the harness's gsm8k (``#### N``), its gsm8k-cot (``The
    answer is N.``), neither, or only the project (``boxed``: it reads ``\\boxed{}`` as the harness's MATH tasks do)."""
    differs: str | None = None
    """Where the project scores differently on purpose: ``number`` (compares numbers, not strings: 2.50
    is 2.5) and ``fraction`` (flexible keeps ``1/4`` whole; the harness takes its denominator)."""


CASES = [
    Case("3 + 4 = 7 apples.\n#### 7", "7", "gsm8k"),
    Case("She has 1,000 + 234 coins.\n#### 1,234", "1,234", "gsm8k"),
    Case("It falls by 3.\n#### -3", "-3", "gsm8k"),
    Case("#### 3\nand then #### 4", "3", "gsm8k"),
    Case("#### 2.50", "2.5", "gsm8k", "number"),
    Case("The answer is 18.", "18", "gsm8k-cot"),
    Case("The answer is 18", "18", "gsm8k-cot"),  # the harness's quirk: its final "." eats the 8, both read "1"
    Case("The answer is $5.", "5", "neither"),
    Case("I could not work it out.", "4", "neither"),
    Case("Half of 5 is 2.5, so 2.5 hours.", "2.5", "neither"),
    Case("It cools to -12.5 degrees", "-12.5", "neither"),
    Case("So that is 18.00 dollars.", "18", "neither", "number"),
    Case("Each gets 1/4 of the pie.", "0.25", "neither", "fraction"),
    Case("\\boxed{12}", "12", "boxed"),
    Case("###Answer: \\boxed{7}", "7", "boxed"),
]


def test_gsm8k_harness_filters_and_project_scoring_agree_except_where_documented(tmp_path):
    records = [
        {"question": f"Question {i}?", "answer": f"Worked solution.\n#### {c.gold}"} for i, c in enumerate(CASES)
    ]
    predictions = [c.prediction for c in CASES]
    # The harness's GSM8K: its strict-match and flexible-extract (gsm8k.yaml), its cot strict-match
    # (gsm8k-cot.yaml), each scored by exact_match against the record's whole answer, as those files do.
    gsm8k = scored(LM_EVAL_TASKS / "gsm8k" / "gsm8k.yaml", records, predictions, [r["answer"] for r in records])
    cot = scored(LM_EVAL_TASKS / "gsm8k" / "gsm8k-cot.yaml", records, predictions, [c.gold for c in CASES])
    # The project: `rscaffold evaluate --benchmark gsm8k --predictions FILE`, gold from its GSM8K loader.
    docs = harness.benchmark_dataset("gsm8k", "test", str(gsm8k_folder(tmp_path, [c.gold for c in CASES])))["test"]
    path = tmp_path / "predictions.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": str(i), "prediction": p, "gold": d["gold"]}) + "\n"
            for i, (p, d) in enumerate(zip(predictions, docs, strict=True))
        )
    )
    _, project = score_predictions(path, "gsm8k", EvaluateConfig())
    for i, (case, p) in enumerate(zip(CASES, project, strict=True)):
        answer, right = gsm8k["flexible-extract"][0][i], gsm8k["flexible-extract"][1][i]
        if case.differs == "fraction":
            assert (answer, right, p["answer_flexible"], p["correct_flexible"]) == ("4", False, "1/4", True)
        else:
            assert p["answer_flexible"] == answer, case
            assert p["correct_flexible"] == (right or case.differs == "number"), case
        harness_strict = {"gsm8k": gsm8k["strict-match"], "gsm8k-cot": cot["strict-match"]}.get(case.reader)
        if harness_strict is None:  # neither harness rule reads it
            assert gsm8k["strict-match"][0][i] == cot["strict-match"][0][i] == INVALID, case
            expected = (answer, True) if case.reader == "boxed" else (INVALID, False)
            assert (p["answer_strict"], p["correct_strict"]) == expected, case
        else:
            assert p["answer_strict"] == harness_strict[0][i], case
            assert p["correct_strict"] == (harness_strict[1][i] or case.differs == "number"), case
        if case.differs == "number":  # a number the harness's string comparison misses
            assert not (gsm8k["strict-match"][1][i] or right) and p["correct_flexible"], case
    # The task file's own filters reproduce the project's verdicts through lm_eval's exact_match.
    ours = scored(harness.TASKS / "gsm8k.yaml", list(docs), predictions, [d["gold"] for d in docs])
    assert ours["rscaffold-strict"][1] == [p["correct_strict"] for p in project]
    assert ours["rscaffold-flexible"][1] == [p["correct_flexible"] for p in project]
    assert ours["strict-match"] == gsm8k["strict-match"] and ours["flexible-extract"] == gsm8k["flexible-extract"]

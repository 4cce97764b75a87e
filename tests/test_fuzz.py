"""Malformed input to every stage's reader, through the command: exit 2, one line, no traceback, no output.

Hypothesis writes the input (truncated JSON, wrong types, non-UTF-8 bytes, missing fields, huge numbers,
nested garbage, records that are not objects; YAML configs and ``KEY=VALUE`` overrides malformed the same
ways), and each example runs ``rscaffold.cli.main`` in a fresh temporary folder. The examples are
derandomised: the suite is the same on every run (raise ``max_examples`` locally to search further).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rscaffold.cli import main
from rscaffold.label import label_keywords
from rscaffold.schema import Trace
from rscaffold.segment import segment_traces
from rscaffold.signals import Signal, load_lexicon

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TRACE = Trace(
    question_id="q1",
    question="A has 3 apples and gets 4 more. How many?",
    thinking="First, A has 3.\n\nBut A gets 4 more.\n\nSo A has 7.",
    answer_text="###Answer: \\boxed{7}",
    final_answer="7",
    gold="7",
)
LABELLED = next(label_keywords(segment_traces([TRACE]), load_lexicon("paper")))


def _json(record: Trace | dict) -> dict:
    return json.loads(record.model_dump_json()) if isinstance(record, Trace) else record


# stage -> (its command, with {IN} and {OUT} to fill in; a record it accepts)
READERS = {
    "segment": (["segment", "--input", "{IN}", "--output", "{OUT}"], _json(TRACE)),
    "label": (["label", "--input", "{IN}", "--output", "{OUT}", "--policy", "keywords"], _json(LABELLED)),
    "stats": (["stats", "--input", "{IN}", "--output", "{OUT}"], _json(LABELLED)),
    "build": (["build", "--input", "{IN}", "--output", "{OUT}", "model.base=tiny"], _json(LABELLED)),
    "import": (
        ["import", "--input", "{IN}", "--output", "{OUT}"],
        {"id": "a1", "question": "How many?", "trace": "First, 3.\n\nSo 7.", "answer_text": "7", "model": "m"},
    ),
    "evaluate": (
        ["evaluate", "--benchmark", "testbed", "--predictions", "{IN}", "--output", "{OUT}"],
        {"id": "q1", "prediction": "###Answer: \\boxed{7}", "gold": "7", "tokens": 12},
    ),
}
TRACE_FIELDS = (["question_id", "thinking", "steps"], ["question_id", "thinking"])
FIELDS = {  # (fields that must hold a string, or a list for steps; fields that are required)
    "segment": TRACE_FIELDS,
    "label": TRACE_FIELDS,
    "stats": TRACE_FIELDS,
    "build": TRACE_FIELDS,
    "import": (["trace"], ["trace"]),
    "evaluate": (["prediction"], ["id", "prediction", "gold"]),
}
OBJECT_READERS = ("import", "evaluate")
"""Stages that read plain JSON objects (``schema.read_json_objects``) rather than validated records."""

# -- running the command --------------------------------------------------------------------------


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    """stdout dropped; stderr and every log line at INFO and above into one buffer (the CLI logs to
    stderr at INFO, so a log line would be a second line on the terminal)."""
    err = io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            yield err
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def assert_refused(argv: list[str], folder: Path, what: object) -> None:
    """``main(argv)`` exits 2 with one line ``rscaffold: error: ...`` and leaves no file behind."""
    before = sorted(folder.rglob("*"))
    with _captured() as err:
        try:
            code = main(argv)
        except BaseException as e:  # a traceback is the failure this test looks for
            raise AssertionError(f"{type(e).__name__}: {e} on {what!r}") from e
    lines = err.getvalue().splitlines()
    assert code == 2, f"exit {code} on {what!r}: {err.getvalue()}"
    assert len(lines) == 1 and lines[0].startswith("rscaffold: error: "), f"{lines} on {what!r}"
    assert sorted(folder.rglob("*")) == before, f"left behind on {what!r}"


def run_reader(stage: str, content: bytes) -> None:
    command, _ = READERS[stage]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inp, out = folder / "in.jsonl", folder / "out.jsonl"
        inp.write_bytes(content)
        argv = [a.format(IN=inp, OUT=out if stage != "build" else folder / "out") for a in command]
        assert_refused(argv, folder, content[:300])


def run_config(config: bytes | None, overrides: list[str], stage: str = "segment") -> None:
    """``rscaffold STAGE --input VALID --output OUT`` with the config file and the overrides."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inp = folder / "in.jsonl"
        inp.write_text(json.dumps(_json(LABELLED)) + "\n")
        argv = [stage, *overrides, "--input", str(inp), "--output", str(folder / "out.jsonl")]
        if config is not None:
            (folder / "c.yaml").write_bytes(config)
            argv += ["--config", str(folder / "c.yaml")]
        assert_refused(argv, folder, (config or b"")[:300] + repr(overrides).encode()[:300])


# -- malformed JSONL ------------------------------------------------------------------------------

SCALARS = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=8))
NOT_A_STRING = st.one_of(
    st.integers(), st.floats(), st.booleans(), st.lists(SCALARS, max_size=3), st.dictionaries(st.text(), SCALARS)
)
NOT_A_LIST_OF_STEPS = st.one_of(st.integers(), st.text(), st.lists(SCALARS, min_size=1, max_size=3))
NOT_A_SIGNAL = st.one_of(
    st.integers().filter(lambda i: not 0 <= i < len(Signal)),
    st.text().filter(lambda t: t.strip().lower() not in {s.key for s in Signal} | {s.title.lower() for s in Signal}),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(0, 6), max_size=2),
)
NOT_A_DICT = st.one_of(st.integers(), st.text(), st.lists(SCALARS, min_size=1), st.booleans())
NOT_A_CONFIDENCE = st.one_of(st.floats(1.0001, 1e308), st.floats(max_value=-1e-9), st.text(alphabet="abc", min_size=1))
TRACE_OPTIONAL = [  # optional fields, and values they refuse
    ("gold", NOT_A_STRING),
    ("final_answer", NOT_A_STRING),
    ("teacher", NOT_A_STRING),
    ("metadata", NOT_A_DICT),
    ("steps", st.builds(lambda c: [{"text": "So 3.", "confidence": c}], NOT_A_CONFIDENCE)),
    ("steps", st.builds(lambda by: [{"text": "So 3.", "labelled_by": by}], st.text(alphabet="xyz", min_size=1))),
    ("steps", st.just([{"sep": "\n\n"}])),
]
OPTIONAL = {
    **dict.fromkeys(["segment", "label", "stats", "build"], TRACE_OPTIONAL),
    "import": [("question", NOT_A_STRING)],
    "evaluate": [("gold", st.none())],
}
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"])


def _dumps(record: dict) -> bytes:
    return json.dumps(record, allow_nan=True).encode()


def _raw(record: dict, field: str, literal: str) -> bytes:
    """The record with ``field`` set to a JSON literal written as it is (a number too long for a
    float, nesting too deep for a parser)."""
    marker = "\u0000FIELD\u0000"
    return json.dumps({**record, field: marker}).replace(json.dumps(marker), literal).encode()


@st.composite
def bad_line(draw: st.DrawFn, stage: str, limits: tuple[int, int] = (4000, 500)) -> bytes:
    """One line that the stage must refuse. ``limits``: most digits of a huge number and deepest nesting."""
    _, record = READERS[stage]
    typed, required = FIELDS[stage]
    line = _dumps(record)
    digits, depth = limits
    kinds = ["truncated", "utf8", "type", "missing", "huge", "nested", "not_object", "signal", "optional"]
    kind = draw(st.sampled_from(kinds))
    if kind == "truncated":
        return line[: draw(st.integers(1, len(line) - 1))]
    if kind == "utf8":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(BAD_UTF8) + line[at:]
    if kind == "type":
        field = draw(st.sampled_from(typed))
        return _dumps({**record, field: draw(NOT_A_LIST_OF_STEPS if field == "steps" else NOT_A_STRING)})
    if kind == "missing":
        field = draw(st.sampled_from(required))
        return _dumps({k: v for k, v in record.items() if k != field})
    if kind == "huge":
        number = draw(
            st.one_of(
                st.integers(20, digits).map(lambda n: "9" * n),
                st.sampled_from(["1e999", "-1e400", "1.7976931348623157e309", "Infinity", "-Infinity", "NaN"]),
            )
        )
        return _raw(record, draw(st.sampled_from(typed)), number)
    if kind == "nested":
        n = draw(st.integers(1, depth))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}"), ('[{"b": ', "}]")]))
        return _raw(record, draw(st.sampled_from(typed)), opener * n + "0" + closer * n)
    if kind == "not_object":
        return draw(st.sampled_from([b"[1, 2]", b'"text"', b"42", b"null", b"true", b"[]", b"[{}]"]))
    if kind == "optional":
        field, values = draw(st.sampled_from(OPTIONAL[stage]))
        return _dumps({**record, field: draw(values)})
    if stage in OBJECT_READERS:  # "signal": records without steps: a type error instead
        return _dumps({**record, typed[0]: draw(NOT_A_STRING)})
    steps = record.get("steps") or [{"text": "First, A has 3."}]
    steps = [{**steps[0], "signal": draw(NOT_A_SIGNAL)}, *steps[1:]]
    return _dumps({**record, "steps": steps})


@st.composite
def bad_file(draw: st.DrawFn, stage: str, limits: tuple[int, int] = (4000, 500)) -> bytes:
    """Valid lines, one bad line, maybe valid lines after it; or an empty file."""
    if draw(st.integers(0, 12)) == 0:
        return draw(st.sampled_from([b"", b"\n", b"  \n\n\t\n"]))
    good = _dumps(READERS[stage][1])
    before, after = draw(st.integers(0, 3)), draw(st.integers(0, 2))
    return b"\n".join([good] * before + [draw(bad_line(stage, limits))] + [good] * after) + b"\n"


@pytest.mark.parametrize("stage", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_malformed_jsonl_is_refused_in_one_line(stage, data):
    run_reader(stage, data.draw(bad_file(stage)))


@pytest.mark.parametrize(
    "stage",
    [
        *sorted(READERS),
    ],
)
@pytest.mark.parametrize(("kind", "size"), [("huge", 4400), ("huge", 50_000), ("nested", 2000), ("nested", 100_000)])
def test_very_deep_nesting_and_very_long_numbers_are_refused_in_one_line(stage, kind, size):
    _, record = READERS[stage]
    literal = "9" * size if kind == "huge" else "[" * size + "]" * size
    run_reader(stage, _raw(record, FIELDS[stage][0][0], literal) + b"\n")


@FUZZ
@given(tokens=st.one_of(st.text(), st.lists(st.integers(), min_size=1), st.dictionaries(st.text(), st.integers())))
def test_predictions_whose_tokens_are_not_a_number_are_refused_in_one_line(tokens):
    _, record = READERS["evaluate"]
    run_reader("evaluate", _dumps({**record, "tokens": tokens}) + b"\n")


# -- malformed config files and overrides ---------------------------------------------------------

VALID_CONFIG = "run:\n  seed: 3\nlabel:\n  lexicon: extended\n"
BROKEN_YAML = [
    "a: b: c\n",
    "\tseed: 1\n",
    "run: *nowhere\n",
    "run: !!python/object/apply:os.system ['true']\n",
    "run: 'unterminated\n",
    "run: {seed: 1\n",
    "run:\n  seed: [1, 2\n",
    "? [a\n",
    "run:\n  - a\n   - b\n",
    "%YAML 9.9\n---\nrun: {}\n",
]
KNOWN_KEYS = ["run.seed", "label.lexicon", "generate.api.max_tokens", "testbed.train", "decode.tau"]
INVALID_VALUES = {  # a dotted key, and values its field refuses
    "run.seed": st.one_of(st.text(alphabet="abcxyz", min_size=1), st.lists(st.integers(), min_size=1)),
    "run.stages": st.lists(st.sampled_from(["generte", "lable", "eval"]), min_size=1),
    "testbed.reuse_share": st.floats(1.01, 1e300) | st.floats(-1e300, -0.01),
    "testbed.train": st.integers(max_value=-1),
    "testbed.train_ops": st.tuples(st.integers(2, 9), st.integers(0, 1)),
    "generate.teacher": st.text(alphabet="xyz", min_size=1),
    "generate.api.max_tokens": st.integers(max_value=0) | st.just("many"),
    "generate.api.api_key_env": st.text(alphabet="sk-/+=. 0123", min_size=1).filter(
        lambda t: t.strip() and not re.fullmatch(r"[A-Za-z_]\w*", t)
    ),
    "generate.api.base_url": st.sampled_from(["nohost", "ftp://x/v1", "https://u:p@h/v1", "http://h/v1?k=1"]),
    "judge.temperature": st.floats(max_value=-0.001) | st.dictionaries(st.text(min_size=1), st.integers(), min_size=1),
    "label.lexicon": st.text(alphabet="abc/", min_size=1).filter(lambda t: t not in ("paper", "extended")),
    "label.judge_min_confidence": st.floats(1.001, 1e308),
    "import.format": st.sampled_from(["xml", "csv", "", "SHARED"]),
    "decode.tau": st.lists(st.integers(), min_size=1) | st.just("high"),
}
UNKNOWN_KEY = st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True).filter(
    lambda k: (
        k not in {"run", "testbed", "generate", "import", "label", "judge", "build", "model", "train"}
        and k not in {"decode", "evaluate", "report", "experiment", "serve", "cache"}
    )
)


def _nest(data: dict, dotted: str, value: object) -> dict:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return data


@st.composite
def bad_config(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["syntax", "utf8", "not_mapping", "unknown", "value", "nested", "scalar_section"]))
    if kind == "syntax":
        cut = draw(st.integers(0, len(VALID_CONFIG)))
        cut = VALID_CONFIG.rfind("\n", 0, cut) + 1  # whole lines, then the broken one
        return (VALID_CONFIG[:cut] + draw(st.sampled_from(BROKEN_YAML))).encode()
    if kind == "utf8":
        at = draw(st.integers(0, len(VALID_CONFIG)))
        return VALID_CONFIG.encode()[:at] + draw(BAD_UTF8) + VALID_CONFIG.encode()[at:]
    if kind == "not_mapping":
        value = draw(st.one_of(st.lists(SCALARS), st.integers(), st.floats(), st.booleans(), st.text(min_size=1)))
        return yaml.safe_dump(value).encode()
    if kind == "unknown":
        where = draw(st.sampled_from(["", "run.", "label.", "generate.api."]))
        return yaml.safe_dump(_nest({"run": {"seed": 1}}, where + draw(UNKNOWN_KEY), 1)).encode()
    if kind == "value":
        key = draw(st.sampled_from(sorted(INVALID_VALUES)))
        return yaml.safe_dump(_nest({}, key, draw(INVALID_VALUES[key]))).encode()
    if kind == "nested":
        n = draw(st.one_of(st.integers(1, 50), st.integers(900, 1100)))
        return ("run: " + "[" * n + "1" + "]" * n + "\n").encode()
    return yaml.safe_dump({draw(st.sampled_from(["run", "label", "generate"])): draw(SCALARS)}).encode()


@st.composite
def bad_override(draw: st.DrawFn) -> list[str]:
    """``KEY=VALUE`` arguments that the config must refuse (all shaped as overrides, so that they
    reach the config rather than the argument parser)."""
    kind = draw(st.sampled_from(["yaml", "unknown", "value", "nested", "section_holds_value"]))
    if kind == "yaml":
        value = draw(st.sampled_from(["[1, 2", "{a: 1", "'x", '"x', "*alias", "!!python/name:os.system", "a: b: c"]))
        return [f"{draw(st.sampled_from(KNOWN_KEYS))}={value}"]
    if kind == "unknown":
        return [f"{draw(st.sampled_from(['', 'run.', 'label.', 'judge.']))}{draw(UNKNOWN_KEY)}=1"]
    if kind == "value":
        key = draw(st.sampled_from(sorted(INVALID_VALUES)))
        return [f"{key}={json.dumps(draw(INVALID_VALUES[key]))}"]
    if kind == "nested":
        n = draw(st.one_of(st.integers(1, 50), st.integers(900, 1100)))
        return [f"{draw(st.sampled_from(KNOWN_KEYS))}={'[' * n}1{']' * n}"]
    section = draw(st.sampled_from(["run", "label", "generate"]))
    return [f"{section}={draw(st.integers())}", f"{section}.seed=1"]


@FUZZ
@given(config=bad_config())
def test_malformed_config_files_are_refused_in_one_line(config):
    run_config(config, [])


@pytest.mark.parametrize("stage", ["segment", "stats"])
@FUZZ
@given(overrides=bad_override())
def test_malformed_overrides_are_refused_in_one_line(stage, overrides):
    run_config(None, overrides, stage)

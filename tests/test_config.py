"""The config tree: defaults, YAML deltas, overrides, errors; every shipped config and the scripts that use them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rscaffold.config import Config, apply_override, dump_config, load_config, shipped_config
from rscaffold.schema import InputError


def test_defaults_and_overrides():
    cfg = load_config(None, ["label.lexicon=extended", "run.seed=7", "generate.filter_wrong=false"])
    assert (cfg.label.lexicon, cfg.run.seed, cfg.generate.filter_wrong) == ("extended", 7, False)
    assert load_config().label.lexicon == "paper"


def test_yaml_deltas_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("label:\n  lexicon: extended\nimport:\n  format: think\n")
    cfg = load_config(path, ["import.fields.text=output"])
    assert (cfg.label.lexicon, cfg.import_.format, cfg.import_.fields.text) == ("extended", "think", "output")


def test_override_values_are_typed():
    data: dict = {}
    for o in ["a.lr=3e-5", "a.n=3", "a.on=true", "a.name=x y", "a.list=[1, 2]"]:
        apply_override(data, o)
    assert data == {"a": {"lr": 3e-5, "n": 3, "on": True, "name": "x y", "list": [1, 2]}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("label.lexicom=paper", "config key 'label.lexicom' is unknown; did you mean 'label.lexicon'?"),
        ("lable.lexicon=paper", "did you mean 'label'"),
        ("label.lexicon=nosuch", "config key 'label.lexicon': expected one of paper, extended"),
        ("run.seed=abc", "config key 'run.seed'"),
        ("import.format=xml", "config key 'import.format'"),
        ("novalue", "expected KEY=VALUE"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_config(None, [override])


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(InputError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_every_shipped_config_loads_and_round_trips(tmp_path):
    configs = sorted(shipped_config("demo").parent.glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        again = tmp_path / path.name
        again.write_text(dump_config(cfg))
        assert load_config(again) == cfg
    assert load_config("demo") == load_config(shipped_config("demo"))


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from walk(sub)
            elif model is not Config:
                yield f"{model.__name__}.{name}", field.description

    missing = [name for name, doc in walk(Config) if not doc]
    assert missing == []


ROOT = Path(__file__).resolve().parent.parent


def test_smollm2_gsm8k_config():
    cfg = load_config("smollm2-gsm8k")
    assert cfg.model.base == "smollm2" and cfg.model.lora is True
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.epochs) == (1e-4, 1, 8, 1)
    assert cfg.run.stages[0] == "import" and cfg.run.stages[-1] == "report"
    assert (cfg.run.benchmark.name, cfg.run.benchmark.limit) == ("gsm8k", 100)
    rows = {f"{v.student}__{v.name}" for v in cfg.experiment.variants}
    assert rows == {"scaffold__predictor-gate", "cot-sft__free", "long-sft__free", "original__free"}
    assert {c.b for c in cfg.experiment.comparisons} <= rows and cfg.experiment.reference in rows
    prompt = cfg.build.prompt_template.format(question="Tom has 3 apples. How many?")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "Tom has 3 apples. How many?\n\nPlease reason step by step" in prompt
    assert "###Answer: \\boxed{...}." in prompt


def test_gpu_config():
    cfg = load_config("gpu")
    assert cfg.experiment.seeds == [0, 1, 2]
    assert cfg.model.base == "testbed" and cfg.train.bf16 is False
    assert cfg.testbed.train > load_config("demo").testbed.train
    assert load_config("gpu", ["experiment.seeds=[0]"]).experiment.seeds == [0]


@pytest.mark.parametrize("name", ["smollm2-gsm8k", "gpu"])
def test_configs_hold_only_known_keys(name):
    import yaml

    assert shipped_config(name).exists()
    assert isinstance(yaml.safe_load(shipped_config(name).read_text()), dict)
    load_config(shipped_config(name))  # by path too


@pytest.mark.parametrize("script", ["smollm2_gsm8k.sh", "gpu_experiment.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


@pytest.mark.slow
def test_gpu_script_dry_run_checks_config(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "RUN": str(tmp_path / "gpu")}
    script = str(ROOT / "scripts" / "gpu_experiment.sh")
    ok = subprocess.run(["bash", script, "experiment.seeds=[0]"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "dry run: would run" in ok.stderr and "demo --config gpu" in ok.stderr
    bad = subprocess.run(["bash", script, "experiment.seedz=1"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "did you mean 'experiment.seeds'" in bad.stderr


SECRET = "sk-ant-api03-T3stOnlyN0tAR3alK3y"


@pytest.mark.parametrize(
    "override",
    [
        f"generate.api.api_key_env={SECRET}",
        f"judge.api_key_env={SECRET}",
        "judge.api_key_env=12345",
        f"generate.api.api_key_env=[{SECRET}]",
        f"generate.api.base_url=https://user:{SECRET}@api.example.com/v1",
        f"judge.base_url=http://{SECRET}@127.0.0.1:8000/v1",
        f"generate.api.base_url=https://api.example.com/v1?key={SECRET}",
        f"generate.api.base_url={SECRET}",
    ],
)
def test_a_key_in_api_key_env_or_base_url_is_refused_without_echoing_it(override):
    with pytest.raises(InputError) as e:
        load_config(None, [override])
    message = str(e.value)
    assert message.startswith(f"config key '{override.partition('=')[0]}'") and "\n" not in message
    assert SECRET not in message and "12345" not in message


def test_variable_names_and_plain_urls_are_accepted():
    given = ["generate.api.api_key_env=DEEPSEEK_API_KEY", "judge.api_key_env=_k2", "judge.base_url=https://h.ai/v1"]
    cfg = load_config(None, given)
    assert (cfg.generate.api.api_key_env, cfg.judge.api_key_env, cfg.judge.base_url) == (
        "DEEPSEEK_API_KEY",
        "_k2",
        "https://h.ai/v1",
    )
    assert load_config(None, ["judge.api_key_env="]).judge.api_key_env is None
    assert load_config(None, ["judge.api_key_env=null"]).judge.api_key_env is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.seed=[1, 2", "override 'run.seed': the value is not valid YAML"),
        ("run.seed=" + "[" * 1200, "override 'run.seed': the value is not valid YAML"),
        ("label.lexicon=" + "x" * 5000, "expected one of paper, extended or an existing TSV file"),
        (f"generate.api=1 generate.api.api_key_env={SECRET}", "'api' holds a value, not a section"),
    ],
)
def test_malformed_overrides_are_one_line_errors(override, message):
    with pytest.raises(InputError) as e:
        load_config(None, override.split(" "))
    assert "\n" not in str(e.value) and SECRET not in str(e.value)
    assert message is None or message in str(e.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"run:\n  seed: \xff\n", "not valid UTF-8 (byte 0xff"),
        (b"run: " + b"[" * 5000 + b"\n", "invalid YAML"),
        (b"run:\n  seed: 1\n  seed: [\n", "invalid YAML"),
        (b'"run\\nx": 1\n', r"config key 'run\nx' is unknown"),
    ],
)
def test_malformed_config_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_config(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_config_path_too_long_for_the_system_is_an_error():
    with pytest.raises(InputError, match="cannot read config"):
        load_config("c" * 5000 + ".yaml")


def test_a_malformed_lexicon_file_fails_when_the_config_loads(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("# version: x\nbut\tcontrast\nso\tnonsense\n")
    with pytest.raises(InputError) as e:
        load_config(None, [f"label.lexicon={bad}"])
    assert str(e.value).startswith(f"config key 'label.lexicon': {bad}:3: field 'signal': unknown signal 'nonsense'")

"""The shipped SmolLM2/GSM8K and GPU configs validate, their scripts parse, and an untrained base model
decodes (the paper's "Original" row) with the students' prompt template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rscaffold.cli import main
from rscaffold.config import load_config, shipped_config

ROOT = Path(__file__).resolve().parent.parent


def test_smollm2_gsm8k_config():
    cfg = load_config("smollm2-gsm8k")
    assert cfg.model.base == "smollm2" and cfg.model.lora is True
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.epochs) == (1e-4, 1, 8, 3)
    assert cfg.run.stages == ["import", "segment", "label", "stats"]
    prompt = cfg.build.prompt_template.format(question="Tom has 3 apples. How many?")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "Tom has 3 apples. How many?\n\nPlease reason step by step" in prompt
    assert "###Answer: \\boxed{...}." in prompt


def test_gpu_config():
    cfg = load_config("gpu")
    assert cfg.demo.seeds == [0, 1, 2]
    assert cfg.model.base == "testbed" and cfg.train.bf16 is False
    assert cfg.testbed.train > load_config("demo").testbed.train
    assert load_config("gpu", ["demo.seeds=[0]"]).demo.seeds == [0]


@pytest.mark.parametrize("name", ["smollm2-gsm8k", "gpu"])
def test_configs_hold_only_known_keys(name):
    import yaml

    assert shipped_config(name).exists()
    assert isinstance(yaml.safe_load(shipped_config(name).read_text()), dict)
    load_config(shipped_config(name))  # by path too


@pytest.mark.parametrize("script", ["smollm2_gsm8k.sh", "gpu_experiment.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_gpu_script_dry_run_checks_config(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "RUN": str(tmp_path / "gpu")}
    script = str(ROOT / "scripts" / "gpu_experiment.sh")
    ok = subprocess.run(["bash", script, "demo.seeds=[0]"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "dry run: would run" in ok.stderr and "demo --config gpu" in ok.stderr
    bad = subprocess.run(["bash", script, "demo.seedz=1"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "did you mean 'demo.seeds'" in bad.stderr


# -- the untrained base model as a student --------------------------------------------------------


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory) -> Path:
    """A tiny random Llama and its tokenizer saved as a plain Hugging Face folder (no rscaffold meta)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["Q: A has 3 apples.\nA: 3\n\nSo 3."] * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("base")
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_base_student_uses_the_prompt_template_and_decodes_like_generate(base_folder):
    import torch

    from rscaffold.decode import DecodeConfig, student_from_folder
    from rscaffold.decoder import Decoder
    from rscaffold.schema import Question
    from rscaffold.signal_sources import NoSignals

    student = student_from_folder(base_folder, "cpu", "Q: {question}\nA:")
    assert student.method == "original" and student.signal_head is None and student.signal_bias is None
    assert student.prompt("A has 3 apples.") == "Q: A has 3 apples.\nA:"
    q = Question(id="q0", text="A has 3 apples.", gold="3")
    [out] = Decoder(student, NoSignals(), DecodeConfig(max_tokens=12))([q])
    ids = torch.tensor([student.encode(student.prompt(q.text))])
    ref = student.lm.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=student.tokenizer.eos_token_id)
    new = ref[0, ids.shape[1] :].tolist()
    assert out.tokens == len(new)
    text = student.tokenizer.decode(new, skip_special_tokens=True)
    assert "".join(s.text + s.sep for s in out.steps) + out.answer_text == text


def test_decode_cli_on_a_base_model_folder(base_folder, tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q0", "text": "A has 3 apples.", "gold": "3", "task": "gsm8k"}) + "\n")
    out = tmp_path / "original__none__test.jsonl"
    args = ["decode", "--student", str(base_folder), "--input", str(questions), "--output", str(out)]
    assert main([*args, 'build.prompt_template="Q: {question}\\nA:"', "decode.max_tokens=8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["student"] == "original" and summary["signal_source"] == "none"
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["method"] == "original" and record.get("signal_source", "none") == "none"
    assert record["benchmark"] == "gsm8k" and 0 < record["tokens"] <= 8


def test_decode_cli_on_neither_student_nor_base(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q0", "text": "x", "gold": "1"}) + "\n")
    missing = tmp_path / "no-such-model"
    args = ["decode", "--student", str(missing), "--input", str(questions), "--output", str(tmp_path / "o.jsonl")]
    assert main(args) == 2
    assert "neither a trained student folder nor a base model" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()

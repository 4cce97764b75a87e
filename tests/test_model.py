"""The proposer: SEL and signal head, the decode contract (KV cache, signal bias), losses, save and load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rscaffold.cli import main
from rscaffold.config import ModelConfig
from rscaffold.model import Proposer, load_student, make_student, save_student, student_meta
from rscaffold.tokenizer import IGNORE, train_bpe
from tests.conftest import tiny_llama

VOCAB_TEXTS = ["A has 12 apples. So the total is 19.\n\nLet me see, 3 + 4 is 7."] * 10


@pytest.fixture(scope="module")
def tok():
    return train_bpe(VOCAB_TEXTS, vocab_size=280)


def tiny_lm(tok, seed: int = 0):
    return tiny_llama(tok, seed, positions=128, tie_word_embeddings=True)


def proposer(tok, lora: bool = False, seed: int = 0) -> Proposer:
    model = make_student(tiny_lm(tok, seed), ModelConfig(lora=lora, lora_r=4), sel=True, head=True)
    with torch.no_grad():  # random SEL rows, so that tests see its effect (a fresh SEL is zeros)
        model.signal_embedding.weight.normal_(0, 0.5)
    return model.eval()


def batch(n: int = 2, width: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 200, (n, width), generator=g)
    signal_ids = torch.randint(-1, 7, (n, width), generator=g)
    labels = ids.clone()
    labels[:, :4] = IGNORE
    targets = torch.full((n, width), IGNORE)
    targets[:, 3], targets[:, 7] = 2, 5
    return {"input_ids": ids, "signal_ids": signal_ids, "labels": labels, "signal_targets": targets}


def test_forward_shapes_and_the_sel_is_a_bias_over_the_vocabulary(tok):
    model = proposer(tok)
    b = batch()
    lm, sig, _ = model(b["input_ids"], signal_ids=b["signal_ids"])
    assert lm.shape == (2, 12, len(tok)) and sig.shape == (2, 12, 7)
    plain, sig_plain, _ = model(b["input_ids"])
    assert torch.equal(sig, sig_plain)  # the head reads the hidden state before the SEL
    for s in range(7):
        at = b["signal_ids"] == s
        torch.testing.assert_close(lm[at], plain[at] + model.signal_bias(s), atol=1e-5, rtol=1e-5)
    assert torch.equal(model.signal_bias()[3], model.signal_bias(3))
    untouched = b["signal_ids"] < 0
    torch.testing.assert_close(lm[untouched], plain[untouched])


def test_incremental_decoding_with_the_kv_cache_equals_one_full_pass(tok):
    model = proposer(tok)
    b = batch(n=1)
    ids, sig = b["input_ids"], b["signal_ids"]
    full_lm, full_sig, _ = model(ids, signal_ids=sig)
    lm, sg, cache = model(ids[:, :5], signal_ids=sig[:, :5], use_cache=True)
    steps_lm, steps_sig = [lm], [sg]
    for p in range(5, ids.shape[1]):
        lm, sg, cache = model(ids[:, p : p + 1], signal_ids=sig[:, p : p + 1], past_key_values=cache, use_cache=True)
        steps_lm.append(lm)
        steps_sig.append(sg)
    torch.testing.assert_close(torch.cat(steps_lm, 1), full_lm, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.cat(steps_sig, 1), full_sig, atol=1e-4, rtol=1e-4)


def test_training_losses_equal_cross_entropy_over_full_logits(tok):
    model = proposer(tok)
    b = batch()
    losses = model(**b)
    lm, sig, _ = model(b["input_ids"], signal_ids=b["signal_ids"])
    keep = b["labels"][:, 1:] != IGNORE
    token = F.cross_entropy(lm[:, :-1][keep], b["labels"][:, 1:][keep])
    at = b["signal_targets"] != IGNORE
    torch.testing.assert_close(losses.token, token)
    torch.testing.assert_close(losses.signal, F.cross_entropy(sig[at], b["signal_targets"][at]))


def test_sel_and_head_gradients_are_non_zero(tok):
    model = proposer(tok).train()
    losses = model(**batch())
    (losses.token + losses.signal).backward()
    assert model.signal_embedding.weight.grad.abs().sum() > 0
    assert model.signal_head.weight.grad.abs().sum() > 0
    used = batch()["signal_ids"][:, :-1][batch()["labels"][:, 1:] != IGNORE].unique()
    assert all(model.signal_embedding.weight.grad[s].abs().sum() > 0 for s in used if s >= 0)


def test_ablations_drop_the_layers(tok):
    model = make_student(tiny_lm(tok), ModelConfig(), sel=False, head=False)
    _, sig, _ = model(batch()["input_ids"], signal_ids=batch()["signal_ids"])
    assert sig is None and model.signal_embedding is None
    assert model(**batch()).signal.item() == 0.0


@pytest.mark.parametrize("lora,merge", [(False, True), (True, True), (True, False)])
def test_save_then_load_gives_equal_logits(tok, tmp_path: Path, lora: bool, merge: bool):
    model = proposer(tok, lora=lora)
    if lora:  # LoRA B starts at zero; move it so that merging matters
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    b = batch()
    lm, sig, _ = model(b["input_ids"], signal_ids=b["signal_ids"])
    base_dir = tmp_path / "base"
    if not merge:  # an adapter names its base; a folder is a valid base
        tiny_lm(tok).save_pretrained(str(base_dir))
        tok.save_pretrained(str(base_dir))
    info = {"base": str(base_dir), "add_bos": True, "prompt_template": "Q: {question}\n"}
    save_student(model, tok, tmp_path / "student", student_meta("scaffold", model, info, {}), merge=merge)
    files = {p.name for p in (tmp_path / "student").iterdir()}
    assert "signal_layers.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    loaded, tok2, meta = load_student(tmp_path / "student")
    lm2, sig2, _ = loaded(b["input_ids"], signal_ids=b["signal_ids"])
    torch.testing.assert_close(lm2, lm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sig2, sig)
    assert meta["signal_set_version"] and meta["signals"][6] == "Response Generation"
    assert meta["weights"] == ("full" if merge else "adapter") and len(tok2) == len(tok)
    card = (tmp_path / "student" / "README.md").read_text()
    assert card.startswith("---\nlicense: ") and "\n---\n\n# rscaffold student" in card


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

    from rscaffold.config import DecodeConfig
    from rscaffold.decode import Decoder
    from rscaffold.model import student_from_folder
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


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test on any look-up on the hub: a model load by name, or a network connection."""
    import socket

    import huggingface_hub
    from transformers import AutoModelForCausalLM, AutoTokenizer

    asked = []

    def refuse(*args, **kwargs):
        asked.append(args)
        raise AssertionError(f"the hub was asked: {args}")

    for cls in (AutoModelForCausalLM, AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return asked


def _decode(tmp_path: Path, student: str) -> list[str]:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q0", "text": "x", "gold": "1"}) + "\n")
    return ["decode", "--student", student, "--input", str(questions), "--output", str(tmp_path / "o.jsonl")]


@pytest.mark.parametrize("name", ["nope", "no-such-model", "gpt 2", "../up/and/away", "a/b/c", "x" * 300])
def test_decode_cli_on_neither_student_nor_base_fails_at_once(tmp_path, capsys, no_hub, name):
    assert main(_decode(tmp_path, name)) == 2
    err = capsys.readouterr().err
    assert err == (
        f"rscaffold: error: {name}: neither a trained student folder, a base model name (tiny, testbed, smollm2) "
        "nor a hub id\n"
    )
    assert no_hub == [] and not (tmp_path / "o.jsonl").exists()


def test_decode_cli_on_a_missing_folder(tmp_path, capsys, no_hub):
    missing = str(tmp_path / "no-such-model")
    assert main(_decode(tmp_path, missing)) == 2
    assert "neither a trained student folder, a base model name" in capsys.readouterr().err
    assert no_hub == []


def test_a_hub_id_with_hf_hub_offline_reads_only_the_local_cache(tmp_path, capsys, monkeypatch, no_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(_decode(tmp_path, "someone/not-cached-model")) == 2
    err = capsys.readouterr().err
    assert err == (
        "rscaffold: error: someone/not-cached-model: not in the local Hugging Face cache, "
        "and HF_HUB_OFFLINE=1 forbids the hub\n"
    )
    assert no_hub == [] and not (tmp_path / "o.jsonl").exists()


def test_a_cached_hub_id_loads_offline(base_folder, monkeypatch):
    import huggingface_hub

    from rscaffold.model import base_student

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = {"someone/cached-model": str(base_folder / "config.json")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, **_: cached.get(repo))
    student = base_student("someone/cached-model")
    assert student.method == "original" and student.signal_bias is None


def test_decode_takes_a_benchmark_instead_of_a_questions_file(base_folder, tmp_path, capsys):
    from rscaffold.config import TestbedConfig
    from rscaffold.schema import Decoded, read_jsonl
    from rscaffold.testbed.problems import write_splits

    write_splits(TestbedConfig(train=2, test_id=5, test_ood=2, test_surface=2, perturbed_groups=1), 0, tmp_path / "tb")
    out = tmp_path / "d.jsonl"
    base = ["decode", "--student", str(base_folder), "--output", str(out), "decode.max_tokens=8"]
    bench = ["--benchmark", "testbed", "--benchmark-path", str(tmp_path / "tb"), "--split", "test_ood"]
    assert main([*base, *bench, "--limit", "1", "decode.max_answer_tokens=4"]) == 0
    (record,) = read_jsonl(out, Decoded)
    assert record.question_id.startswith("test_ood") and record.benchmark == "testbed" and record.split == "test_ood"
    assert main(["evaluate", "--benchmark", "testbed", "--predictions", str(out), "--output", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main([*base, "--benchmark", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main([*base, *bench, "--input", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*base, "--input", str(out), "--limit", "2"]) == 2
    assert "go with --benchmark" in capsys.readouterr().err


def test_decode_reads_a_shipped_benchmark_file(base_folder, tmp_path, shared_benchmarks):
    out = tmp_path / "d.jsonl"
    args = ["decode", "--student", str(base_folder), "--output", str(out), "--benchmark", "gsm8k", "--limit", "2"]
    args += ["--benchmark-path", str(shared_benchmarks / "gsm8k"), "decode.max_tokens=8", "decode.max_answer_tokens=4"]
    assert main(args) == 0
    assert [json.loads(line)["benchmark"] for line in out.read_text().splitlines()] == ["gsm8k", "gsm8k"]


def test_saved_student_has_a_chat_template_that_gives_its_prompt(served_student):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(served_student))
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "A has 3 pens. How many?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "Question: A has 3 pens. How many?\nThinking:\n"  # the prompt template the student trained on


def test_chat_template_keeps_literal_braces_and_a_base_template_is_kept(tmp_path):
    from jinja2 import Template

    from rscaffold.model import chat_template

    template = 'Solve "{question}"\nAnswer as \\boxed{{...}}.\n'
    rendered = Template(chat_template(template)).render(messages=[{"role": "user", "content": "1+1?"}])
    assert rendered == template.format(question="1+1?")
    tok = train_bpe(VOCAB_TEXTS, vocab_size=280)
    tok.chat_template = "{{ messages[0]['content'] }}"  # a base's own template
    model = make_student(tiny_lm(tok), ModelConfig(lora=False), sel=False, head=False)
    out = tmp_path / "s"
    save_student(
        model, tok, out, student_meta("cot-sft", model, {"base": "tiny"}, {"prompt_template": "Q: {question}"})
    )
    assert (out / "chat_template.jinja").read_text() == "{{ messages[0]['content'] }}"


@pytest.mark.parametrize(
    "base, expected",
    [
        ("testbed", {"license": "mit"}),
        ("smollm2", {"license": "apache-2.0", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}),
        ("Qwen/Qwen2.5-0.5B", {"license": "other", "base_model": "Qwen/Qwen2.5-0.5B"}),
    ],
)
def test_model_card_front_matter(base, expected):
    import yaml

    from rscaffold.model import model_card

    meta = {"recipe": "scaffold", "base": base, "weights": "full", "signal_head": True, "signal_set": "paper"}
    card = model_card({**meta, "signal_set_version": "v", "signals": ["A"], "datasets": ["gsm8k"]})
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front == {**expected, "library_name": "transformers", "datasets": ["gsm8k"]} | {
        "tags": ["rscaffold", "reasoning-scaffolding", "scaffold"]
    }

"""Export: datasets folders and TRL's formats hold exactly what the run and its trainer hold; TRL's
SFTTrainer computes the loss of the cot-sft recipe on the exported CoT set."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from rscaffold import export
from rscaffold.build import build_folder
from rscaffold.config import BuildConfig, ModelConfig, TestbedConfig, TrainConfig
from rscaffold.schema import InputError, Trace, read_jsonl, write_jsonl
from rscaffold.tokenizer import IGNORE, collate, encode_pair, encode_proposer, load_tokenizer
from rscaffold.train import load_records
from tests.test_build import make_traces

datasets = pytest.importorskip("datasets")

TESTBED = Path(__file__).resolve().parent.parent / "rscaffold" / "bases" / "testbed"
SETS = ["answer", "cot", "long", "oracle_cot", "predictor", "pretrain", "proposer", "proposer_pruned"]


def varied_traces(n: int) -> list[Trace]:
    """``make_traces`` with answers of different lengths (a sequence-level and a token-level mean then
    differ) and metadata whose types differ between traces (one Arrow column could not hold them)."""
    out = []
    for i, t in enumerate(make_traces(n)):
        answer = "Checking once more. " * (i % 3) + t.answer_text
        steps = [*t.steps[:-1], t.steps[-1].model_copy(update={"text": answer})]
        meta = {**t.metadata, "n": i if i % 2 else str(i)}
        out.append(t.model_copy(update={"answer_text": answer, "steps": steps, "metadata": meta}))
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with traces, labelled traces and every set build writes (pretrain and pruned too)."""
    run = tmp_path_factory.mktemp("run")
    labelled = varied_traces(6)
    write_jsonl(run / "traces.jsonl", [t.model_copy(update={"steps": []}) for t in labelled])
    write_jsonl(run / "labelled.jsonl", labelled)
    small = TestbedConfig(train=6, test_id=0, test_ood=0, test_surface=0, perturbed_groups=0)
    cfg = BuildConfig(pretrain_questions=4, pretrain_drills=2, pruned_contexts=True)
    build_folder(run / "labelled.jsonl", run / "build", cfg, small)
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "out"
    export.export_run(run_dir, out, bos="<bos>")
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_every_table_and_says_so(run_dir: Path, exported: Path):
    summary = json.loads((exported / "export.json").read_text())
    names = ["traces", "labelled", *SETS]
    expected = {f"datasets/{n}" for n in names} | {f"{k}/{s}" for k in ("prompt-completion", "messages") for s in SETS}
    assert set(summary["tables"]) == expected and summary["skipped_empty"] == []
    assert summary["tables"]["datasets/cot"] == len(lines(run_dir / "build" / "cot.jsonl")) == 6
    assert summary["prompt_template"] == BuildConfig().prompt_template and summary["bos"] == "<bos>"
    assert sorted(p.name for p in exported.parent.iterdir()) == ["out"]  # no hidden folder left beside it


@pytest.mark.parametrize("name", SETS)
def test_datasets_folders_hold_the_build_records(run_dir: Path, exported: Path, name: str):
    assert list(datasets.load_from_disk(str(exported / "datasets" / name))) == lines(
        run_dir / "build" / f"{name}.jsonl"
    )


@pytest.mark.parametrize("name", ["traces", "labelled"])
def test_datasets_folders_hold_the_traces(run_dir: Path, exported: Path, name: str):
    rows = datasets.load_from_disk(str(exported / "datasets" / name))
    back = [Trace.model_validate({**r, "metadata": json.loads(r["metadata"])}) for r in rows]
    assert back == list(read_jsonl(run_dir / f"{name}.jsonl", Trace))
    assert name == "traces" or any(step["signal"] == "conclusion" for step in rows[0]["steps"])


def test_prompt_completion_and_messages_rows(run_dir: Path, exported: Path):
    records = lines(run_dir / "build" / "proposer.jsonl")
    rows = lines(exported / "prompt-completion" / "proposer.jsonl")
    assert [r["prompt"] for r in rows] == ["<bos>" + r["prompt"] for r in records]
    assert [r["completion"] for r in rows] == [r["completion"] for r in lines(run_dir / "build" / "long.jsonl")]
    chats = lines(exported / "messages" / "cot.jsonl")
    pairs = lines(run_dir / "build" / "cot.jsonl")
    assert chats[0]["messages"] == [
        {"role": "user", "content": pairs[0]["prompt"]},  # no bos: a chat template brings its own
        {"role": "assistant", "content": pairs[0]["completion"]},
    ]
    pretrain = lines(exported / "messages" / "pretrain.jsonl")[0]["messages"]
    assert [m["role"] for m in pretrain] == ["assistant"]  # an empty prompt makes no user turn


def trl_tokens(row: dict, tok) -> tuple[list[int], list[int]]:
    """(input ids, completion mask) of a prompt-completion row as TRL's SFTTrainer makes them: the prompt
    alone and prompt + completion + eos text tokenised with the tokenizer's defaults; the completion
    starts where the two diverge (``trl.data_utils.common_prefix_length``)."""
    prompt = tok(text=row["prompt"])["input_ids"]
    ids = tok(text=row["prompt"] + row["completion"] + tok.eos_token)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(prompt, ids, strict=False)) if a != b), min(len(prompt), len(ids)))
    return ids, [0] * start + [1] * (len(ids) - start)


@pytest.mark.parametrize("signal_as_text", [False, True])
def test_prompt_completion_rows_give_the_trainers_tokens(run_dir: Path, tmp_path: Path, signal_as_text: bool):
    """Every set, tokenised as TRL does it, is the trainer's input ids and loss mask for that record
    (with ``signal_as_text``: the proposer records as ``train.signal_as_text`` rewrites them)."""
    out = tmp_path / "out"
    export.export_run(run_dir, out, ("prompt-completion",), bos="<bos>", signal_as_text=signal_as_text)
    tok = load_tokenizer(TESTBED)
    recipes = {"proposer": "scaffold", "proposer_pruned": "scaffold-pruned", "cot": "cot-sft", "long": "long-sft"}
    recipes |= {"answer": "answer-sft", "oracle_cot": "oracle-cot", "predictor": "predictor", "pretrain": "pretrain"}
    for name, recipe in recipes.items():
        records = load_records(run_dir / "build", recipe, TrainConfig(signal_as_text=signal_as_text))
        encode = encode_proposer if "segments" in records[0] else encode_pair
        for row, record in zip(lines(out / "prompt-completion" / f"{name}.jsonl"), records, strict=True):
            ours = encode(record, tok, True, 4096)
            ids, mask = trl_tokens(row, tok)
            assert ids == ours["input_ids"], (name, row["id"])
            assert mask == [int(label != IGNORE) for label in ours["labels"]], (name, row["id"])


def test_signal_as_text_names_each_step_in_proposer_sets_only(run_dir: Path, tmp_path: Path):
    export.export_run(run_dir, tmp_path / "out", ("messages",), signal_as_text=True)
    proposer = lines(tmp_path / "out" / "messages" / "proposer.jsonl")[0]["messages"][1]["content"]
    cot = lines(tmp_path / "out" / "messages" / "cot.jsonl")[0]["messages"][1]["content"]
    assert proposer.startswith("[") and proposer.count("] ") == len(
        lines(run_dir / "build" / "proposer.jsonl")[0]["segments"]
    )
    assert cot == lines(run_dir / "build" / "cot.jsonl")[0]["completion"]


def test_a_bad_record_names_its_line_and_leaves_the_earlier_export(run_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    out = tmp_path / "out"
    export.export_run(run, out, ("datasets",))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with (run / "build" / "cot.jsonl").open("a") as f:
        f.write(json.dumps({"id": "x", "prompt": "Q"}) + "\n")
    for fmt in ("prompt-completion", "datasets"):
        with pytest.raises(InputError, match=r"cot\.jsonl:7: expected field 'completion'"):
            export.export_run(run, out, (fmt,))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]


def test_an_interrupted_export_writes_nothing(run_dir: Path, tmp_path: Path, monkeypatch):
    def interrupted(rows, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export_run(run_dir, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_new_export_replaces_an_earlier_one_but_no_other_folder(run_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    export.export_run(run_dir, out)
    export.export_run(run_dir, out, ("messages",))
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "messages"]
    with pytest.raises(InputError, match="not an export folder"):
        export.export_run(run_dir, run_dir)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not an export folder"):
        export.export_run(run_dir, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_empty_sets_are_skipped_and_missing_inputs_named(run_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "build" / "oracle_cot.jsonl").write_text("")
    summary = export.export_run(run, tmp_path / "out")
    assert summary["skipped_empty"] == ["oracle_cot"] and "datasets/oracle_cot" not in summary["tables"]
    shutil.rmtree(run / "build")
    with pytest.raises(InputError, match="run `rscaffold build --run-dir"):
        export.export_run(run, tmp_path / "out2", ("prompt-completion",))
    assert export.export_run(run, tmp_path / "out3", ("datasets",))["tables"] == {
        "datasets/traces": 6,
        "datasets/labelled": 6,
    }
    with pytest.raises(InputError, match="nothing to export"):
        export.export_run(tmp_path, tmp_path / "out4")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rscaffold")
    export.add_parser(p.add_subparsers(dest="command"))
    return p


def test_export_command(run_dir: Path, tmp_path: Path, capsys):
    args = parser().parse_args(
        ["export", "--run-dir", str(run_dir), "--output", str(tmp_path / "o"), "--format", "messages"]
    )
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["messages/cot"] == 6
    bad = parser().parse_args(
        ["export", "--run-dir", str(run_dir), "--output", str(tmp_path / "p"), "--push-to-hub", "x"]
    )
    with pytest.raises(InputError, match="not a hub dataset id"):
        bad.func(bad)
    assert not (tmp_path / "p").exists()  # refused before any work


def test_push_to_hub_offline_fails_in_one_line_after_a_complete_export(exported: Path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match=r"owner/name: pushing traces failed \(OfflineModeIsEnabled.*0 of 26 configs"):
        export.push_to_hub(exported, "owner/name")
    assert export.hub_config("prompt-completion/cot") == "cot-prompt-completion"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_trl_sft_trainer_computes_the_cot_sft_loss_on_the_exported_set(run_dir: Path, exported: Path, tmp_path: Path):
    """One step of TRL's SFTTrainer (completion-only loss, no packing, learning rate 0, the whole set in
    one batch) on the exported CoT set: its tokens and labels are those of the cot-sft recipe, and its
    loss is the recipe's ``Losses.token`` on the same records, within 1e-5 relative.

    Both reduce the same way, a mean over the batch's completion tokens (TRL: the sum of the per-token
    losses over ``num_items_in_batch``; the recipe: ``F.cross_entropy`` over the supervised positions), so
    they are compared as they are; what differs is float32 summation order and TRL's own log-softmax
    (measured: 1.3e-7 relative), hence 1e-5. The batch's answers differ in length, so a per-sequence mean
    would differ by more than the tolerance (checked below)."""
    import torch
    from trl import SFTConfig, SFTTrainer

    from rscaffold.base_models import load_base
    from rscaffold.train import prepare_student

    rows = lines(exported / "prompt-completion" / "cot.jsonl")
    lm, tok, _ = load_base(ModelConfig(base="testbed"))
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(rows), max_steps=1, learning_rate=0.0,
        completion_only_loss=True, packing=False, shuffle_dataset=False, use_cpu=True, bf16=False,
        gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(model=lm, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    trl_loss = trainer.state.log_history[0]["loss"]

    main_process = SimpleNamespace(is_main_process=True)  # all prepare_student asks of an Accelerator here
    cfg, base = TrainConfig(bf16=False), ModelConfig(base="testbed", lora=False)
    model, tok, _, examples, _ = prepare_student(main_process, "cot-sft", cfg, base, run_dir / "build", tmp_path / "c")
    prepared = {r["id"]: r for r in trainer.train_dataset}
    for row, ours in zip(rows, examples, strict=True):
        assert prepared[row["id"]]["input_ids"] == ours["input_ids"]
        assert prepared[row["id"]]["labels"] == ours["labels"]
    model.train()
    with torch.no_grad():
        ours_loss = model(**collate(examples, tok.pad_token_id)).token.item()
        per_sequence = [model(**collate([e], tok.pad_token_id)).token.item() for e in examples]
    assert abs(trl_loss - ours_loss) <= 1e-5 * ours_loss, (trl_loss, ours_loss)
    assert abs(sum(per_sequence) / len(per_sequence) - ours_loss) > 1e-5 * ours_loss

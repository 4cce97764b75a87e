"""The `rscaffold` command: one subcommand per stage, `run` to chain them, `demo` to show them.

Every stage takes ``--input FILE --output FILE`` or ``--run-dir DIR``; ``--config FILE`` and
trailing ``KEY=VALUE`` overrides set the config (``rscaffold label --run-dir r label.lexicon=extended``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rscaffold import (
    build,
    cache,
    decode,
    evaluate,
    generate,
    import_traces,
    label,
    label_report,
    labeller,
    recipes,
    report,
    segment,
    serve,
    stats,
)
from rscaffold.config import Config, load_config, shipped_config
from rscaffold.judge import add_judge_arguments, load_judge_config
from rscaffold.probe import add_probe_arguments, cmd_probe
from rscaffold.runs import ARTIFACTS, record_stage, stage_paths
from rscaffold.schema import InputError, Question, Trace, atomic_writer, read_jsonl, write_jsonl
from rscaffold.teachers.openai_compat import add_generate_api_arguments
from rscaffold.testbed.problems import write_splits

T = TypeVar("T")
log = logging.getLogger("rscaffold")


def progress(items: Iterable[T], desc: str) -> Iterator[T]:
    """A progress bar on an interactive terminal, nothing otherwise."""
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, unit=" rec", disable=not sys.stderr.isatty(), leave=False))


def _testbed(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    return {"splits": write_splits(cfg.testbed, cfg.run.seed, out)}


def _generate(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    report: dict[str, Any] = {}
    # API teachers draw their own progress bar (with failures and ETA); the scripted one needs ours.
    questions = read_jsonl(inp, Question)
    questions = progress(questions, "generate") if cfg.generate.teacher == "scripted" else questions
    write_jsonl(out, generate.run(questions, cfg.generate, cfg.run.seed, counts, report))
    failures = out.with_name(out.name + ".failures.jsonl")
    if report.get("failures"):
        with atomic_writer(failures) as f:
            f.writelines(json.dumps(item) + "\n" for item in report["failures"])
        print(f"generate: {len(report['failures'])} items failed; reasons in {failures}", file=sys.stderr)
    return {"teacher": cfg.generate.teacher, **counts, **({"ledger": report["ledger"]} if "ledger" in report else {})}


def _import(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    source = inp or cfg.import_.path
    if source is None:
        raise InputError("import needs a trace file: --input FILE or import.path=FILE")
    return {"traces": write_jsonl(out, progress(import_traces.run(source, cfg.import_), "import"))}


def _segment(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    return {"traces": write_jsonl(out, segment.run(progress(read_jsonl(inp, Trace), "segment")))}


def _label(cfg: Config, inp: Path | None, out: Path) -> dict[str, Any]:
    return label.run_stage(cfg.label, inp, out, judge_cfg=cfg.judge, progress=progress)


def _stats(cfg: Config, inp: Path | None, out: Path | None) -> dict[str, Any]:
    summary = stats.compute(progress(read_jsonl(inp, Trace), "stats"))
    if out is not None:
        with atomic_writer(out) as f:
            json.dump(summary, f, indent=2)
    return summary


STAGES: dict[str, Callable[[Config, Path | None, Path], dict[str, Any]]] = {
    "testbed": _testbed,
    "generate": _generate,
    "import": _import,
    "segment": _segment,
    "label": _label,
    "stats": _stats,
}
_BRIEF = (
    "traces",
    "kept",
    "dropped_wrong",
    "failed",
    "ledger",
    "splits",
    "keyword_coverage",
    "label_coverage",
    "lexicon_version",
)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The few keys of a stage's summary worth a line on the terminal and in the manifest."""
    return {k: summary[k] for k in _BRIEF if k in summary}


def run_stage(stage: str, cfg: Config, run_dir: Path) -> dict[str, Any]:
    """Run one stage inside a run folder and record it in the manifest."""
    inp, out = stage_paths(run_dir, stage, cfg)
    started = time.perf_counter()
    summary = STAGES[stage](cfg, inp, out)
    brief = _brief(summary)
    record_stage(run_dir, cfg, stage, {**brief, "seconds": round(time.perf_counter() - started, 2)})
    return summary


def _config(args: argparse.Namespace, shortcuts: dict[str, Any]) -> Config:
    overrides = [f"{k}={v}" for k, v in shortcuts.items() if v is not None] + list(args.overrides)
    return load_config(args.config, overrides)


def _stage_command(stage: str, args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    if args.run_dir is not None:
        summary = run_stage(stage, cfg, Path(args.run_dir))
        print(f"{stage}: wrote {Path(args.run_dir) / ARTIFACTS[stage][1]}", file=sys.stderr)
        return summary
    if args.output is None or (args.input is None and stage not in ("testbed", "import")):
        raise InputError(f"{stage}: give --input FILE --output FILE, or --run-dir DIR")
    summary = STAGES[stage](cfg, args.input, args.output)
    print(f"{stage}: wrote {args.output}", file=sys.stderr)
    return summary


def cmd_stage(args: argparse.Namespace) -> int:
    shortcuts = {
        "run.seed": getattr(args, "seed", None),
        "generate.teacher": getattr(args, "teacher", None),
        "generate.api.retry_failed": getattr(args, "retry_failed", None) or None,
        **(label.label_overrides(args) if args.command == "label" else {}),
        "label.judge": "true" if getattr(args, "judge", None) is not None else None,
        "import.format": getattr(args, "format", None),
    }
    stage = "testbed" if args.command == "testbed" else args.command
    cfg = _config(args, shortcuts)
    if getattr(args, "judge", None):  # --judge CONFIG: the judge's settings from their own file
        cfg = cfg.model_copy(update={"judge": load_judge_config(args.judge, cfg.judge)})
    summary = _stage_command(stage, args, cfg)
    brief = _brief(summary)
    print(json.dumps(brief))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    cfg = _config(args, {})
    if args.run_dir is not None:
        summary = run_stage("stats", cfg, Path(args.run_dir))
    else:
        path = args.file or args.input
        if path is None:
            raise InputError("stats: give a trace FILE, --input FILE, or --run-dir DIR")
        summary = _stats(cfg, path, args.output)
    print(json.dumps(summary) if args.json else stats.format_summary(summary))
    return 0


def cmd_run(args: argparse.Namespace, cfg: Config | None = None) -> int:
    cfg = cfg or _config(args, {})
    run_dir = Path(args.run_dir or cfg.run.dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    summary: dict[str, Any] = {}
    for stage in cfg.run.stages:
        started = time.perf_counter()
        summary = run_stage(stage, cfg, run_dir)
        brief = _brief(summary)
        print(f"[{stage}] {time.perf_counter() - started:.1f}s {json.dumps(brief)}", file=sys.stderr)
    if cfg.run.stages and cfg.run.stages[-1] == "stats":
        print(stats.format_summary(summary))
    print(f"run folder: {run_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``rscaffold demo [--config C] [--run-dir R]``: the whole experiment (rscaffold.demo); with
    ``--data-only``, only the data stages (testbed to stats)."""
    from rscaffold.demo import run_demo

    args.config = args.config or shipped_config("demo")
    cfg = _config(args, {})
    args.run_dir = args.run_dir or cfg.run.dir or "runs/demo"
    if args.data_only:
        return cmd_run(args, cfg)
    run_demo(cfg, Path(args.run_dir))
    return 0


def _with_config(
    command: Callable[[argparse.Namespace, Config], int],
    shortcuts: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
) -> Callable[[argparse.Namespace], int]:
    """Adapt a stage module's ``cmd_*(args, cfg)`` to the parser: load the config, then run.

    ``shortcuts`` turns the command's own options into dotted overrides (``--tau`` -> ``decode.tau``).
    """

    def run(args: argparse.Namespace) -> int:
        if args.command == "report":
            report.split_overrides(args)
        cfg = _config(args, shortcuts(args) if shortcuts else {})
        started = time.perf_counter()
        code = command(args, cfg)
        if code == 0 and getattr(args, "run_dir", None):
            record_stage(Path(args.run_dir), cfg, args.command, {"seconds": round(time.perf_counter() - started, 2)})
        return code

    return run


def _train(args: argparse.Namespace, cfg: Config) -> int:
    from rscaffold.train import cmd_train  # PyTorch loads only when a student trains

    return cmd_train(args, cfg)


def _io_options(p: argparse.ArgumentParser, needs_input: bool = True) -> None:
    if needs_input:
        p.add_argument("--input", type=Path, help="input file")
    p.add_argument("--output", type=Path, help="output file")
    p.add_argument("--run-dir", help="run folder: read the previous stage's artifact there, write this one's")
    _config_options(p)


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of config deltas (or a shipped name: demo)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. label.lexicon=extended"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rscaffold", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tb = sub.add_parser("testbed", help="make the embedded testbed's question splits")
    tb_sub = tb.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = tb_sub.add_parser("make", help="write one questions JSONL per split")
    make.add_argument("--out", dest="output", type=Path, help="output folder")
    make.add_argument("--seed", type=int, help="seed (run.seed)")
    _io_options(make, needs_input=False)
    make.set_defaults(func=cmd_stage, input=None)

    gen = sub.add_parser("generate", help="ask a teacher for thinking traces")
    gen.add_argument("--teacher", choices=sorted(generate.TEACHERS), help="teacher backend (generate.teacher)")
    gen.add_argument("--seed", type=int, help="seed (run.seed)")
    add_generate_api_arguments(gen)
    _io_options(gen)
    gen.set_defaults(func=cmd_stage)

    imp = sub.add_parser("import", help="read existing trace files (JSONL or Parquet) into traces")
    imp.add_argument("--format", choices=["auto", "shared", "think", "split"], help="record shape (import.format)")
    _io_options(imp)
    imp.set_defaults(func=cmd_stage)

    seg = sub.add_parser("segment", help="split each trace into steps on blank lines")
    _io_options(seg)
    seg.set_defaults(func=cmd_stage)

    lab = sub.add_parser("label", help="label each step with a signal: keywords, then judge and/or learned labeller")
    label.add_label_arguments(lab)
    add_judge_arguments(lab)
    _io_options(lab)
    lab.set_defaults(func=cmd_stage)

    lrep = sub.add_parser("label-report", help="coverage, distributions, agreement (kappa) and accuracy of labels")
    label_report.add_label_report_arguments(lrep)
    lrep.set_defaults(func=label_report.cmd_label_report)

    lab_m = sub.add_parser("labeller", help="the learned labeller")
    lab_sub = lab_m.add_subparsers(dest="action", required=True, metavar="ACTION")
    lab_train = lab_sub.add_parser("train", help="train a learned labeller (distant supervision from keywords)")
    labeller.add_train_labeller_arguments(lab_train)
    lab_train.set_defaults(func=labeller.cmd_train_labeller)

    st = sub.add_parser("stats", help="steps, keyword coverage, signal distribution and transitions")
    st.add_argument("file", nargs="?", type=Path, help="labelled (or segmented) trace file")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    _io_options(st)
    st.set_defaults(func=cmd_stats)

    bld = sub.add_parser("build", help="training sets from labelled traces: proposer, predictor, baselines")
    build.add_build_arguments(bld)
    _io_options(bld)
    bld.set_defaults(func=_with_config(build.cmd_build))

    trn = sub.add_parser("train", help="train a student: scaffold, predictor, cot-sft, long-sft, answer-sft, pretrain")
    recipes.add_train_arguments(trn)
    _io_options(trn)
    trn.set_defaults(func=_with_config(_train))

    dec = sub.add_parser("decode", help="signal-guided decoding of questions by a trained student")
    decode.add_decode_arguments(dec)
    _config_options(dec)
    dec.set_defaults(func=_with_config(decode.cmd_decode, decode.overrides))

    ev = sub.add_parser("evaluate", help="score decoded outputs (results.json) or a predictions file")
    evaluate.add_evaluate_arguments(ev)
    _config_options(ev)
    ev.set_defaults(func=_with_config(evaluate.cmd_evaluate))

    rep = sub.add_parser("report", help="an HTML report (tables, plots, trace viewer) of evaluated runs")
    report.add_report_arguments(rep)
    _config_options(rep)
    rep.set_defaults(func=_with_config(report.cmd_report))

    srv = sub.add_parser("serve", help="an OpenAI-compatible server: scripted teacher and judge, local HF models")
    serve.add_serve_arguments(srv)
    _config_options(srv)
    srv.set_defaults(func=_with_config(serve.cmd_serve))

    cch = sub.add_parser("cache", help="the response cache of teachers and judges: stats, export, prune")
    cache.add_cache_arguments(cch)
    _config_options(cch)
    cch.set_defaults(func=_with_config(cache.cmd_cache))

    prb = sub.add_parser("probe", help="a base model's look-up accuracy per format (N =, N has, Here N has, ...)")
    add_probe_arguments(prb)
    prb.set_defaults(func=cmd_probe)

    run = sub.add_parser("run", help="chain the stages of run.stages in one run folder")
    run.add_argument("--run-dir", help="run folder (default run.dir, else runs/<time>)")
    _config_options(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo", help="the whole experiment offline: data, build, train every recipe, decode, evaluate, report"
    )
    demo.add_argument("--run-dir", help="run folder (default run.dir of the config, else runs/demo)")
    demo.add_argument("--data-only", action="store_true", help="only the data stages (testbed to stats)")
    _config_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():  # before transformers loads: no per-load bars in logs (read once at import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except InputError as e:
        print(f"rscaffold: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rscaffold: interrupted; no partial output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

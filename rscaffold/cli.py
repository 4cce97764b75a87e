"""The `rscaffold` command: one subcommand per stage, `run` to chain them, `demo` to show them.

Every stage takes ``--input FILE --output FILE`` (a file in, a file out) or ``--run-dir DIR`` (the
stage of the pipeline in a run folder); ``--config FILE`` and ``KEY=VALUE`` overrides, anywhere on the
line, set the config (``rscaffold label --run-dir r label.lexicon=extended``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rscaffold import (
    build,
    evaluate,
    export,
    generate,
    grid,
    import_traces,
    label,
    parallel,
    pipeline,
    probe,
    runs,
    segment,
    stats,
)
from rscaffold.benchmarks import load_questions
from rscaffold.config import RECIPES, SOURCES, Config, load_config, shipped_config
from rscaffold.label.quality import add_label_report_arguments, cmd_label_report
from rscaffold.label.training import add_train_labeller_arguments, cmd_train_labeller
from rscaffold.report import write_report
from rscaffold.report.headline import format_headline
from rscaffold.schema import InputError, Question
from rscaffold.serve import add_serve_arguments, cmd_serve
from rscaffold.signals import LEXICONS
from rscaffold.teachers.cache import add_cache_arguments, cmd_cache
from rscaffold.testbed.problems import write_splits

log = logging.getLogger("rscaffold")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


# -- config ---------------------------------------------------------------------------------------


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False for a name the system cannot look up (too long, a NUL byte)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _config(args: argparse.Namespace, shortcuts: dict[str, Any] | None = None) -> Config:
    """The config file, then the command's own options (``--tau`` -> ``decode.tau``), then ``KEY=VALUE``."""
    given = [f"{k}={json.dumps(v)}" for k, v in (shortcuts or {}).items()]
    return load_config(args.config, [*given, *args.overrides])


def _label_shortcuts(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = dict(label.POLICIES[args.policy]) if args.policy else {}
    if args.lexicon:
        out["label.lexicon"] = args.lexicon
    if args.learned:
        out["label.learned"] = None if args.learned == "none" else args.learned
    if args.judge is not None:
        out["label.judge"] = True
    return out


def _given(**keys: Any) -> dict[str, Any]:
    """Dotted keys (``run__seed`` -> ``run.seed``) of the options that were given."""
    return {k.replace("__", "."): v for k, v in keys.items() if v is not None}


SHORTCUTS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "testbed": lambda a: _given(run__seed=a.seed),
    "generate": lambda a: _given(run__seed=a.seed, generate__teacher=a.teacher, generate__api__retry_failed=a.retry),
    "import": lambda a: {"import.format": a.format} if a.format else {},
    "label": _label_shortcuts,
    "build": lambda a: _given(build__signal_source=a.signal_source, build__pretrain_questions=a.pretrain_questions),
    "train": lambda a: _given(train__recipe=a.recipe),
    "decode": lambda a: _given(decode__signal_source=a.source, decode__tau=a.tau),
}


# -- stages ---------------------------------------------------------------------------------------

FILE_RUNNERS: dict[str, Callable[[Config, Path | None, Path], dict[str, Any]]] = {
    "generate": generate.run_file,
    "import": import_traces.run_file,
    "segment": segment.run_file,
    "label": label.run_file,
    "stats": stats.run_file,
    "build": build.run_file,
}
FILE_ONLY = {
    "import": ("split",),
    "train": ("recipe", "resume"),
    "decode": (
        "student",
        "source",
        "predictor",
        "golden",
        "train_traces",
        "benchmark",
        "split",
        "limit",
        "benchmark_path",
    ),
}
"""Options of the file form only: a run folder takes them from ``experiment.*`` (``--tau`` sets
``decode.tau``, the gate of every variant without its own)."""


def _file_stage(stage: str, cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """One stage from ``--input`` to ``--output``."""
    inp, out = args.input, args.output
    needs_input = stage not in ("testbed", "import") and not (stage == "decode" and args.benchmark)
    if (out is None and stage != "stats") or (needs_input and inp is None):
        what = (
            "--output DIR" if stage == "testbed" else ("--input FILE --output FILE" if needs_input else "--output FILE")
        )
        raise InputError(f"{stage}: give {what}, or --run-dir DIR")
    if inp is not None and not _exists(inp) and not (stage == "import" and import_traces.is_hub_id(inp)):
        raise InputError(f"{inp}: not found")
    if stage == "testbed":
        return {"splits": write_splits(cfg.testbed, cfg.run.seed, out)}
    if stage == "train":
        from rscaffold.train import train

        summary = train(cfg.train, cfg.model, inp, out, resume=args.resume)
        return {k: summary[k] for k in ("recipe", "steps", "seconds", "tokens_per_s", "final")}
    if stage == "decode":
        if args.student is None:
            raise InputError("decode: give --student DIR --input FILE --output FILE, or --run-dir DIR")
        from rscaffold.decode import decode_file

        extras = {"golden": args.golden, "train_traces": args.train_traces, "predictor": args.predictor}
        extras["prompt_template"] = cfg.build.prompt_template
        return decode_file(cfg.decode, args.student, _decode_questions(args), out, extras)
    if stage == "import":
        return import_traces.run_file(cfg, inp, out, args.split)
    return FILE_RUNNERS[stage](cfg, inp, out)


def _decode_questions(args: argparse.Namespace) -> Path | Iterable[Question]:
    """``--input FILE``, or the first ``--limit`` questions of ``--benchmark NAME [--split S]``."""
    if args.benchmark is None:
        if args.split or args.limit or args.benchmark_path:
            raise InputError("decode: --split, --limit and --benchmark-path go with --benchmark NAME")
        return args.input
    if args.input is not None:
        raise InputError("decode: give --input FILE or --benchmark NAME, not both")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"decode: --limit must be at least 1, got {args.limit}")
    questions = load_questions(args.benchmark, args.split, args.benchmark_path)
    return itertools.islice(questions, args.limit) if args.limit else questions


def cmd_stage(args: argparse.Namespace) -> int:
    stage = args.command
    cfg = _config(args, SHORTCUTS.get(stage, lambda _: {})(args))
    if stage == "label" and args.judge:  # --judge CONFIG: the judge's settings from their own file
        from rscaffold.label.judge import load_judge_config

        cfg = cfg.model_copy(update={"judge": load_judge_config(args.judge, cfg.judge)})
    if args.run_dir is None:
        summary = _file_stage(stage, cfg, args)
        where = args.output
    else:
        given = [f"--{o}" for o in ("input", "output") if getattr(args, o, None) is not None]
        given += [f"--{o.replace('_', '-')}" for o in FILE_ONLY.get(stage, ()) if getattr(args, o, None)]
        if given:
            raise InputError(f"{stage}: {', '.join(given)} cannot go with --run-dir (a run folder has its own files)")
        summary = pipeline.run_stage(stage, cfg, Path(args.run_dir))
        where = args.run_dir
    if not parallel.world().main:  # under a launcher the first process speaks for all
        return 0
    if where is not None:
        print(f"{stage}: wrote {where}", file=sys.stderr)
    if stage == "stats":
        print(json.dumps(summary) if args.json else stats.format_summary(summary))
    elif stage == "report":
        _print_report(summary)
    elif stage == "build":
        print(json.dumps({name: s["records"] for name, s in summary["sets"].items()}))
    else:
        print(json.dumps(summary if args.run_dir is None else pipeline.brief(summary) or summary, default=str))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    if args.file is not None:
        args.input = args.input or args.file
    return cmd_stage(args)


def _pass_at_1(r: dict[str, Any]) -> str:
    p = r["pass@1_strict"]
    return f"pass@1 {p['mean']:.3f} [{p['lo']:.3f}, {p['hi']:.3f}]  flexible {r['pass@1_flexible']['mean']:.3f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.student is not None:  # one model on one benchmark: decode, then score
        if args.run_dir is not None or args.predictions is not None or not args.benchmark or args.output is None:
            raise InputError("evaluate --student needs --benchmark NAME and --output DIR (no --run-dir, --predictions)")
        from rscaffold import score

        r = score.run(cfg, args.student, args.benchmark, args.output, args.split, args.limit, args.benchmark_path)
        print(f"{args.student} {r['benchmark']}/{r['split']} n={r['n']} {_pass_at_1(r)}")
        print(f"evaluate: wrote {args.output}/results.json", file=sys.stderr)
        return 0
    if args.split or args.limit or args.benchmark_path:
        raise InputError("evaluate: --split, --limit and --benchmark-path go with --student and --benchmark")
    if args.predictions is not None:
        if args.run_dir is not None:
            raise InputError("evaluate: --predictions cannot go with --run-dir")
        if not args.benchmark or args.output is None:
            raise InputError("evaluate --predictions needs --benchmark NAME and --output FILE")
        summary, scored = evaluate.score_predictions(args.predictions, args.benchmark, cfg.evaluate)
        evaluate.write_scored(args.output, scored)
        print(json.dumps(summary, indent=2))
        return 0
    if args.run_dir is None:
        raise InputError("evaluate: give --run-dir DIR, or --benchmark NAME --predictions FILE --output FILE")
    results = pipeline.run_stage("evaluate", cfg, Path(args.run_dir))
    for e in results["entries"]:
        print(f"{e['student']:<22} {e['variant']:<16} {e['benchmark']}/{e['split']:<14} n={e['n']:<5} {_pass_at_1(e)}")
    print(f"evaluate: wrote {runs.results(Path(args.run_dir))}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = _config(args)
    run_dirs = [Path(d) for d in args.run_dirs]
    if len(run_dirs) == 1 and args.output is None:  # the report stage of one run: headline and page
        _print_report(pipeline.run_stage("report", cfg, run_dirs[0]))
        return 0
    page = write_report(run_dirs, Path(args.output or runs.report_dir(run_dirs[0])), cfg.report)
    print(page)
    return 0


def _print_report(h: dict[str, Any]) -> None:
    print(format_headline(h))
    if h.get("probe"):
        print(probe.format_probe(h["probe"]))
    print(f"report: {h['page']}")


def cmd_run(args: argparse.Namespace, cfg: Config | None = None) -> int:
    """``rscaffold run``: the stages of ``run.stages`` in one run folder (``rscaffold.pipeline``)."""
    cfg = cfg or _config(args, _run_benchmark(args))
    run_dir = Path(args.run_dir or cfg.run.dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.perf_counter()
    summaries = pipeline.run_pipeline(cfg, run_dir)
    if "report" in summaries:
        _print_report(summaries["report"])
    elif cfg.run.stages and cfg.run.stages[-1] == "stats" and "stats" in summaries:
        print(stats.format_summary(summaries["stats"]))
    print(f"run folder: {run_dir} ({time.perf_counter() - started:.0f}s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``rscaffold demo``: ``rscaffold run`` with the demo config (the whole experiment offline); with
    ``--data-only``, only the data stages (testbed to stats)."""
    args.config = args.config or shipped_config("demo")
    cfg = _config(args)
    if args.data_only:
        data = [s for s in cfg.run.stages if s in ("testbed", "generate", "import", "segment", "label", "stats")]
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"stages": data})})
    args.run_dir = args.run_dir or cfg.run.dir or "runs/demo"
    return cmd_run(args, cfg)


def _benchmark_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", help="the benchmark's split (default: its test split)")
    p.add_argument("--limit", type=int, help="the first N questions of the benchmark")
    p.add_argument("--benchmark-path", type=Path, help="the benchmark's file or folder (default: "
                   "$RSCAFFOLD_BENCHMARKS/NAME, else the hub when online)")  # fmt: skip


def _run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """``rscaffold run --benchmark NAME [--split S] [--limit N] [--benchmark-path P]`` -> run.benchmark."""
    if args.benchmark is None:
        if args.split or args.limit or args.benchmark_path:
            raise InputError("run: --split, --limit and --benchmark-path go with --benchmark NAME")
        return {}
    given = {"name": args.benchmark, "split": args.split, "limit": args.limit, "path": args.benchmark_path}
    return {"run.benchmark": {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}}


def _with_config(command: Callable[[argparse.Namespace, Config], int]) -> Callable[[argparse.Namespace], int]:
    """A module's ``cmd_*(args, cfg)`` with the config loaded."""
    return lambda args: command(args, _config(args))


# -- the parser -----------------------------------------------------------------------------------


def _io(p: argparse.ArgumentParser, needs_input: bool = True) -> None:
    if needs_input:
        p.add_argument("--input", type=Path, help="input file")
    p.add_argument("--output", type=Path, help="output file (a folder for testbed, build, train)")
    p.add_argument("--run-dir", help="run folder: the pipeline's stage there (reads the previous artifact)")
    _config_option(p)


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of config deltas (or a shipped name: demo, experiment, grid, gpu)")
    p.set_defaults(overrides=[])


def _stage_parsers(sub: Any) -> None:
    tb = sub.add_parser("testbed", help="make the embedded testbed's question splits")
    tb.add_argument("action", nargs="?", metavar="make", help="(optional, for older scripts) make the splits")
    tb.add_argument("--out", dest="output", type=Path, help="output folder")
    tb.add_argument("--seed", type=int, help="seed (run.seed)")
    _io(tb, needs_input=False)
    tb.set_defaults(func=cmd_stage, input=None)

    gen = sub.add_parser("generate", help="ask a teacher for thinking traces")
    gen.add_argument("--teacher", choices=sorted(generate.TEACHERS), help="teacher backend (generate.teacher)")
    gen.add_argument("--seed", type=int, help="seed (run.seed)")
    gen.add_argument("--retry-failed", dest="retry", action="store_const", const=True, help="ask failed items again")
    _io(gen)
    gen.set_defaults(func=cmd_stage)

    imp = sub.add_parser("import", help="read existing traces (JSONL, Parquet, datasets folder, hub id) into traces")
    imp.add_argument("--split", help="split of a datasets folder or hub dataset (needed when it has several)")
    imp.add_argument("--format", choices=["auto", "shared", "think", "split"], help="record shape (import.format)")
    _io(imp)
    imp.set_defaults(func=cmd_stage)

    seg = sub.add_parser("segment", help="split each trace into steps on blank lines")
    _io(seg)
    seg.set_defaults(func=cmd_stage)

    lab = sub.add_parser("label", help="label each step with a signal: keywords, then judge and/or learned labeller")
    lab.add_argument("--lexicon", help=f"keyword lexicon: {', '.join(LEXICONS)} or a TSV path (label.lexicon)")
    lab.add_argument(
        "--learned", metavar="MODEL", help="learned labeller: default, distant, a folder, or none (label.learned)"
    )
    lab.add_argument(
        "--policy", choices=sorted(label.POLICIES), help="which stages label: keywords, then judge and/or learned"
    )
    lab.add_argument("--judge", nargs="?", const="", metavar="CONFIG", help="label stage 2 with an LLM judge; CONFIG: "
                     "YAML of judge settings (or a config with a judge: section)")  # fmt: skip
    _io(lab)
    lab.set_defaults(func=cmd_stage)

    st = sub.add_parser("stats", help="steps, keyword coverage, signal distribution and transitions")
    st.add_argument("file", nargs="?", type=Path, help="labelled (or segmented) trace file")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    _io(st)
    st.set_defaults(func=cmd_stats)

    bld = sub.add_parser("build", help="training sets from labelled traces: proposer, predictor, baselines")
    bld.add_argument("--signal-source", choices=["label", "true"], help="signals to train with (build.signal_source)")
    bld.add_argument("--pretrain-questions", type=int, help="questions for pretrain.jsonl (build.pretrain_questions)")
    _io(bld)
    bld.set_defaults(func=cmd_stage)

    trn = sub.add_parser("train", help="train students: a run's experiment.students, or one recipe from files")
    trn.add_argument("--recipe", choices=sorted(RECIPES), help="what to train (train.recipe; file form)")
    trn.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output")
    _io(trn)
    trn.set_defaults(func=cmd_stage)

    dec = sub.add_parser("decode", help="signal-guided decoding: a run's experiment.variants, or one student")
    dec.add_argument("--student", type=Path, help="trained student folder, or a base model (smollm2, a hub id, a "
                     "plain folder) decoded untrained with build.prompt_template")  # fmt: skip
    dec.add_argument("--source", choices=SOURCES, help="signal source (decode.signal_source)")
    dec.add_argument("--tau", type=float, help="gate threshold (decode.tau)")
    dec.add_argument("--predictor", type=Path, help="generative predictor folder (recipe predictor)")
    dec.add_argument("--golden", type=Path, help="labelled teacher traces of the questions (golden signals)")
    dec.add_argument("--train-traces", type=Path, help="labelled training traces (random signals)")
    dec.add_argument("--benchmark", help="decode a benchmark's questions instead of --input (gsm8k, math500, ...)")
    _benchmark_options(dec)
    _io(dec)
    dec.set_defaults(func=cmd_stage)

    ev = sub.add_parser("evaluate", help="score a run's decoded files, or a predictions (or decoded) file")
    ev.add_argument("--run-dir", help="run folder: score every decoded file, write results.json and scored/")
    ev.add_argument("--benchmark", help="benchmark of --predictions (testbed, gsm8k, ...)")
    ev.add_argument("--predictions", type=Path, help="JSONL with id, prediction, gold; or decode's output")
    ev.add_argument("--output", type=Path, help="scored records of --predictions; with --student, the folder")
    ev.add_argument("--student", type=Path, help="decode --benchmark with this student or base model, then score "
                    "(decoded.jsonl, scored.jsonl, results.json in --output)")  # fmt: skip
    _benchmark_options(ev)
    _config_option(ev)
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("report", help="the headline and an HTML report of one run, or the page of several")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders evaluated before")
    rep.add_argument("--output", type=Path, help="report folder (several runs; default: the first run's report/)")
    _config_option(rep)
    rep.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rscaffold", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stage_parsers(sub)
    export.add_parser(sub)

    lrep = sub.add_parser("label-report", help="coverage, distributions, agreement (kappa) and accuracy of labels")
    add_label_report_arguments(lrep)
    lrep.set_defaults(func=cmd_label_report)

    lab_m = sub.add_parser("labeller", help="the learned labeller")
    lab_sub = lab_m.add_subparsers(dest="action", required=True, metavar="ACTION")
    lab_train = lab_sub.add_parser("train", help="train a learned labeller (--judged: the context kind; else distant)")
    add_train_labeller_arguments(lab_train)
    lab_train.set_defaults(func=cmd_train_labeller)

    srv = sub.add_parser("serve", help="an OpenAI-compatible server: scripted teacher and judge, local HF models")
    add_serve_arguments(srv)
    _config_option(srv)
    srv.set_defaults(func=_with_config(cmd_serve))

    cch = sub.add_parser("cache", help="the response cache of teachers and judges: stats, export, prune")
    add_cache_arguments(cch)
    _config_option(cch)
    cch.set_defaults(func=_with_config(lambda args, cfg: cmd_cache(args, cfg.cache)))

    prb = sub.add_parser("probe", help="a base model's look-up accuracy per format (N =, N has, Here N has, ...)")
    probe.add_probe_arguments(prb)
    prb.set_defaults(func=probe.cmd_probe)

    run = sub.add_parser("run", help="chain the stages of run.stages (testbed to report) in one run folder")
    run.add_argument("--run-dir", help="run folder (default run.dir, else runs/<time>)")
    run.add_argument("--benchmark", help="decode every variant on this benchmark, not the testbed (run.benchmark)")
    _benchmark_options(run)
    _config_option(run)
    run.set_defaults(func=cmd_run)

    grd = sub.add_parser("grid", help="the experiment once per testbed setting, and the grid's table and figure")
    grid.add_grid_arguments(grd)
    _config_option(grd)
    grd.set_defaults(func=_with_config(grid.cmd_grid))

    demo = sub.add_parser("demo", help="`rscaffold run` with the demo config: the whole experiment offline")
    demo.add_argument("--run-dir", help="run folder (default run.dir of the config, else runs/demo)")
    demo.add_argument("--data-only", action="store_true", help="only the data stages (testbed to stats)")
    _config_option(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Arguments, with ``KEY=VALUE`` overrides taken from anywhere on the line."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = [a for a in rest if _OVERRIDE.match(a)]
    unknown = [a for a in rest if not _OVERRIDE.match(a)]
    for name in ("run_dirs",):  # positionals may have swallowed overrides
        if getattr(args, name, None):
            overrides += [a for a in getattr(args, name) if _OVERRIDE.match(a) and not _exists(Path(a))]
            setattr(args, name, [a for a in getattr(args, name) if a not in overrides])
            if not getattr(args, name):
                parser.error(f"{args.command}: give at least one RUN_DIR")
    if getattr(args, "file", None) is not None and _OVERRIDE.match(str(args.file)) and not _exists(args.file):
        overrides.insert(0, str(args.file))
        args.file = None
    if args.command == "testbed" and args.action not in (None, "make"):
        if not _OVERRIDE.match(args.action):
            parser.error(f"testbed: unknown action {args.action!r} (the only one is make)")
        overrides.insert(0, args.action)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if hasattr(args, "overrides"):
        args.overrides = overrides
    elif overrides:
        parser.error(f"{args.command} takes no KEY=VALUE overrides: {' '.join(overrides)}")
    return args


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that the stage unwinds as on Ctrl-C: temporary
    files are removed and no output is half written."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:  # a second signal would interrupt the clean-up of the first
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``rscaffold ... | head``): the Python docs' recipe, so that the
    interpreter's last flush at exit does not fail again; 141 as for a process killed by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not sys.stderr.isatty():  # before transformers loads: no per-load bars in logs (read once at import)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    main_thread = threading.current_thread() is threading.main_thread()  # where Python runs signal handlers
    previous = {sig: signal.signal(sig, _terminate) for sig in STOP_SIGNALS} if main_thread else {}
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return code
    except InputError as e:
        print(f"rscaffold: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"rscaffold: terminated ({e}); no partial output was written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("rscaffold: interrupted; no partial output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


if __name__ == "__main__":
    sys.exit(main())

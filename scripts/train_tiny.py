"""Train a tiny from-scratch student for a few steps: the 2-process check of `tests/test_train.py`.

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 scripts/train_tiny.py BUILD OUT \
        [STEPS] [--checkpoint-every N] [--stop-at STEP] [--resume]

(``--cpu`` alone starts one process; ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1`` starts two that talk
over gloo, as Accelerate's MULTI_CPU mode.) Prints the training summary as JSON on every process;
``--stop-at`` stops every process after that step (as a killed run) and prints ``STOPPED`` instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from rscaffold.config import ModelConfig, TinySizes, TrainConfig
from rscaffold.train import train

TINY = ModelConfig(tiny=TinySizes(hidden=32, layers=2, heads=2, intermediate=64, max_positions=256), vocab_size=300)


class Stop(Exception):
    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir")
    parser.add_argument("out_dir")
    parser.add_argument("steps", nargs="?", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    cfg = TrainConfig(
        max_steps=args.steps, batch_size=2, bf16=False, lr=1e-2, log_every=1, checkpoint_every=args.checkpoint_every
    )

    def stop(step, model):
        if step == args.stop_at:
            raise Stop

    try:
        summary = train(cfg, TINY, args.build_dir, args.out_dir, recipe="scaffold", resume=args.resume, on_step=stop)
    except Stop:
        say("STOPPED")
        return
    say("SUMMARY " + json.dumps(summary))


def say(line: str) -> None:
    """One line per process in one write: print's two writes (text, newline) interleave between processes."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Train a tiny from-scratch student for a few steps: the 2-process check of `tests/test_train.py`.

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 scripts/train_tiny.py BUILD OUT

(``--cpu`` alone starts one process; ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1`` starts two that talk
over gloo, as Accelerate's MULTI_CPU mode.) Prints the training summary as JSON on the main process.
"""

from __future__ import annotations

import json
import sys

from rscaffold.config import ModelConfig, TinySizes, TrainConfig
from rscaffold.train import train

TINY = ModelConfig(tiny=TinySizes(hidden=32, layers=2, heads=2, intermediate=64, max_positions=256), vocab_size=300)


def main(build_dir: str, out_dir: str, steps: str = "3") -> None:
    cfg = TrainConfig(max_steps=int(steps), batch_size=2, bf16=False, lr=1e-2, log_every=1)
    summary = train(cfg, TINY, build_dir, out_dir, recipe="scaffold")
    print("SUMMARY " + json.dumps(summary), flush=True)  # one line per process


if __name__ == "__main__":
    main(*sys.argv[1:])

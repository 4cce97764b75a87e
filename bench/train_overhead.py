"""Cost of the scaffold recipe per optimizer step, against a plain causal-LM loss (goal: ratio <= 1.05).

Same model, same batches, same optimizer, bf16 autocast for all; the three step kinds are timed
interleaved (A, B, C, A, B, C, ...) so that a busy machine slows them alike, and the median is kept:

- ``scaffold``: the proposer's training forward (SEL added before the LM head, LM head only at the
  supervised step tokens, signal head at the step boundaries), ``L_token + lambda L_signal``;
- ``plain``: the Hugging Face model's own loss, ``lm(input_ids, labels=labels).loss``, on the same masks;
- ``bare``: the proposer's path without SEL and head (isolates what the two signal layers cost).

    python bench/train_overhead.py                      # tiny from-scratch Llama (~1M parameters)
    python bench/train_overhead.py --base smollm2 --lora --batch 4 --length 512 --steps 3
    python bench/train_overhead.py --base FOLDER --random-init ...  # config.json + tokenizer only

Prints the ratios, tokens/s of each and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from rscaffold.base_models import load_base
from rscaffold.config import ModelConfig
from rscaffold.model import Proposer, make_student
from rscaffold.tokenizer import IGNORE


def batches(n: int, batch: int, length: int, vocab: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Proposer-shaped batches: a 64-token prompt, then steps of 40 tokens, each with its signal."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(10, vocab, (batch, length), generator=g)
        labels, signal_ids, targets = ids.clone(), torch.full_like(ids, -1), torch.full_like(ids, IGNORE)
        labels[:, :64] = IGNORE
        for start in range(64, length, 40):
            s = int(torch.randint(0, 7, (1,), generator=g))
            signal_ids[:, start - 1 : start + 39], targets[:, start - 1] = s, s
        mask = torch.ones_like(ids)
        out.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "labels": labels,
                "signal_ids": signal_ids,
                "signal_targets": targets,
            }
        )
    return out


def step_fns(model: Proposer, bare: Proposer, optimizer: torch.optim.Optimizer) -> dict:
    def scaffold(b):
        losses = model(**b)
        return losses.token + 1.0 * losses.signal

    def plain(b):
        return model.lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss

    def bare_step(b):
        return bare(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).token

    def timed(loss_fn):
        def run(b):
            started = time.perf_counter()
            with torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16):
                loss = loss_fn(b)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter() - started

        return run

    return {"scaffold": timed(scaffold), "plain": timed(plain), "bare": timed(bare_step)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="tiny", help="tiny, smollm2, a hub id or a folder")
    p.add_argument("--lora", action="store_true", help="LoRA r=16 (default for pretrained bases)")
    p.add_argument("--kinds", default="scaffold,plain,bare", help="which steps to time (peak memory: scaffold)")
    p.add_argument("--full", action="store_true", help="full fine-tuning even of a pretrained base")
    p.add_argument("--random-init", action="store_true", help="--base is a folder with a config.json only")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--steps", type=int, default=8, help="timed steps per kind (after one warm-up each)")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = ModelConfig(base=args.base, lora=True if args.lora else False if args.full else None)
    corpus = [f"{a} + {b} = {a + b}. So the total is {a * b}.\n\n" for a in range(30) for b in range(30)]
    if args.random_init:  # the architecture of a folder's config.json, random weights (timing only)
        from transformers import AutoConfig, AutoModelForCausalLM

        from rscaffold.tokenizer import load_tokenizer

        lm, tok = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.base)), load_tokenizer(args.base)
    else:
        lm, tok, _ = load_base(cfg, corpus=lambda: corpus)
    model = make_student(lm, cfg, sel=True, head=True).to(device).train()
    bare = Proposer(model.lm, sel=False, head=False).to(device).train()  # shares the backbone
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
    data = [{k: v.to(device) for k, v in b.items()} for b in batches(args.steps + 1, args.batch, args.length, len(tok))]
    fns = {k: f for k, f in step_fns(model, bare, optimizer).items() if k in args.kinds.split(",")}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i, b in enumerate(data):
        for name, fn in fns.items():
            t = fn(b)
            if i:  # the first round warms up allocators and kernels
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = args.batch * args.length
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(q.numel() for q in lm.parameters()) / 1e6
    lora = hasattr(model.lm, "peft_config")
    print(f"base={args.base} params={params:.1f}M lora={lora} device={device} batch={args.batch}x{args.length}")
    for name, t in med.items():
        print(f"  {name:9s} {t * 1000:9.1f} ms/step  {tokens / t:9.0f} tokens/s")
    if {"scaffold", "plain", "bare"} <= med.keys():
        print(f"ratio scaffold/plain = {med['scaffold'] / med['plain']:.3f}  (goal <= 1.05)")
        print(f"ratio scaffold/bare  = {med['scaffold'] / med['bare']:.3f}  (the SEL and the signal head alone)")
    print(f"peak resident memory = {rss_gb:.2f} GB")


if __name__ == "__main__":
    sys.exit(main())

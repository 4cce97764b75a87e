"""Tokens per second of signal-guided decoding against plain `generate` on the same model and batch,
measured side by side in one run and printed as ratios (goal >= 0.9 for the head predictor); then the
peak resident memory of decoding many questions against decoding one batch.

    python bench/decode_speed.py --student RUN/students/scaffold --questions RUN/testbed/test_id.jsonl \
        [--predictor RUN/students/predictor] [--batch 8] [--n 64] [--memory-questions 1000]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from pathlib import Path

import torch

from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder, predictor_from_folder
from rscaffold.model import student_from_folder
from rscaffold.schema import Question, read_jsonl
from rscaffold.signal_sources import HeadPredictor


def guided(student, source, questions, cfg) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = sum(d.tokens for d in Decoder(student, source, cfg)(questions))
    return time.perf_counter() - start, tokens


@torch.no_grad()
def plain(student, questions, batch: int, new_tokens: int) -> tuple[float, int]:
    """`generate` with the same batch, writing exactly ``new_tokens`` per question."""
    tok, total, start = student.tokenizer, 0, time.perf_counter()
    tok.padding_side = "left"
    for i in range(0, len(questions), batch):
        chunk = [student.prompt(q.text) for q in questions[i : i + batch]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(student.lm.device)
        if student.add_bos:
            bos = torch.full((enc.input_ids.shape[0], 1), tok.bos_token_id, device=enc.input_ids.device)
            enc = {
                "input_ids": torch.cat([bos, enc.input_ids], 1),
                "attention_mask": torch.cat([torch.ones_like(bos), enc.attention_mask], 1),
            }
        out = student.lm.generate(
            **enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        total += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return time.perf_counter() - start, total


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--predictor", type=Path)
    p.add_argument("--batch", type=int, default=8)
    # Enough questions that the batch's last rows, finishing alone, weigh little: plain `generate`
    # below writes the same number of tokens in every row, a full batch to the end.
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--tau", type=float, default=0.0, help="0: the gate never stops early, so steps are written")
    p.add_argument("--memory-questions", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    student = student_from_folder(args.student, args.device)
    questions = list(itertools.islice(read_jsonl(args.questions, Question), args.n))
    cfg = DecodeConfig(batch_size=args.batch, tau=args.tau)
    guided(student, HeadPredictor(), questions[: args.batch], cfg)  # warm-up
    g_s, g_n = guided(student, HeadPredictor(), questions, cfg)
    p_s, p_n = plain(student, questions, args.batch, max(1, round(g_n / len(questions))))
    print(
        f"guided (head predictor): {g_n / g_s:,.0f} tok/s; plain generate: {p_n / p_s:,.0f} tok/s; "
        f"ratio {(g_n / g_s) / (p_n / p_s):.3f} (batch {args.batch}, {len(questions)} questions, "
        f"{g_n / len(questions):.0f} tokens each)"
    )
    if args.predictor:
        gen = predictor_from_folder(args.predictor, student)
        s, n = guided(student, gen, questions, cfg)
        print(f"guided (generative predictor): {n / s:,.0f} tok/s; ratio {(n / s) / (p_n / p_s):.3f}")
    if args.memory_questions:
        many = list(itertools.islice(itertools.cycle(questions), args.memory_questions))
        before = peak_rss_mb()
        guided(student, HeadPredictor(), many, cfg)
        print(
            f"peak RSS after {len(questions)} questions: {before:,.0f} MB; after {len(many)} more: "
            f"{peak_rss_mb():,.0f} MB (batch {args.batch})"
        )


if __name__ == "__main__":
    main()

"""Tokens per second of signal-guided decoding against plain `generate` on the same model and batch,
measured side by side in one run and printed as ratios (goals: >= 0.9 for the head predictor, >= 0.5 for
the generative predictor); then the peak resident memory of decoding many questions against one batch.

The methods take turns: each guided decoder runs over all the questions (continuous batching, as in
use) but hands over after each batch's worth of finished questions, and plain `generate` then decodes
that batch; only the time inside each method counts. A load that comes and goes on a shared machine
then weighs on every method alike. Both clocks are printed: wall time, and the process's CPU time
(what the decoding itself cost, whatever else ran; the same as wall time with one thread on an idle
machine).

    OMP_NUM_THREADS=1 python bench/decode_speed.py --student RUN/students/scaffold-s0 \
        --questions RUN/testbed/test_id.jsonl [--predictor RUN/students/predictor-s0] [--uncached] \
        [--batch 8] [--n 256] [--memory-questions 1000]
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
from rscaffold.signal_sources import GenerativePredictor, HeadPredictor


class Clock:
    """Wall and CPU seconds and tokens of one method, summed over its turns."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.tokens = 0

    def run(self, fn, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args)
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu

    def ratio(self, plain: Clock) -> str:
        """This method's tokens per second over plain `generate`'s, by wall time and by CPU time."""
        wall = (self.tokens / self.wall) / (plain.tokens / plain.wall)
        cpu = (self.tokens / self.cpu) / (plain.tokens / plain.cpu)
        return f"{self.tokens / self.wall:,.0f} tok/s; ratio {wall:.3f} (CPU time: {cpu:.3f})"


def guided(student, source, questions, cfg) -> int:
    return sum(d.tokens for d in Decoder(student, source, cfg)(questions))


def take(stream, n: int) -> list:
    """The next ``n`` outputs of a running decoder (it goes on from there at its next turn)."""
    return list(itertools.islice(stream, n))


@torch.no_grad()
def plain(student, questions, batch: int, new_tokens: int) -> int:
    """`generate` with the same batch, writing exactly ``new_tokens`` per question."""
    tok, total = student.tokenizer, 0
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
    return total


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sources(student, predictor: Path | None, uncached: bool) -> dict[str, object]:
    out: dict[str, object] = {"head predictor": HeadPredictor()}
    if predictor:
        gen = predictor_from_folder(predictor, student)
        out["generative predictor"] = gen
        if uncached:  # the whole query read at every decision: what the cache saves
            out["generative predictor, uncached"] = GenerativePredictor(gen.student, gen.query, cache=False)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--questions", type=Path, required=True)
    p.add_argument("--predictor", type=Path, help="a generative predictor (train.recipe=predictor)")
    p.add_argument("--uncached", action="store_true", help="also the generative predictor without its cache")
    p.add_argument("--batch", type=int, default=8)
    # Enough questions that a guided decoder's last rows, finishing alone, weigh little: plain
    # `generate` below writes the same number of tokens in every row, a full batch to the end.
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--tau", type=float, default=0.0, help="0: the gate never stops early, so steps are written")
    p.add_argument("--memory-questions", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    student = student_from_folder(args.student, args.device)
    questions = list(itertools.islice(read_jsonl(args.questions, Question), args.n))
    cfg = DecodeConfig(batch_size=args.batch, tau=args.tau)
    methods = sources(student, args.predictor, args.uncached)
    for source in methods.values():
        guided(student, source, questions[: args.batch], cfg)  # warm-up
    clocks = {name: Clock() for name in [*methods, "plain"]}
    streams = {name: Decoder(student, source, cfg)(questions) for name, source in methods.items()}
    for start in range(0, len(questions), args.batch):
        chunk = questions[start : start + args.batch]
        for name, stream in streams.items():
            tokens = sum(d.tokens for d in clocks[name].run(take, stream, len(chunk)))
            clocks[name].tokens += tokens
            if name == "head predictor":  # plain `generate` writes as many tokens per question
                new = max(1, round(tokens / len(chunk)))
                clocks["plain"].tokens += clocks["plain"].run(plain, student, chunk, args.batch, new)
    base = clocks["plain"]
    print(
        f"plain generate: {base.tokens / base.wall:,.0f} tok/s (batch {args.batch}, {len(questions)} questions, "
        f"{clocks['head predictor'].tokens / len(questions):.0f} tokens each)"
    )
    for name in methods:
        print(f"guided ({name}): {clocks[name].ratio(base)}")
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

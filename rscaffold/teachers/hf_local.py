"""A teacher that is a local Hugging Face causal LM (a small reasoning model on this machine's CPU or GPU).

transformers and torch are imported on first use only, so the rest of the package works without them.
The model writes ``<think>...</think>answer`` (or plain text) after its chat template; the thinking
and the answer are split as for API teachers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rscaffold.answers import extract_final_answer
from rscaffold.config import HfTeacherConfig
from rscaffold.schema import InputError, Question, Trace
from rscaffold.teachers import build_messages, split_reasoning


class HfGenerator:
    """A loaded model and tokenizer that complete chat messages."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "auto"):
        import torch
        from transformers import AutoTokenizer

        from rscaffold.base_models import load_causal_lm

        self.torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            model = load_causal_lm(path, dtype=torch_dtype)
            self.model = model.to(device).eval()
        except OSError as e:
            raise InputError(f"{path}: cannot load a causal LM ({str(e).splitlines()[0]})") from None
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def complete_batch(
        self, batch: list[list[dict[str, str]]], max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[str]:
        """The generated text (special tokens removed, ``<think>`` kept) for each chat in ``batch``."""
        torch = self.torch
        torch.manual_seed(seed)
        texts = [self.prompt_text(m) for m in batch]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling.update(temperature=temperature, top_p=top_p)
        with torch.no_grad():
            out = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]

    def complete(self, messages: list[dict[str, str]], **kw: Any) -> str:
        return self.complete_batch([messages], **kw)[0]


class HfTeacher:
    """Thinking traces from a local causal LM, in input order, ``batch_size`` questions at a time."""

    name = "hf"

    def __init__(self, cfg: HfTeacherConfig, seed: int = 0):
        if cfg.model is None:
            raise InputError("generate.hf.model: give the folder of a causal LM (generate.hf.model=PATH)")
        self.cfg, self.seed = cfg, seed
        self.generator: HfGenerator | None = None

    def generate(self, questions: Iterable[Question]) -> Iterator[Trace]:
        batch: list[Question] = []
        for q in questions:
            batch.append(q)
            if len(batch) == self.cfg.batch_size:
                yield from self._batch(batch)
                batch = []
        if batch:
            yield from self._batch(batch)

    def _batch(self, batch: list[Question]) -> list[Trace]:
        cfg = self.cfg
        if self.generator is None:
            self.generator = HfGenerator(cfg.model, cfg.device, cfg.dtype)
        chats = [build_messages(cfg.prompt, q.text) for q in batch]
        texts = self.generator.complete_batch(chats, cfg.max_new_tokens, cfg.temperature, cfg.top_p, self.seed)
        return [self._trace(q, text) for q, text in zip(batch, texts, strict=True)]

    def _trace(self, q: Question, text: str) -> Trace:
        thinking, answer, truncated = split_reasoning({"content": text})
        return Trace(
            question_id=q.id,
            question=q.text,
            teacher=str(self.cfg.model),
            thinking=thinking,
            answer_text=answer,
            final_answer=extract_final_answer(answer),
            gold=q.gold,
            metadata={"truncated": truncated},
        )

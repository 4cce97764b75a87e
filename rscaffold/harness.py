"""lm-evaluation-harness integration: the ``rscaffold`` model and what the task files in
``rscaffold/harness_tasks/`` call (their dataset and the project's answer filters).

The model (:class:`ScaffoldLM`) answers ``generate_until`` requests with signal-guided decoding, as
``rscaffold decode`` does: the request's context is taken as the bare question (a
:class:`~rscaffold.schema.Question` text) and the student's own prompt template wraps it, so the
task files present the bare question, with no few-shot examples and no chat template. It returns
the answer text (what ``rscaffold evaluate`` scores); ``output=full`` returns the steps before it too.

The task files load their questions through the project's benchmark loaders (:func:`benchmark_dataset`),
so each question's text and gold answer are those ``rscaffold decode --benchmark`` sees: from
``--metadata benchmarks=DIR`` or ``$RSCAFFOLD_BENCHMARKS`` (a folder with one subfolder per benchmark,
holding the source's files), else from the Hugging Face hub (online). Besides the harness's own GSM8K
filters (numeric tasks), they score with the project's extraction (:func:`strict_answers`,
:func:`flexible_answers`), so ``rscaffold-strict`` equals ``rscaffold evaluate``'s pass@1_strict.

lm_eval 0.4.13 finds a model only in its registry, and reads no entry points: the ``@register_model``
below runs when this module is imported. Naming a task file by its path (``--tasks .../gsm8k.yaml``)
imports it, since the file's ``!function rscaffold.harness...`` values are resolved before the model is
built; a task given by name with ``--include_path`` is resolved too late for that.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import simple_parse_args_string
from pydantic import ValidationError
from tqdm import tqdm

from rscaffold.benchmarks import load_questions
from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder, make_source
from rscaffold.evaluate import extraction_for
from rscaffold.model import student_from_folder
from rscaffold.schema import Decoded, InputError, Question, Trace, read_jsonl
from rscaffold.signal_sources import NoSignals, golden_sequences

log = logging.getLogger(__name__)

TASKS = Path(__file__).parent / "harness_tasks"
"""The task files (``lm_eval --tasks TASKS/gsm8k.yaml``)."""
OUTPUTS = ("answer", "full")
_GEN_KWARGS = {"until", "do_sample", "temperature", "top_p", "max_gen_toks"}


# -- the task files: dataset and filters ----------------------------------------------------------


def benchmark_dataset(benchmark: str, split: str, benchmarks: str | None = None, **_: Any) -> Any:
    """The ``custom_dataset`` of the task files: one split of a benchmark as the project loads it.

    lm_eval passes the task's ``dataset_kwargs`` (benchmark, split) and its metadata (``--metadata``,
    merged with the model arguments: ignored here except ``benchmarks``, a folder holding
    ``<benchmark>/``). Without it the loader reads ``$RSCAFFOLD_BENCHMARKS/<benchmark>``, else the hub.
    Each doc: id, question (bare text), gold, benchmark and the question's metadata as JSON.
    """
    import datasets

    path = Path(benchmarks) / benchmark if benchmarks else None
    rows = [
        {
            "id": q.id,
            "question": q.text,
            "gold": q.gold or "",
            "benchmark": benchmark,
            "metadata": json.dumps(q.metadata, default=str),
        }
        for q in load_questions(benchmark, split, path)
    ]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


def strict_answers(resps: Iterable[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Filter (``function: custom``): the project's strict answer of each response (``rscaffold.answers``)."""
    return _answers("strict", resps, docs)


def flexible_answers(resps: Iterable[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Filter (``function: custom``): the project's flexible answer of each response."""
    return _answers("flexible", resps, docs)


def _answers(rule: str, resps: Iterable[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Each extracted answer, spelled as the gold answer when the project's equality accepts it
    (numbers as numbers, MATH by math-verify, labels case-blind): the task's exact_match then counts
    what ``rscaffold evaluate`` counts ("18.00" is right for gold 18, as there)."""
    out = []
    for texts, doc in zip(resps, docs, strict=True):
        ex, meta, gold = extraction_for(doc["benchmark"]), json.loads(doc["metadata"]), doc["gold"]
        found = [getattr(ex, rule)(text, meta) for text in texts]
        out.append([gold if ex.equal(answer, gold) else answer for answer in found])
    return out


# -- the model ------------------------------------------------------------------------------------


@register_model("rscaffold")
class ScaffoldLM(LM):
    """A trained student decoded with a signal source (``--model rscaffold``).

    ``--model_args``: ``pretrained`` (the student folder), ``signal_source`` and any other
    :class:`~rscaffold.config.DecodeConfig` field (tau, prune, max_steps, max_tokens, ...); ``golden``
    (labelled teacher traces: golden sources, matched to each question by its text), ``train_traces``
    (random), ``predictor`` (predictor-generative), ``prompt_template``, ``output`` (answer | full).
    ``batch_size`` and ``device`` may be given there or as lm_eval's ``--batch_size`` (``auto``: the decode
    default) and ``--device`` (a CUDA device falls back to the CPU where there is none).
    """

    def __init__(
        self,
        pretrained: str,
        golden: str | None = None,
        train_traces: str | None = None,
        predictor: str | None = None,
        prompt_template: str | None = None,
        output: str = "answer",
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,  # lm_eval passes it; batches here are refilled as rows finish
        device: str | None = None,
        **decode: Any,
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise InputError(f"--model_args output={output}: expected one of {', '.join(OUTPUTS)}")
        self.pretrained, self.output = str(pretrained), output
        self.cfg = decode_config(decode, batch_size, device)
        self._device = self.cfg.device
        self.student = student_from_folder(self.pretrained, self.cfg.device, prompt_template)
        traces = list(read_jsonl(Path(golden), Trace)) if golden else []
        self.golden = golden_sequences(traces) if golden else None
        self.ids = {t.question: t.question_id for t in traces if t.question}
        if self.student.follows_signals:
            extras = [Path(p) if p else None for p in (train_traces, predictor)]
            self.source = make_source(self.cfg, self.student, self.golden, *extras)
        else:  # a baseline writes no steps under signals: it decodes freely, as in `rscaffold decode`
            log.info("%s follows no signals: decoding freely (signal source none)", self.pretrained)
            self.source = NoSignals()
        self._ignored: set[str] = set()

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> Any:
        """lm_eval's own settings (``--batch_size``, ``--device``) unless ``--model_args`` names them: its
        default batch size 1 is always passed, and a name in both would be a TypeError."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None) -> Any:
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each request's ``(context, gen_kwargs)`` decoded as one question; requests with the same
        generation settings share a decoder (and its batches)."""
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        out = [""] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="rscaffold")
        for idx in groups.values():
            gen = requests[idx[0]].args[1]
            decoder = Decoder(self.student, self.source, self.generation_config(gen), golden=self.golden)
            for i, decoded in zip(idx, decoder(self.question(requests[j].args[0]) for j in idx), strict=True):
                out[i] = cut_at(self.text(decoded), gen.get("until"))
                self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
                bar.update()
        bar.close()
        return out

    def question(self, context: str) -> Question:
        """The request's context as a question; its id is the golden traces' one for the same text."""
        qid = self.ids.get(context) or "lm_eval-" + hashlib.sha1(context.encode()).hexdigest()[:12]
        return Question(id=qid, text=context)

    def text(self, d: Decoded) -> str:
        if self.output == "answer":
            return d.answer_text
        return "".join(s.text + s.sep for s in d.steps) + d.answer_text

    def generation_config(self, gen: dict[str, Any]) -> DecodeConfig:
        """The decode settings for a request's gen_kwargs: sampling as Hugging Face ``generate`` reads
        it (greedy unless do_sample), ``max_gen_toks`` as the cap on all tokens written; the task files
        ask for greedy decoding."""
        ignored = set(gen) - _GEN_KWARGS - self._ignored
        if ignored:
            log.warning("rscaffold ignores gen_kwargs %s", ", ".join(sorted(ignored)))
            self._ignored |= ignored
        update: dict[str, Any] = {}
        if "do_sample" in gen or "temperature" in gen:  # else the model arguments' temperature stands
            update["temperature"] = float(gen.get("temperature", 1.0)) if gen.get("do_sample") else 0.0
        if "top_p" in gen:
            update["top_p"] = float(gen["top_p"])
        if gen.get("max_gen_toks"):
            update["max_new_tokens"] = int(gen["max_gen_toks"])
        return DecodeConfig.model_validate({**self.cfg.model_dump(), **update})

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        raise NotImplementedError(_NO_LIKELIHOOD)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(_NO_LIKELIHOOD)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError(
            "rscaffold: the student's own prompt template wraps the question; run without --apply_chat_template"
        )

    def get_model_info(self) -> dict[str, Any]:
        """Recorded in the results file's config."""
        return {
            "rscaffold_student": self.pretrained,
            "method": self.student.method,
            "signal_source": self.source.name,
            "output": self.output,
            "decode": self.cfg.model_dump(mode="json"),
        }


_NO_LIKELIHOOD = (
    "rscaffold: a scaffolded student answers by signal-guided generation, which gives no likelihood of a "
    "given continuation, so loglikelihood and multiple_choice tasks are not supported; run generate_until "
    "tasks (rscaffold/harness_tasks/*.yaml), or score the student's language model without signals with "
    "--model hf --model_args pretrained=STUDENT_DIR (a student folder is a Hugging Face folder)"
)


def decode_config(given: dict[str, Any], batch_size: int | str | None, device: str | None) -> DecodeConfig:
    """The model arguments as a DecodeConfig; an unknown or bad one is an InputError naming it."""
    settings = dict(given)
    if batch_size is not None and not str(batch_size).startswith("auto"):
        settings["batch_size"] = batch_size
    if device and str(device).startswith("cuda") and not torch.cuda.is_available():
        log.warning("rscaffold: device %s requested but CUDA is not available; using the CPU", device)
        device = "cpu"
    settings["device"] = device or "auto"
    try:
        cfg = DecodeConfig.model_validate(settings)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"])
        known = ", ".join(["pretrained", "golden", "train_traces", "predictor", "prompt_template", "output"])
        raise InputError(
            f"--model_args {name}: {first['msg']} (model arguments: {known} and the decode settings "
            f"{', '.join(DecodeConfig.model_fields)})"
        ) from None
    if cfg.device == "auto":
        cfg = cfg.model_copy(update={"device": "cuda" if torch.cuda.is_available() else "cpu"})
    return cfg


def cut_at(text: str, until: str | list[str] | None) -> str:
    """The text up to the first stop string, as the harness's other models cut their outputs."""
    for stop in [until] if isinstance(until, str) else until or []:
        if stop:
            text = text.split(stop)[0]
    return text

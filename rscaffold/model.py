"""The student: any causal LM, plus the signal embedding layer and the signal head (METHOD.md section 4).

``Proposer(lm)`` wraps a Hugging Face causal LM (or a peft LoRA model around one):

- the **signal embedding layer** (SEL, ``C x d_model``) adds the vector of the step's signal to the
  backbone's last hidden state (after the final norm) at every position that writes a token of that
  step, just before the LM head. The head is affine, ``W (h + e_s) + b = (W h + b) + W e_s``, so the
  SEL is a per-signal bias over the vocabulary (:meth:`Proposer.signal_bias`); a base model's final
  logit soft-capping (Gemma 2) comes after the head and that bias, in training and decoding alike
  (:func:`lm_logits`);
- the **signal head** (``d_model -> C``) reads the last hidden state (without the SEL) and predicts the
  signal of the next step from the context before it.

Baselines (CoT, long-thinking, answer-only SFT, the generative predictor, pretraining) are the same
class with neither layer, so every student is saved, loaded and decoded the same way.

Forward contract with ``rscaffold decode``::

    lm_logits, signal_logits, past_key_values = model(input_ids, signal_ids=..., past_key_values=...,
                                                      use_cache=True)

``signal_ids[b, p]`` is the signal under which the token *after* position ``p`` is written (-1: none).
Incremental decoding passes only the new tokens and their signal ids. At a step boundary (the last
token of the prompt or of a step), feed that token with ``signal_ids=-1``, read ``signal_logits[:, -1]``
(independent of the signal id there), choose a signal ``s``, and sample the step's first token from
``lm_logits(model.base_lm(), h, model.signal_bias(s))``, ``h`` the last hidden state there
(:meth:`Proposer.hidden`; without soft-capping, simply ``lm_logits[:, -1] + model.signal_bias(s)``);
feed the following tokens of the step with ``s``. The SEL sits after the last layer, so the KV cache
never depends on the signals.

Where the signal enters (``train.signal_position``, :data:`POSITIONS`):

- ``output`` (the paper, above);
- ``input``: a second table (``signal_input``, ``C x d_model``, zeros at first) is added to the input
  embeddings of the step's tokens, so every layer sees the signal while the step is written. The
  boundary token is the exception: the head reads its state, which must not depend on the signal it
  predicts, so it is fed without one, and the step's first token, written there, gets the SEL's bias
  alone (the SEL acts at the boundaries only). Decoding feeds each token with the signal it was written
  under (the boundary with -1, as above), so the KV cache holds the signals of the steps written so far;
  in training the boundaries are the positions with a ``signal_target``;
- ``prefix``: no SEL; the signal's name is written as text before the step (``signals.SIGNAL_TEXT``),
  fed by the decoder, and the head predicts it.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rscaffold.base_models import BASES, base_kind, load_base, load_causal_lm
from rscaffold.config import BuildConfig, ModelConfig
from rscaffold.config.data import is_file
from rscaffold.schema import InputError
from rscaffold.signals import SIGNAL_TEXT, TITLES, Signal
from rscaffold.tokenizer import IGNORE, load_tokenizer

SIGNAL_SET = "paper"
SIGNAL_SET_VERSION = "2509.23619-v2"
"""The signal set of the student: the paper's seven signals in the order of its prompts (ids 0-6)."""
META_FILE = "rscaffold_student.json"
SIGNAL_FILE = "signal_layers.safetensors"
FORMAT_VERSION = 1
POSITIONS = ("output", "input", "prefix")
"""Where the signal enters the student (``train.signal_position``; see the module docstring)."""
DEFAULT_ANSWER_BUDGET = 256
"""Answer tokens of a student whose training answers were not measured."""


class Output(NamedTuple):
    lm_logits: torch.Tensor
    signal_logits: torch.Tensor | None
    past_key_values: Any


class Losses(NamedTuple):
    token: torch.Tensor
    """Mean cross-entropy over the supervised (step) tokens: L_token."""
    signal: torch.Tensor
    """Mean cross-entropy of the signal head at the step boundaries: L_signal (0 without a head)."""


class Proposer(nn.Module):
    """A causal LM with the paper's signal embedding layer and signal head (Sec. 3.2)."""

    def __init__(
        self,
        lm: nn.Module,
        num_signals: int = len(Signal),
        sel: bool = True,
        head: bool = True,
        position: str = "output",
    ):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"signal position {position!r}: expected one of {', '.join(POSITIONS)}")
        self.lm, self.position = lm, position
        d = self.base_lm().config.hidden_size
        sel = sel and position != "prefix"
        # Zeros: a fresh SEL leaves a pretrained model's distribution untouched.
        self.signal_embedding = nn.Embedding(num_signals, d, _weight=torch.zeros(num_signals, d)) if sel else None
        self.signal_input = (
            nn.Embedding(num_signals, d, _weight=torch.zeros(num_signals, d)) if sel and position == "input" else None
        )
        self.signal_head = nn.Linear(d, num_signals) if head else None

    def base_lm(self) -> nn.Module:
        """The Hugging Face causal LM (inside the LoRA wrapper, if any: its layers carry the adapters)."""
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    def hidden(
        self,
        input_ids,
        attention_mask=None,
        past_key_values=None,
        use_cache=False,
        position_ids=None,
        input_signals=None,
    ):
        """The backbone's last hidden state (after the final norm) and its KV cache; ``input_signals``
        (signal position ``input``): the signal added to each position's input embedding (-1: none)."""
        decoder = self.base_lm().get_decoder()
        cache = {cache_arg(decoder): past_key_values} if past_key_values is not None else {}
        tokens = {"input_ids": input_ids}
        if self.signal_input is not None and input_signals is not None:
            tokens = {"inputs_embeds": embed_with_signals(decoder, input_ids, input_signals, self.signal_input.weight)}
        out = decoder(attention_mask=attention_mask, use_cache=use_cache, position_ids=position_ids, **tokens, **cache)
        # transformers 5 names the field `cache` (and warns when `past_key_values` is read); 4.x `past_key_values`
        name = "cache" if "cache" in getattr(type(out), "__dataclass_fields__", {}) else "past_key_values"
        return out.last_hidden_state, out.get(name)

    def with_signal(self, h: torch.Tensor, signal_ids: torch.Tensor | None) -> torch.Tensor:
        """``h + SEL[signal]`` where a signal is given (id >= 0), ``h`` elsewhere."""
        if self.signal_embedding is None or signal_ids is None:
            return h
        return h + signal_vectors(signal_ids, self.signal_embedding.weight, h.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        signal_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        signal_targets: torch.Tensor | None = None,
    ) -> Output | Losses:
        """Without ``labels``: ``Output(lm_logits, signal_logits, past_key_values)`` (see the module
        docstring). With ``labels`` (training): ``Losses(token, signal)``; the LM head then runs only
        at the supervised positions, not over the whole prompt.

        Signal position ``input``: the boundaries are the positions with a ``signal_targets`` id; there
        the signal goes to the output (the SEL), elsewhere to the input. Without ``signal_targets`` every
        given id goes to the input and none to the output: the caller feeds a boundary with -1 and adds
        :meth:`signal_bias` to the logits of a step's first token, as decoding does."""
        signal_ids, input_signals = self.placed(signal_ids, signal_targets)
        h, cache = self.hidden(input_ids, attention_mask, past_key_values, use_cache, position_ids, input_signals)
        if labels is not None:
            return self._losses(h, signal_ids, labels, signal_targets)
        logits = lm_logits(self.base_lm(), self.with_signal(h, signal_ids))
        signal_logits = self.signal_head(h) if self.signal_head is not None else None
        return Output(logits, signal_logits, cache)

    def placed(self, signal_ids, signal_targets):
        """``(output ids, input ids)``: where each position's signal enters (see :meth:`forward`)."""
        if self.signal_input is None or signal_ids is None:
            return signal_ids, None
        if signal_targets is None:
            return None, signal_ids
        boundary = signal_targets != IGNORE
        return signal_ids.masked_fill(~boundary, -1), signal_ids.masked_fill(boundary, -1)

    def _losses(self, h, signal_ids, labels, signal_targets) -> Losses:
        """L_token over the step tokens (position p predicts token p + 1) and L_signal at the boundaries."""
        targets = labels[:, 1:]
        keep = targets != IGNORE
        hs = h[:, :-1][keep]  # the LM head runs only where the loss is taken (a large vocabulary is costly)
        sig = signal_ids[:, :-1][keep] if signal_ids is not None else None
        logits = lm_logits(self.base_lm(), self.with_signal(hs, sig))
        token = F.cross_entropy(logits.float(), targets[keep])
        if self.signal_head is None or signal_targets is None:
            return Losses(token, h.new_zeros((), dtype=torch.float32))
        # The head is tiny (d x C): run it everywhere and let ignore_index pick the boundaries (no host sync).
        signal_logits = self.signal_head(h).float().flatten(0, 1)
        total = F.cross_entropy(signal_logits, signal_targets.flatten(), ignore_index=IGNORE, reduction="sum")
        return Losses(token, total / (signal_targets != IGNORE).sum().clamp(min=1))

    @torch.no_grad()
    def signal_bias(self, signal: int | None = None) -> torch.Tensor:
        """The SEL as a bias over the vocabulary, ``lm_head(h + e_s) - lm_head(h)``: shape (vocab,) for
        one signal, (C, vocab) for all (``signal=None``). It is the same for every ``h`` because the head
        is affine (the head's own bias cancels); soft-capping comes after it (:func:`lm_logits`)."""
        if self.signal_embedding is None:
            raise ValueError("this student has no signal embedding layer")
        head = self.base_lm().get_output_embeddings()
        e = self.signal_embedding.weight.to(head.weight.dtype)
        bias = head(e) - head(torch.zeros_like(e))
        return bias if signal is None else bias[signal]


def signal_vectors(signal_ids: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight[signal_ids]``, zeros where the id is -1. A one-hot product: id -1 wraps to an all-zero
    column, there is no host sync, and the backward is a small matmul (an embedding's backward scatters
    thousands of rows into C with atomics)."""
    onehot = F.one_hot(signal_ids % (len(weight) + 1), len(weight) + 1)[..., :-1]
    return onehot.to(dtype) @ weight.to(dtype)


def embed_with_signals(decoder: nn.Module, input_ids, input_signals, weight: torch.Tensor) -> torch.Tensor:
    """The backbone's input embeddings of ``input_ids`` (its own embedding module, scaling included,
    e.g. Gemma 3's) plus the signal vectors ``weight[input_signals]`` (signal position ``input``)."""
    embeds = decoder.get_input_embeddings()(input_ids)
    return embeds + signal_vectors(input_signals, weight, embeds.dtype)


def empty_copy(model: nn.Module) -> nn.Module:
    """The student's structure with its parameters on the meta device (no memory), taken before
    ``prepare`` shards them; :func:`filled` puts the gathered state dict into it to save."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    return copy.deepcopy(model, memo)


def filled(skeleton: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """``skeleton`` (:func:`empty_copy`) holding ``state``, a whole state dict as ``get_state_dict``
    gathers it (ZeRO-3: 16-bit), in the skeleton's dtypes; tied parameters (an LM head) stay tied."""
    groups: dict[int, list[str]] = {}
    for name, p in skeleton.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    wanted = skeleton.state_dict()
    skeleton.load_state_dict({k: v.to(wanted[k].dtype) for k, v in state.items() if k in wanted}, False, True)
    for names in (g for g in groups.values() if len(g) > 1):  # loading gave each name its own tensor
        kept = [p for p in map(skeleton.get_parameter, names) if not p.is_meta][:1]
        for name in names if kept else []:
            owner, _, attr = name.rpartition(".")
            setattr(skeleton.get_submodule(owner), attr, kept[0])
    missing, unexpected = [n for n, p in skeleton.named_parameters() if p.is_meta], sorted(set(state) - set(wanted))
    if missing or unexpected:
        raise RuntimeError(f"the gathered state dict lacks {missing[:5]} and has unknown {unexpected[:5]}")
    return skeleton


def lm_logits(lm: nn.Module, h: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The logits a causal LM gives its last hidden states ``h``, plus ``bias`` (the SEL's, see
    :meth:`Proposer.signal_bias`) before the base model's final soft-capping, ``cap * tanh(z / cap)``
    (Gemma 2's ``final_logit_softcapping``): the capping is the last step of the model's own forward,
    so the student trains and decodes under it as the base model was trained."""
    logits = lm.get_output_embeddings()(h)
    if bias is not None:
        logits = logits + bias.to(logits.dtype)
    cap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
    return logits if not cap else torch.tanh(logits / cap) * cap


def cache_arg(decoder: nn.Module) -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); accept either version."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def make_student(lm: nn.Module, model_cfg: ModelConfig, sel: bool, head: bool, position: str = "output") -> Proposer:
    """Wrap a base causal LM: LoRA through peft when configured, then the SEL and the head, the signal
    entering at ``position`` (:data:`POSITIONS`)."""
    if model_cfg.uses_lora(sum(p.numel() for p in lm.parameters())):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=model_cfg.lora_r,
            lora_alpha=model_cfg.lora_alpha,
            lora_dropout=model_cfg.lora_dropout,
            target_modules=lora_targets(lm, model_cfg.lora_targets),
            task_type="CAUSAL_LM",
        )
        lm = get_peft_model(lm, lora)
    return Proposer(lm, sel=sel, head=head, position=position)


def lora_targets(lm: nn.Module, targets: list[str]) -> list[str]:
    """``targets`` when the model has a module of one of these names; otherwise an InputError naming its
    linear layers. The names differ per family (GPT-2: ``c_attn``; Phi-3: ``qkv_proj``), and peft's own
    error does not say which names would do."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    names = [name for name, _ in lm.named_modules()]
    if any(n == t or n.endswith("." + t) for n in names for t in targets):  # peft's rule for a list of names
        return targets
    head = lm.get_output_embeddings()
    layers = (m for m in lm.named_modules() if isinstance(m[1], nn.Linear | Conv1D) and m[1] is not head)
    linear = {name.rsplit(".", 1)[-1] for name, _ in layers}
    raise InputError(
        f"model.lora_targets={targets}: {type(lm).__name__} has no module of these names; "
        f"its linear layers are {sorted(linear)} (set model.lora_targets to some of them)"
    )


def student_meta(recipe: str, model: Proposer, info: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The student's own config: recipe, signal set and version, layout settings for decode."""
    return {
        "format_version": FORMAT_VERSION,
        "recipe": recipe,
        "signal_set": SIGNAL_SET,
        "signal_set_version": SIGNAL_SET_VERSION,
        "signals": [TITLES[s] for s in Signal],
        "signal_embedding": model.signal_embedding is not None,
        "signal_head": model.signal_head is not None,
        "signal_position": model.position,
        **info,
        **extra,
    }


def save_student(model: Proposer, tokenizer: Any, out_dir: str | Path, meta: dict[str, Any], merge: bool = True):
    """Write a Hugging Face folder: backbone weights (merged, or the LoRA adapter), tokenizer, the
    signal layers in ``signal_layers.safetensors``, ``rscaffold_student.json`` and a model card."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm = model.lm
    adapter = hasattr(lm, "merge_and_unload") and not merge
    if hasattr(lm, "merge_and_unload") and merge:
        lm = copy.deepcopy(lm).merge_and_unload()  # a copy: the training model keeps its adapters
    lm.save_pretrained(str(out))
    if getattr(tokenizer, "chat_template", None) is None and meta.get("prompt_template"):
        tokenizer = copy.copy(tokenizer)  # the caller's tokenizer stays as it was
        tokenizer.chat_template = chat_template(meta["prompt_template"])
    tokenizer.save_pretrained(str(out))
    names = ("signal_embedding", "signal_input", "signal_head")
    layers = {f"{name}.{k}": v for name in names for k, v in _state(model, name).items()}
    if layers:
        save_file({k: v.detach().contiguous().cpu() for k, v in layers.items()}, str(out / SIGNAL_FILE))
    # For plain transformers (rscaffold.hf.SignalLogitsProcessor): a bias on every token is the student
    # only when the signal enters at the output; one entering at the input needs rscaffold's decoder.
    if model.signal_embedding is not None and model.position == "output":
        save_file({"signal_bias": model.signal_bias().float().contiguous().cpu()}, str(out / "signal_bias.safetensors"))
    meta = {**meta, "weights": "adapter" if adapter else "full"}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    (out / "README.md").write_text(model_card(meta))


def _state(model: Proposer, name: str) -> dict[str, torch.Tensor]:
    layer = getattr(model, name)
    return layer.state_dict() if layer is not None else {}


def load_student(path: str | Path, device: str | torch.device | None = None) -> tuple[Proposer, Any, dict]:
    """``(model, tokenizer, meta)`` from a folder written by :func:`save_student`, in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    if meta["weights"] == "adapter":
        from peft import PeftModel

        base, _, _ = load_base(ModelConfig(base=meta["base"]))
        lm = PeftModel.from_pretrained(base, str(path))
    else:
        lm = load_causal_lm(str(path), dtype="float32")
    position = meta.get("signal_position", "output")
    model = Proposer(lm, len(meta["signals"]), meta["signal_embedding"], meta["signal_head"], position)
    if (path / SIGNAL_FILE).exists():
        missing, _ = model.load_state_dict(load_file(str(path / SIGNAL_FILE)), strict=False)
        assert not [k for k in missing if k.startswith("signal_")], missing
    return model.to(device or "cpu").eval(), load_tokenizer(path), meta


def chat_template(prompt_template: str) -> str:
    """A chat template (Jinja) for a base that has none: the last user message placed in the student's
    prompt template, so ``apply_chat_template(messages, add_generation_prompt=True)`` gives the prompt
    the student was trained on. A base's own template is saved as it is."""
    before, _, after = prompt_template.partition("{question}")
    before, after = (part.replace("{{", "{").replace("}}", "}") for part in (before, after))
    text = (
        "{{ "
        + json.dumps(before, ensure_ascii=False)
        + " }}{{ m['content'] }}{{ "
        + json.dumps(after, ensure_ascii=False)
    )
    return "{%- for m in messages if m['role'] == 'user' %}{%- if loop.last %}" + text + " }}{%- endif %}{%- endfor %}"


HUB_BASES = {"smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"), "testbed": (None, "mit")}
"""Named bases: their hub id (the card's ``base_model``) and licence."""


def front_matter(meta: dict[str, Any]) -> str:
    """The model card's YAML front matter (the hub's metadata: licence, base model, library, tags)."""
    base = str(meta.get("base"))
    hub, licence = HUB_BASES.get(base, (base if base.count("/") == 1 and not Path(base).exists() else None, "other"))
    fields = {"license": licence, **({"base_model": hub} if hub else {}), "library_name": "transformers"}
    fields["tags"] = ["rscaffold", "reasoning-scaffolding", meta["recipe"]] + (["lora"] if meta.get("lora") else [])
    if meta.get("datasets"):
        fields["datasets"] = list(meta["datasets"])
    lines = [f"{k}: {json.dumps(v)}" for k, v in fields.items() if not isinstance(v, list)]
    lines += [
        f"{k}:\n" + "".join(f"- {json.dumps(x)}\n" for x in v).rstrip()
        for k, v in fields.items()
        if isinstance(v, list)
    ]
    return "---\n" + "\n".join(lines) + "\n---\n\n"


def model_card(meta: dict[str, Any]) -> str:
    """A short model card for the saved folder, with the hub's front matter."""
    layers = "signal embedding layer and signal head" if meta["signal_head"] else "no signal layers"
    return front_matter(meta) + (
        f"# rscaffold student: {meta['recipe']}\n\n"
        f"Trained by `rscaffold train --recipe {meta['recipe']}` (Reasoning Scaffolding, arXiv 2509.23619).\n"
        f"Base: `{meta.get('base')}`; weights: {meta['weights']}; {layers}.\n"
        f"Signal set: {meta['signal_set']} ({meta['signal_set_version']}): {', '.join(meta['signals'])}.\n\n"
        "Load it with one call:\n\n```python\nfrom rscaffold.model import load_student\n"
        'model, tokenizer, meta = load_student("path/to/this/folder")\n'
        "lm_logits, signal_logits, cache = model(input_ids, signal_ids=..., use_cache=True)\n```\n\n"
        + (
            "Or in plain transformers, writing under a chosen signal (`signal_bias.safetensors`):\n\n```python\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "from rscaffold.hf import SignalLogitsProcessor\n"
            'model, tok = AutoModelForCausalLM.from_pretrained("DIR"), AutoTokenizer.from_pretrained("DIR")\n'
            'signal = SignalLogitsProcessor.from_pretrained("DIR", "reasoning")\n'
            'out = model.generate(**tok(prompt, return_tensors="pt"), logits_processor=[signal], max_new_tokens=64)\n'
            "```\n\n"
            if meta.get("signal_embedding") and meta.get("signal_position", "output") == "output"
            else ""
        )
        + f"Prompt template: `{meta.get('prompt_template', '')!r}`.\n"
        f"Training summary: {json.dumps(meta.get('train', {}))}\n"
    )


# -- the student as decoding sees it --------------------------------------------------------------


@dataclass
class Student:
    """What decoding needs of a trained student.

    ``lm`` is a Hugging Face causal LM: ``lm.get_decoder()`` is the backbone, returning final-normed
    hidden states (``.model`` of Llama, ``.transformer`` of GPT-2), and :func:`lm_logits` turns them
    into logits; ``signal_head`` maps a hidden state to the C signal logits; ``signal_bias`` is the SEL
    as a bias over the vocabulary (:meth:`Proposer.signal_bias`), shape (C, vocab). Baselines have
    neither; a signal-as-text student has ``signal_prefix`` instead.
    """

    lm: Any
    tokenizer: Any
    prompt: Callable[[str], str]
    """The question text -> the prompt text it was trained with."""
    signal_head: torch.nn.Module | None = None
    signal_bias: torch.Tensor | None = None
    method: str = "scaffold"
    add_bos: bool = False
    """Whether training sequences start with the bos token."""
    signal_prefix: str | None = None
    """Signal-as-text students: the text written before each step and the answer, ``{title}`` the
    signal's name (``signals.SIGNAL_TEXT``); None for the others."""
    answer_budget: int | None = None
    """Tokens of a guided answer when ``decode.max_answer_tokens`` is None (from the training answers;
    None: :data:`DEFAULT_ANSWER_BUDGET`)."""
    signal_input: torch.Tensor | None = None
    """Signal position ``input``: the table added to the input embeddings (C, d_model); ``signal_bias``
    then applies to the first token of each step only (see the module docstring)."""

    @property
    def follows_signals(self) -> bool:
        """Whether the student writes its steps under signals (an SEL, or signal prefixes)."""
        return self.signal_bias is not None or self.signal_prefix is not None

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt as training laid them out: [bos] then the text alone."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return [self.tokenizer.bos_token_id, *ids] if self.add_bos else ids


def student_from_folder(path: str | Path, device: str | None = None, prompt_template: str | None = None) -> Student:
    """A trained student folder (``rscaffold train``) as decoding needs it.

    A path without ``rscaffold_student.json`` (a base name such as ``smollm2``, a hub id, a plain
    Hugging Face folder) is the untrained base model, the paper's "Original" row: see :func:`base_student`.
    """
    if not is_file(str(Path(path) / META_FILE)):
        return base_student(str(path), device, prompt_template)
    model, tokenizer, meta = load_student(path, device)
    template = meta.get("prompt_template") or "{question}"
    prefix = meta.get("signal_text", SIGNAL_TEXT) if meta.get("signal_as_text") else None
    return Student(
        lm=model.base_lm(),
        tokenizer=tokenizer,
        prompt=lambda question: template.format(question=question),
        signal_head=model.signal_head,
        signal_bias=model.signal_bias() if model.signal_embedding is not None else None,
        method=meta.get("recipe", Path(path).name),
        add_bos=bool(meta.get("add_bos", False)),
        signal_prefix=prefix,
        answer_budget=answer_budget(meta),
        signal_input=model.signal_input.weight.detach() if model.signal_input is not None else None,
    )


def answer_budget(meta: dict[str, Any]) -> int:
    """A student's answer budget when ``decode.max_answer_tokens`` is None: 1.5 times the 99th
    percentile of its training answers' token lengths (``answer_tokens`` in rscaffold_student.json,
    written by training), at least 64; :data:`DEFAULT_ANSWER_BUDGET` when they were not measured."""
    p99 = meta.get("answer_tokens", {}).get("p99")
    return DEFAULT_ANSWER_BUDGET if p99 is None else max(64, math.ceil(1.5 * p99))


def base_student(name: str, device: str | None = None, prompt_template: str | None = None) -> Student:
    """An untrained base model (``model.base`` names: ``smollm2``, ``testbed``, a hub id or a folder) as
    decoding needs it: no signal layers, so it decodes freely (source none), with the students' prompt
    template (``build.prompt_template``; its default when None).

    A name that is none of these fails at once, without asking the hub (see :func:`base_kind`)."""
    template = prompt_template or BuildConfig().prompt_template
    if base_kind(name) is None:
        names = ", ".join(BASES)
        raise InputError(f"{name}: neither a trained student folder, a base model name ({names}) nor a hub id")
    if name == "tiny":
        raise InputError("tiny: an untrained tiny model has random weights and no tokenizer; decode a trained student")
    try:
        lm, tokenizer, info = load_base(ModelConfig(base=name))
    except InputError:
        raise
    except (OSError, ValueError) as e:  # a folder that is not a model, an unknown or unreachable hub id
        why = (str(e).strip().splitlines() or [""])[0]
        raise InputError(
            f"{name}: neither a trained student folder nor a loadable base model ({type(e).__name__}: {why})"
        ) from None
    return Student(
        lm=lm.to(device or "cpu").eval(),
        tokenizer=tokenizer,
        prompt=lambda question: template.format(question=question),
        method="original",
        add_bos=bool(info.get("add_bos", False)),
    )

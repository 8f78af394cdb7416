"""Prompts of text and images as a vision-language model takes them (the Qwen2-VL family:
Qwen2-VL, Qwen2.5-VL, and the tiny one of `dps.models.tiny`).

A prompt is a chat turn's content, ``[{"type": "image"}, {"type": "text", "text": ...}]``, and
its decoded images. `VisionProcessor.encode` renders the turn with the tokenizer's chat
template (which writes one ``<|image_pad|>`` per image), runs the image processor (``pixel_values``,
one row per patch, and ``image_grid_thw``, one row per image) and widens each image's pad token to
the number of merged patches the vision tower gives it, as the model's own processor does. It
needs no torchvision (transformers' Qwen2-VL *processor* does, for videos; its tokenizer and
image processor do not), so the same code runs on a bare CPU machine and on a GPU.

`ImageInputs` is what crosses from a prompt to the engines and the learner; `model_image_kwargs`
concatenates those of a batch into the forward pass's keyword arguments (with
``mm_token_type_ids`` where the model asks for it, transformers >= 5.x).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageInputs:
    """One prompt's images as the model takes them.

    ``tensors`` (``pixel_values``, ``image_grid_thw``) have one block of rows per image and are
    concatenated along dimension 0 across the prompts of a batch, in batch order; ``images`` are
    the decoded images themselves (what vLLM takes as ``multi_modal_data``)."""

    tensors: dict[str, Any]
    images: tuple[Any, ...]


def image_inputs(image_processor: Any, images: list[Any]) -> ImageInputs:
    """One prompt's decoded images through a Qwen2-VL-family image processor."""
    features = image_processor(images=list(images), return_tensors="pt")
    if "image_grid_thw" not in features:
        name = type(image_processor).__name__
        raise ValueError(f"{name} gives no image_grid_thw (not a Qwen2-VL family model)")
    tensors = {"pixel_values": features["pixel_values"], "image_grid_thw": features["image_grid_thw"]}
    return ImageInputs(tensors, tuple(images))


def qwen2_vl_image_processor(**options: Any) -> Any:
    """transformers' Qwen2-VL image processor, its PIL backend where there is one (no torchvision)."""
    import importlib

    try:
        module = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
        return module.Qwen2VLImageProcessorPil(**options)
    except ImportError:  # transformers < 5: the plain class is the PIL one
        from transformers import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor(**options)


class VisionProcessor:
    """A VLM's tokenizer and image processor, and the id of its image pad token."""

    def __init__(self, tokenizer: Any, image_processor: Any, image_token_id: int) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_token_id = int(image_token_id)
        merge = getattr(image_processor, "merge_size", None)
        if merge is None:
            raise ValueError(
                f"{type(image_processor).__name__}: dps prepares images for the Qwen2-VL family "
                "(an image processor with merge_size and image_grid_thw)"
            )
        self.merge_size = int(merge)

    def encode(
        self, content: list[dict[str, Any]], images: list[Any], response_prefix: str = ""
    ) -> tuple[list[int], ImageInputs | None]:
        """(token ids, `ImageInputs`) of one user turn whose image parts are `images`, in order;
        the ids end with the assistant's turn opened and `response_prefix` after it."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ValueError("the VLM's tokenizer has no chat template: it is what places the image tokens")
        n_parts = sum(1 for part in content if part.get("type") == "image")
        if n_parts != len(images):
            raise ValueError(f"the prompt has {n_parts} image parts for {len(images)} images")
        turn = [{"role": "user", "content": content}]
        text = tok.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        ids = list(tok(text + response_prefix, add_special_tokens=False)["input_ids"])
        if not images:
            return ids, None
        inputs = image_inputs(self.image_processor, images)
        sizes = [int(g.prod()) // self.merge_size**2 for g in inputs.tensors["image_grid_thw"]]
        return self._widen(ids, sizes), inputs

    def _widen(self, ids: list[int], sizes: list[int]) -> list[int]:
        """Each image's one pad token repeated once per merged patch of that image."""
        at = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if len(at) != len(sizes):
            raise ValueError(f"the chat template wrote {len(at)} image tokens for {len(sizes)} images")
        out: list[int] = []
        last = 0
        for pos, size in zip(at, sizes, strict=True):
            out += ids[last:pos] + [self.image_token_id] * size
            last = pos + 1
        return out + ids[last:]

    def save(self, path: str | Path) -> None:
        """The tokenizer (with its chat template) and the image processor into a model folder."""
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)


_TAKES_TOKEN_TYPES: dict[type, bool] = {}


def model_image_kwargs(model: Any, input_ids: Any, images: list[ImageInputs | None]) -> dict[str, Any]:
    """The forward pass's image arguments for a batch whose rows' images are `images` (None: a
    text-only row): the rows' tensors concatenated, on the ids' device, and ``mm_token_type_ids``
    (1 at image tokens) when the model's forward takes it. Empty when no row has an image."""
    import torch

    present = [x for x in images if x is not None]
    if not present:
        return {}
    kw = {k: torch.cat([x.tensors[k] for x in present]).to(input_ids.device) for k in present[0].tensors}
    cls = type(model)
    if cls not in _TAKES_TOKEN_TYPES:
        _TAKES_TOKEN_TYPES[cls] = "mm_token_type_ids" in inspect.signature(model.forward).parameters
    if _TAKES_TOKEN_TYPES[cls]:
        kw["mm_token_type_ids"] = (input_ids == model.config.image_token_id).long()
    return kw


PLACEHOLDER_ATTRIBUTES = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def placeholder_token_ids(model: Any) -> list[int]:
    """The tokens that stand for images in a VLM's prompt (none for a text model).

    A response never holds them: the engines never sample them and the learner's log-probs are
    over the same vocabulary without them. A response holding an image pad would be read as a
    placeholder by the model's next forward pass (an untrained tiny VLM does sample them)."""
    ids = (getattr(model.config, name, None) for name in PLACEHOLDER_ATTRIBUTES)
    return sorted({int(i) for i in ids if i is not None})


def is_vlm_folder(path: str | Path) -> bool:
    """Does the model folder hold a vision-language model (a config with a vision part)?"""
    config = Path(path) / "config.json"
    return config.exists() and "vision_config" in json.loads(config.read_text())


def load_vlm(path: str | Path, tokenizer: Any) -> tuple[Any, VisionProcessor]:
    """(model, `VisionProcessor`) of a local VLM folder, weights in fp32 (the trainer's master
    copy): transformers' image-text-to-text auto class, the folder's tokenizer (given, as
    loaded) and image processor. A chat template kept beside the tokenizer
    (``chat_template.jinja`` / ``chat_template.json``, as processors save it) is read too."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    p = Path(path)
    model = AutoModelForImageTextToText.from_pretrained(p, dtype=torch.float32)
    images = AutoImageProcessor.from_pretrained(p)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = _folder_chat_template(p)
    image_token = getattr(model.config, "image_token_id", None)
    if image_token is None:
        raise ValueError(f"model.path {p}: the config has no image_token_id (not a Qwen2-VL family model)")
    return model, VisionProcessor(tokenizer, images, image_token)


def _folder_chat_template(p: Path) -> str | None:
    if (p / "chat_template.jinja").exists():
        return (p / "chat_template.jinja").read_text()
    if (p / "chat_template.json").exists():
        return json.loads((p / "chat_template.json").read_text()).get("chat_template")
    return None

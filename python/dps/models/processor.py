"""`Qwen2VLProcessor`: transformers' Qwen2-VL processor for images and text only.

TRL's `GRPOTrainer` and verl's multimodal data path take a VLM's inputs from a *processor*
(transformers' `ProcessorMixin`: the tokenizer, the image processor and the chat template in one
object). transformers' own Qwen2-VL processor also holds a video processor, which needs
torchvision; torch's CPU builds have none on PyPI (the PyPI torchvision links CUDA's torch), so on
such a machine transformers cannot build that processor at all. This subclass drops the video
processor and is otherwise transformers' class: the same chat template, image-token expansion and
``mm_token_type_ids``. Real Qwen2-VL / Qwen2.5-VL folders keep their own processor.

It carries transformers' class name on purpose: verl chooses a processor's M-RoPE position
function by the class name (``hf_processor`` in verl/utils/tokenizer/tokenizer.py, verl 0.9.1).
A model folder saved with `save_processor` loads it through ``AutoProcessor.from_pretrained(...,
trust_remote_code=True)`` (transformers' custom code mechanism): the folder's ``processor.py``
imports this class, so it loads where dps is installed, and the processor pickles by reference
(verl hands it to Ray actors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import ProcessorMixin
from transformers import Qwen2VLProcessor as _TransformersQwen2VLProcessor


class Qwen2VLProcessor(_TransformersQwen2VLProcessor):
    """transformers' `Qwen2VLProcessor` without its video processor (images and text only)."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        # What the parent's __init__ sets before the mixin's, with no video processor to pass on.
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


#: The processor code a model folder holds: this module's class, imported.
FOLDER_CODE = (
    '"""The processor of a model folder written by dps."""\n\nfrom dps.models.processor import Qwen2VLProcessor\n'
)


def save_processor(processor: Qwen2VLProcessor, path: str | Path) -> None:
    """The processor into a model folder with its code (``auto_map``, ``processor.py``), so that
    ``AutoProcessor.from_pretrained(path, trust_remote_code=True)`` rebuilds it."""
    processor.register_for_auto_class("AutoProcessor")
    processor.save_pretrained(path)
    (Path(path) / "processor.py").write_text(FOLDER_CODE)  # in place of the copy of this file

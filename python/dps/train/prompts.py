"""A split's prompts as the model takes them: token ids for every prompt, and the image inputs
of prompts with images (`dps.models.vision.ImageInputs`).

Text prompts go through `encode_prompt` (the chat template when ``model.chat_template``, the
answer's prefilled start); prompts with images always go through the VLM's chat template, which
is what places the image tokens. The ids are made for every prompt up front (their lengths size
the engine); the image inputs are made again when asked for and kept for the `keep` most recent
prompts, so a dataset of large images does not hold every image's pixels in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from dps.models.vision import ImageInputs, VisionProcessor
from dps.tasks import Example
from dps.tasks.images import decode_image
from dps.train.model import encode_prompt


class PromptSet:
    """Token ids (`ids`) and, on demand, image inputs (`images`) of a list of examples."""

    def __init__(
        self,
        examples: list[Example],
        tokenizer: Any,
        vision: VisionProcessor | None,
        chat_template: bool,
        response_prefix: str,
        keep: int = 2048,
    ) -> None:
        self.examples = examples
        self.tokenizer, self.vision = tokenizer, vision
        self.chat_template, self.response_prefix = chat_template, response_prefix
        self.has_images = any(ex.images for ex in examples)
        if self.has_images and vision is None:
            raise ValueError("the task's prompts carry images but the model is text-only")
        self._keep = keep
        self._cache: OrderedDict[int, ImageInputs | None] = OrderedDict()
        self.ids = [self._encode(i) for i in range(len(examples))]

    def _encode(self, i: int) -> list[int]:
        ex = self.examples[i]
        if not ex.images:
            return encode_prompt(self.tokenizer, ex.prompt, self.chat_template, self.response_prefix)
        ids, images = self._encode_images(ex)
        self._remember(i, images)
        return ids

    def _encode_images(self, ex: Example) -> tuple[list[int], ImageInputs | None]:
        assert self.vision is not None
        pictures = [decode_image(data) for data in ex.images]
        return self.vision.encode(ex.chat_content(), pictures, self.response_prefix)

    def _remember(self, i: int, images: ImageInputs | None) -> None:
        self._cache[i] = images
        self._cache.move_to_end(i)
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)

    def images(self, i: int) -> ImageInputs | None:
        """Prompt i's image inputs (None for a prompt without images)."""
        if not self.examples[i].images:
            return None
        if i not in self._cache:
            self._remember(i, self._encode_images(self.examples[i])[1])
        self._cache.move_to_end(i)
        return self._cache[i]

    def images_of(self, indices: Any) -> list[ImageInputs | None] | None:
        """The image inputs of prompts `indices`, in order; None when the set has no images at all
        (a text-only task: the engines and the learner take their text path)."""
        if not self.has_images:
            return None
        return [self.images(int(i)) for i in indices]

    def __len__(self) -> int:
        return len(self.ids)

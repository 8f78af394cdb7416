"""dps.models.processor: transformers' Qwen2-VL processor for images and text, with no torchvision."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dps.models.processor import Qwen2VLProcessor, save_processor  # noqa: E402
from dps.models.tiny import tiny_vlm  # noqa: E402


def _square():
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (56, 56), "white")
    ImageDraw.Draw(im).regular_polygon((28, 28, 18), 4, fill="black")
    return im


def test_the_processor_tokenises_as_dps_does_and_reloads_from_its_folder(tmp_path):
    from transformers import AutoProcessor, ProcessorMixin

    _, vision = tiny_vlm(seed=0)
    tok = vision.tokenizer
    processor = Qwen2VLProcessor(image_processor=vision.image_processor, tokenizer=tok, chat_template=tok.chat_template)
    assert isinstance(processor, ProcessorMixin)  # what TRL's processing_class must be
    image, question = _square(), "How many sides?"
    turn = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]
    ours, inputs = vision.encode([{"type": "image"}, {"type": "text", "text": question}], [image])
    assert inputs is not None

    save_processor(processor, tmp_path)
    for proc in (processor, AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(proc).__name__ == "Qwen2VLProcessor"  # verl picks M-RoPE by this name
        out = proc.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert out["input_ids"][0] == ours  # one <|image_pad|> per merged patch, as dps.models.vision writes
        assert torch.equal(torch.as_tensor(out["pixel_values"]), inputs.tensors["pixel_values"])
        assert torch.as_tensor(out["image_grid_thw"]).tolist() == inputs.tensors["image_grid_thw"].tolist()

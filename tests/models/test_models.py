"""The tiny models of dps.models (text and VLM) and image prompts as model inputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dps.models.tiny import TinyVision, char_tokenizer, tiny_model, tiny_vlm  # noqa: E402
from dps.models.vision import ImageInputs, model_image_kwargs  # noqa: E402


def _polygon(n: int, size: int = 56):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(im).regular_polygon((size / 2, size / 2, size / 3), n, fill="black")
    return im


CONTENT = [{"type": "image"}, {"type": "text", "text": "How many sides?"}]


def test_the_character_ids_do_not_depend_on_extra_special_tokens():
    plain, vision = char_tokenizer(), char_tokenizer(("<|image_pad|>",))
    text = "12+7= abc\n"
    assert plain(text)["input_ids"] == vision(text)["input_ids"]
    parts = ("a", "<|image_pad|>", "b")
    assert vision("".join(parts))["input_ids"] == [vision.convert_tokens_to_ids(x) for x in parts]
    assert vision.decode(vision("a b")["input_ids"]) == "a b"


def test_tiny_text_model_is_seeded_and_shared_with_the_integrations():
    from dps.integrations.tiny import digit_tokenizer, tiny_policy_model

    tok = char_tokenizer()
    a, b = tiny_model(tok, 32, 1, 2, 1, 64, seed=4), tiny_model(tok, 32, 1, 2, 1, 64, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    digits = digit_tokenizer()
    small = tiny_policy_model(digits, seed=1)
    same = tiny_model(digits, 32, 1, 2, 1, 64, max_positions=64, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(small.state_dict().values(), same.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="multiple of heads"):
        tiny_model(tok, hidden_size=30, heads=4)


def test_tiny_vlm_encodes_images_as_merged_patches_and_runs():
    model, vp = tiny_vlm(seed=0)
    ids, images = vp.encode(CONTENT, [_polygon(5)])
    # 56 x 56 pixels, patches of 7: an 8 x 8 grid, merged 2 x 2 into 16 image tokens
    assert ids.count(vp.image_token_id) == 16
    assert images.tensors["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert images.tensors["pixel_values"].shape[0] == 64 and len(images.images) == 1
    x = torch.tensor([ids])
    logits = model(input_ids=x, **model_image_kwargs(model, x, [images])).logits
    assert logits.shape == (1, len(ids), len(vp.tokenizer))
    # the picture changes the output: the model sees it
    _, square = vp.encode(CONTENT, [_polygon(4)])
    other = model(input_ids=x, **model_image_kwargs(model, x, [square])).logits
    assert not torch.allclose(logits[0, -1], other[0, -1])
    again, _ = tiny_vlm(seed=0)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="1 image parts for 2 images"):
        vp.encode(CONTENT, [_polygon(3), _polygon(4)])
    text_ids, none = vp.encode([{"type": "text", "text": "hi"}], [])
    assert none is None and vp.image_token_id not in text_ids
    with pytest.raises(ValueError, match="below two patches"):
        tiny_vlm(vision=TinyVision(image_size=8))


def test_a_batch_concatenates_its_rows_images_in_order():
    model, vp = tiny_vlm(seed=0)
    rows = [vp.encode(CONTENT, [_polygon(n)]) for n in (3, 4)]
    width = max(len(ids) for ids, _ in rows) + 2
    batch = torch.zeros((3, width), dtype=torch.long)
    for i, (ids, _) in enumerate(rows):
        batch[i, : len(ids)] = torch.tensor(ids)
    batch[2, :3] = torch.tensor(vp.tokenizer("abc")["input_ids"])  # a text-only row
    kw = model_image_kwargs(model, batch, [rows[0][1], rows[1][1], None])
    assert torch.equal(kw["pixel_values"], torch.cat([r[1].tensors["pixel_values"] for r in rows]))
    assert kw["image_grid_thw"].shape == (2, 3)
    if "mm_token_type_ids" in kw:
        assert torch.equal(kw["mm_token_type_ids"], (batch == vp.image_token_id).long())
    assert model_image_kwargs(model, batch, [None, None, None]) == {}
    assert isinstance(rows[0][1], ImageInputs)


def test_a_saved_tiny_vlm_loads_through_the_auto_classes(tmp_path):
    from dps.models.vision import is_vlm_folder
    from dps.train.model import load_model, save_model_dir

    model, vp = tiny_vlm(seed=2)
    save_model_dir(model, vp.tokenizer, tmp_path / "m", vp)
    assert is_vlm_folder(tmp_path / "m")
    loaded, tok, lvp = load_model(tmp_path / "m")
    assert lvp is not None and tok is lvp.tokenizer and tok.padding_side == "left"
    assert type(loaded).__name__ == type(model).__name__
    ids, images = vp.encode(CONTENT, [_polygon(6)])
    lids, limages = lvp.encode(CONTENT, [_polygon(6)])
    assert ids == lids and torch.equal(images.tensors["pixel_values"], limages.tensors["pixel_values"])
    x = torch.tensor([ids])
    with torch.no_grad():
        want = model(input_ids=x, **model_image_kwargs(model, x, [images])).logits
        got = loaded(input_ids=x, **model_image_kwargs(loaded, x, [limages])).logits
    assert torch.equal(want, got)

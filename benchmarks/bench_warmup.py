"""Why the tiny preset's supervised warm-up takes 17 s one time and 96 s (or more) the next.

Times the same warm-up steps (the tiny-cpu model, batch 64 of the arithmetic task's reference
answers) with 1 and with 2 torch threads, alternating, and records the machine's load average
beside each timing:

    python benchmarks/bench_warmup.py --steps 30 --repeats 2

Prints one Markdown row per timing.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()

    import torch

    from dps.models.tiny import char_tokenizer, tiny_model
    from dps.tasks import make_task
    from dps.train.grpo import supervised_warmup
    from dps.train.presets import preset

    p = preset("tiny-cpu")
    task = make_task(p["task"]["name"], **p["task"]["options"])
    tok = char_tokenizer()
    eos = tok.eos_token_id
    pairs = [
        (
            tok(ex.prompt, add_special_tokens=False)["input_ids"],
            tok(task.reference_response(ex), add_special_tokens=False)["input_ids"] + [eos],
        )
        for ex in task.warmup()
    ]
    print(f"cores: {os.cpu_count()}; torch default threads: {torch.get_num_threads()}")
    print("| threads | steps | seconds | s/step | load average (1 min) before -> after |")
    print("|---|---|---|---|---|")
    for _ in range(args.repeats):
        for n in (int(x) for x in args.threads.split(",")):
            torch.set_num_threads(n)
            t = p["model"]["tiny"]
            model = tiny_model(tok, t["hidden_size"], t["layers"], t["heads"], t["kv_heads"], t["intermediate_size"])
            before = os.getloadavg()[0]
            t0 = time.perf_counter()
            supervised_warmup(model, pairs, args.steps, 64, 1e-3, 0, tok.pad_token_id, torch.device("cpu"))
            sec = time.perf_counter() - t0
            print(
                f"| {n} | {args.steps} | {sec:.1f} | {sec / args.steps:.3f} |"
                f" {before:.1f} -> {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

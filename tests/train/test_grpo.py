"""The GRPO learner: advantages, the clipped loss, KL, temperature, mini-batches, bad gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dps.train.grpo import GRPOLearner, Sequence, group_advantages  # noqa: E402


# ---------------------------------------------------------------- the learner
def test_group_advantages():
    a = group_advantages([np.array([1, 1, 1, 1.0]), np.array([0, 1, 0, 1.0]), np.array([1, 0, 0, 0.0])])
    assert np.all(a[0] == 0)
    # unbiased std (verl, TRL): [0,1,0,1] has std sqrt(4 * 0.25 / 3) = 0.57735
    assert np.allclose(a[1], [-0.866025, 0.866025, -0.866025, 0.866025], atol=1e-5)
    # [1,0,0,0]: mean 0.25, std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert np.allclose(a[2], [1.5, -0.5, -0.5, -0.5], atol=1e-5)
    pop = group_advantages([np.array([0, 1, 0, 1.0])], unbiased=False)
    assert np.allclose(pop[0], [-1, 1, -1, 1], atol=1e-5)
    b = group_advantages([np.array([0, 1, 0, 1.0])], std_norm=False)
    assert np.allclose(b[0], [-0.5, 0.5, -0.5, 0.5])


def _tiny_lm(seed=0):
    from dps.models.tiny import char_tokenizer, tiny_model

    tok = char_tokenizer()
    return tiny_model(tok, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, seed=seed), tok


def _grads(agg: str, seqs, **cfg_kw):
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    cfg = GRPOConfig(loss_agg=agg, lr=1e-3, max_grad_norm=1e9, **cfg_kw)
    learner = GRPOLearner(model, cfg, 0, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    # capture the gradient: one optimizer step of SGD-like size is hard to invert, so hook clip
    grads = {}
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        params = list(params)
        grads["g"] = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
        return orig(params, max_norm)

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        m = learner.update(seqs)
    finally:
        torch.nn.utils.clip_grad_norm_ = orig
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    return grads.get("g"), m, changed


def test_loss_aggregation_dilution_and_zero_advantage_skip():
    rng = np.random.default_rng(0)
    informative = [
        Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 4)), float(a)) for a in (1.0, -1.0, 0.5, -0.5)
    ]
    zero = [Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 4)), 0.0) for _ in range(4)]
    g_tm, m1, changed = _grads("token-mean", informative + zero)
    g_inf, _, _ = _grads("token-mean-informative", informative + zero)
    g_only, _, _ = _grads("token-mean", informative)
    assert changed and m1["update_tokens"] == 32 and m1["forward_tokens"] == 16  # zero-adv rows skipped
    # token-mean keeps the zero-advantage tokens in the denominator: half the gradient here
    assert torch.allclose(g_tm * 2, g_inf, atol=1e-6)
    assert torch.allclose(g_inf, g_only, atol=1e-6)
    # with KL on, zero-advantage rows are forwarded too, and the result is finite
    g_kl, m_kl, _ = _grads("token-mean", informative + zero, kl_coef=0.1, entropy_coef=0.01)
    assert m_kl["forward_tokens"] == 32 and torch.isfinite(g_kl).all()
    # all-zero batch: a zero-gradient optimizer step, as verl takes (nothing moves without decay)
    g0, m0, changed0 = _grads("token-mean", zero)
    assert g0 is not None and not g0.any() and not changed0 and m0["optimizer_steps"] == 1
    _, m0d, changed0d = _grads("token-mean", zero, weight_decay=0.1)  # the decay acts
    assert changed0d and m0d["optimizer_steps"] == 1
    g0s, m0s, changed0s = _grads("token-mean", zero, weight_decay=0.1, step_uninformative=False)
    assert g0s is None and not changed0s and m0s["optimizer_steps"] == 0


def test_clipped_policy_loss_by_hand():
    """verl's vanilla loss: max(-A r, -A clip(r, 0.8, 1.28)), capped at -A c for A < 0; log r in [-20, 20]."""
    from dps.train.grpo import clipped_policy_loss

    #            A     log r          hand value
    cases = [
        (1.0, np.log(0.5), -0.5),  # A > 0, r below 1 - 0.2: no clip (the max keeps -A r)
        (1.0, np.log(2.0), -1.28),  # A > 0, r above 1 + 0.28: clipped
        (1.0, np.log(1.1), -1.1),  # inside the bounds
        (-1.0, np.log(0.5), 0.8),  # A < 0, r low: clipped at 0.8
        (-1.0, np.log(5.0), 5.0),  # A < 0, r high: unclipped, below the dual cap 10
        (-1.0, np.log(50.0), 10.0),  # dual clip: capped at -A * c
        (-2.0, 30.0, 20.0),  # log r clamped to 20, then the dual cap 2 * 10
        (2.0, 30.0, -2.56),
    ]  # A > 0, huge r: clip-high
    adv = torch.tensor([[a] for a, _, _ in cases], dtype=torch.float64)
    logp = torch.tensor([[lr] for _, lr, _ in cases], dtype=torch.float64)
    loss, clipped, dual = clipped_policy_loss(logp, torch.zeros_like(logp), adv, 0.2, 0.28, 10.0)
    assert np.allclose(loss.squeeze(1).numpy(), [h for _, _, h in cases], atol=1e-9)
    assert clipped.squeeze(1).tolist() == [False, True, False, True, False, False, False, True]
    assert dual.squeeze(1).tolist() == [False, False, False, False, False, True, True, False]


def test_k3_kl_by_hand():
    from dps.train.grpo import k3_kl

    ref = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    logp = torch.tensor([0.0, -1.0, 1.0, -5.0], dtype=torch.float64)  # d = ref - logp = 0, 1, -1, 5
    want = [0.0, np.e - 2, np.exp(-1), 10.0]  # exp(d) - d - 1; e^5 - 6 = 142.4 is clamped to 10
    assert np.allclose(k3_kl(logp, ref).numpy(), want)
    far = torch.tensor([40.0, -1000.0], dtype=torch.float64, requires_grad=True)
    kl = k3_kl(far, torch.zeros(2, dtype=torch.float64))
    kl.sum().backward()
    assert kl.tolist() == [10.0, 10.0] and torch.isfinite(far.grad).all()  # d clamped to +-20 before exp


def test_learner_logprobs_use_the_sampling_temperature():
    from dps.train.grpo import token_logprobs

    model, _ = _tiny_lm()
    seq = Sequence([5, 6, 7], [8, 9], 1.0)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0].double()
        lp, mask, _ = token_logprobs(model, [seq], 0, torch.device("cpu"), False, temperature=0.6)
    by_hand = [torch.log_softmax(logits[t] / 0.6, -1)[tok].item() for t, tok in ((2, 8), (3, 9))]
    assert mask[0].tolist() == [0, 0, 1, 1]
    assert np.allclose(lp[0, 2:].numpy(), by_hand, atol=1e-5)
    assert not np.allclose(
        by_hand, [torch.log_softmax(logits[2], -1)[8].item(), torch.log_softmax(logits[3], -1)[9].item()]
    )


def test_nonfinite_gradient_skips_the_step():
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    learner = GRPOLearner(model, GRPOConfig(lr=1e-2), 0, torch.device("cpu"))
    seqs = [Sequence([5, 6, 7], [8, 9], a) for a in (1.0, -1.0)]
    emb = model.get_input_embeddings().weight
    hook = emb.register_hook(lambda g: g.index_fill(0, torch.tensor([3]), float("inf")))
    before = [p.detach().clone() for p in model.parameters()]
    m = learner.update(seqs)
    hook.remove()
    assert m["nonfinite_grad_steps"] == 1 and m["optimizer_steps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    m2 = learner.update(seqs)  # the next step is a normal one and keeps the weights finite
    assert m2["nonfinite_grad_steps"] == 0 and m2["optimizer_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_mini_batches_hold_whole_groups():
    from dps.train.grpo import _group_mini_batches

    seqs = [Sequence([1], [2], 0.0, group=g) for g in (0, 0, 1, 1, 2, 2, 3, 3)]
    first = _group_mini_batches(seqs, 2, 1, seed=0)
    assert [mb.tolist() for mb in first] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # in order, as verl
    for mb in _group_mini_batches(seqs, 4, 3, seed=1):
        assert len({seqs[i].group for i in mb}) == 1 and len(mb) == 2


def test_clipping_with_several_minibatches():
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    rng = np.random.default_rng(1)
    seqs = [
        Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 6)), float(a))
        for a in rng.choice([-1.0, 1.0], 16)
    ]
    learner = GRPOLearner(
        model, GRPOConfig(lr=5e-2, mini_batches=4, epochs=2, micro_batch_size=3), 0, torch.device("cpu")
    )
    m = learner.update(seqs, seed=3)
    assert m["optimizer_steps"] == 8
    assert 0.0 < m["clip_frac"] <= 1.0  # a large lr moves the ratio out of [0.8, 1.28]


# ---------------------------------------------------------------- end to end


# ---------------------------------------------------------------- sampling
def _peaked_tiny_model(scale: float = 4.0):
    """A tiny model whose next-token distribution is neither flat nor one-hot (T matters)."""
    from dps.models.tiny import char_tokenizer, tiny_model

    tok = char_tokenizer()
    model = tiny_model(tok, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, seed=3)
    with torch.no_grad():
        model.model.norm.weight.mul_(scale)
    return model, tok


def test_hf_engine_samples_softmax_of_logits_over_temperature():
    """Sampled first tokens follow softmax(logits / T) over the whole vocabulary: no top-k 50
    (which would cut the 29% of mass outside the 50 likeliest tokens here), T applied."""
    from dps.train.engines import HFEngine
    from sampling_stats import chi2_pvalue

    model, tok = _peaked_tiny_model()
    model.generation_config.top_k = 5  # a model config's defaults must not leak into sampling
    model.generation_config.repetition_penalty = 1.3
    prompt = tok("7+8=", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].double()
    engine = HFEngine(model, tok, batch_size=1)
    for temp in (1.0, 0.6):
        out = engine.generate([prompt], 4000, max_new_tokens=1, temperature=temp, seed=1)
        counts = np.bincount([r[0] if r else tok.pad_token_id for r in out[0]], minlength=len(logits))
        assert chi2_pvalue(counts, torch.softmax(logits / temp, -1).numpy()) > 1e-3
        wrong_t = 1.0 if temp != 1.0 else 0.6
        assert chi2_pvalue(counts, torch.softmax(logits / wrong_t, -1).numpy()) < 1e-6  # the check has power
        if temp == 1.0:
            assert (counts > 0).sum() > 50
    assert model.generation_config.top_k == 5  # put back

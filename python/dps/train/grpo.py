"""The GRPO learner, following verl's (the paper's trainer) semantics:

* advantages: A_i = (r_i - mean(r)) / (std(r) + 1e-6) per group, the std with Bessel's
  correction (``torch.std``, as verl and TRL; ``std_unbiased = false`` for the population std);
* the learner's log-probs are taken from logits / T, T the sampling temperature (verl divides
  the actor's and the reference's logits by the rollout temperature);
* policy loss: PPO's clipped ratio with separate ``clip_low`` / ``clip_high`` (clip-higher) and,
  for negative advantages, the dual clip at ``clip_ratio_c`` (the loss never exceeds
  -A * clip_ratio_c); the log-ratio is clamped to [-20, 20] before exp;
* KL to a frozen reference with the k3 estimator, its log-ratio clamped to [-20, 20] and the
  value to [-10, 10]; an entropy bonus aggregated like the policy loss;
* the trained batch is cut into ``mini_batches`` mini-batches of whole groups, one optimizer
  step each (so the clip bounds act from the second one on), ``epochs`` passes; a mini-batch
  whose groups are all uninformative still takes its (zero-gradient) step, as verl does
  (``step_uninformative``: Adam's momentum and the weight decay still act);
* a step whose gradient norm is not finite is skipped and its gradients zeroed, as verl does,
  and counted (``nonfinite_grad_steps``);
* micro-batches with gradient accumulation, grad-norm clipping, AdamW on fp32 master weights
  (bf16 autocast on CUDA only).

Loss aggregation (``loss_agg``), over the response tokens of one mini-batch's sequences:

* ``"token-mean"`` (default; verl's default and the paper's setting): the sum of per-token
  losses divided by the number of response tokens of ALL sequences of the mini-batch,
  zero-advantage groups included. An uninformative group contributes no gradient but still
  dilutes the step, so a higher effective ratio means a larger update.
* ``"token-mean-informative"``: divided by the tokens of sequences with a non-zero advantage
  only; the step size no longer depends on how many groups were uninformative.
* ``"seq-mean-token-mean"``: mean over sequences of each sequence's token mean.

Sequences whose advantage is exactly zero contribute nothing to the policy-gradient term; when
neither KL nor entropy is on, their forward/backward pass is skipped (the gradient is the same,
their tokens still count in the token-mean denominator).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dps.models.vision import ImageInputs, model_image_kwargs, placeholder_token_ids
from dps.train.config import GRPOConfig

LOG_RATIO_CLAMP = 20.0  # verl clamps log(pi/pi_old) and log(pi_ref/pi) to +-20 before exp
K3_CLAMP = 10.0  # and the k3 KL value to +-10


def group_advantages(
    rewards: list[np.ndarray], std_norm: bool = True, eps: float = 1e-6, unbiased: bool = True
) -> list[np.ndarray]:
    """A_i = r_i - mean(r), divided by std(r) + eps when `std_norm`.

    The std is the unbiased one (ddof 1, as verl's ``torch.std`` and TRL); `unbiased=False`
    gives the population std. A group whose rewards are all equal gets exactly zero advantages.
    """
    out = []
    for r in rewards:
        r = np.asarray(r, dtype=np.float64)
        centred = r - r.mean()
        if np.all(np.abs(centred) < 1e-12):
            out.append(np.zeros_like(r))
            continue
        out.append(centred / (r.std(ddof=1 if unbiased else 0) + eps) if std_norm else centred)
    return out


def clipped_policy_loss(logp, old_logp, adv, clip_low: float, clip_high: float, clip_ratio_c: float):
    """Per-token PPO loss with clip-higher and dual clip (verl's "vanilla" policy loss).

    Returns (loss, clipped, dual_clipped): `clipped` marks tokens where the clip bound won,
    `dual_clipped` tokens with A < 0 whose loss was capped at -A * clip_ratio_c.
    """
    import torch

    ratio = torch.exp(torch.clamp(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    plain = -adv * ratio
    bounded = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    ppo = torch.maximum(plain, bounded)
    cap = -adv * clip_ratio_c
    loss = torch.where(adv < 0, torch.minimum(ppo, cap), ppo)
    return loss, bounded > plain, (adv < 0) & (ppo > cap)


def k3_kl(logp, ref_logp):
    """KL(pi || pi_ref) per token, k3 estimator exp(d) - d - 1 with d = log pi_ref - log pi,
    d clamped to [-20, 20] and the value to [-10, 10] (verl's ``low_var_kl``)."""
    import torch

    d = torch.clamp(ref_logp - logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(d) - d - 1.0, -K3_CLAMP, K3_CLAMP)


@dataclass
class Sequence:
    prompt: list[int]
    response: list[int]
    advantage: float
    group: int | None = None  # sequences of one group stay in one mini-batch; None: its own group
    images: ImageInputs | None = None  # the prompt's images, as the model takes them (a VLM's prompt)


def _pad_batch(seqs: list[Sequence], pad_id: int, device: Any):
    import torch

    width = max(len(s.prompt) + len(s.response) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    resp = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        full = s.prompt + s.response
        ids[i, : len(full)] = torch.tensor(full, dtype=torch.long)
        attn[i, : len(full)] = 1
        resp[i, len(s.prompt) : len(full)] = True
    return ids.to(device), attn.to(device), resp.to(device)


def token_logprobs(
    model: Any,
    seqs: list[Sequence],
    pad_id: int,
    device: Any,
    autocast: bool,
    want_entropy: bool = False,
    temperature: float = 1.0,
):
    """Per-token log-probs of the response tokens under softmax(logits / temperature), shape
    (B, T-1), with the response mask (and the per-token entropy when asked).

    Position t holds log p(token t+1 | tokens <= t); the mask marks response tokens. Sequences
    whose prompts carry images pass them to the model in the same forward pass (a VLM's
    ``pixel_values`` and ``image_grid_thw``, concatenated in the batch's order).
    """
    import torch

    ids, attn, resp = _pad_batch(seqs, pad_id, device)
    images = model_image_kwargs(model, ids, [s.images for s in seqs])
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, attention_mask=attn, **images).logits
    logits = logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    banned = placeholder_token_ids(model)
    if banned:  # the engines never sample a VLM's image placeholders: the same distribution here
        logits = logits.index_fill(-1, torch.tensor(banned, device=logits.device), float("-inf"))
    logp_all = torch.log_softmax(logits, dim=-1)
    target = ids[:, 1:]
    mask = resp[:, 1:].float()
    # 0 off the response: a prompt's image placeholder (banned above) would give -inf there
    logp = torch.where(resp[:, 1:], logp_all.gather(-1, target.unsqueeze(-1)).squeeze(-1), 0.0)
    ent = None
    if want_entropy:
        ent = -(logp_all.exp() * logp_all).nan_to_num(0.0).sum(-1)  # 0 * -inf at a banned token is 0
    return logp, mask, ent


def _group_mini_batches(seqs: list[Sequence], mini_batches: int, epochs: int, seed: int) -> list[np.ndarray]:
    """Index arrays, one per optimizer step: whole groups, in order for the first epoch
    (verl does not shuffle), reshuffled for later ones."""
    members: dict[Any, list[int]] = {}
    for i, s in enumerate(seqs):
        members.setdefault(("g", s.group) if s.group is not None else ("s", i), []).append(i)
    groups = list(members.values())
    rng = np.random.default_rng(seed)
    out = []
    for epoch in range(epochs):
        order = np.arange(len(groups)) if epoch == 0 else rng.permutation(len(groups))
        for part in np.array_split(order, mini_batches):
            if len(part):
                out.append(np.array([i for g in part for i in groups[g]], dtype=np.int64))
    return out


class _Stats:
    def __init__(self) -> None:
        self.sums = dict.fromkeys(("loss", "pg", "kl", "entropy", "clip", "dual_clip", "grad_norm", "tokens"), 0.0)
        self.steps = 0
        self.nonfinite = 0

    def add(self, **kw: float) -> None:
        for k, v in kw.items():
            self.sums[k] += v


class GRPOLearner:
    """One `update` per training step on the trained batch's sequences."""

    def __init__(self, model: Any, cfg: GRPOConfig, pad_id: int, device: Any, temperature: float = 1.0) -> None:
        import torch

        self.model = model
        self.cfg = cfg
        self.pad_id = pad_id
        self.device = device
        self.temperature = float(temperature)
        self.autocast = bool(cfg.bf16 and device.type == "cuda")
        # Master weights in fp32: the model is kept in fp32 and autocast does bf16 compute.
        for p in model.parameters():
            if p.dtype != torch.float32:
                raise ValueError("GRPOLearner needs fp32 master weights; load the model in float32")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = copy.deepcopy(model).eval()
            for p in self.ref.parameters():
                p.requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        out = {"opt": self.opt.state_dict()}
        if self.ref is not None:
            out["ref"] = self.ref.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["opt"])
        if self.ref is not None and "ref" in state:
            self.ref.load_state_dict(state["ref"])

    def _logprobs(self, model: Any, batch: list[Sequence], want_entropy: bool = False):
        return token_logprobs(model, batch, self.pad_id, self.device, self.autocast, want_entropy, self.temperature)

    def update(self, seqs: list[Sequence], seed: int = 0) -> dict[str, float]:
        """The GRPO update on one trained batch: one optimizer step per mini-batch."""
        cfg = self.cfg
        if not seqs:
            return {
                "loss": 0.0,
                "grad_norm": 0.0,
                "update_tokens": 0.0,
                "optimizer_steps": 0.0,
                "nonfinite_grad_steps": 0.0,
            }
        adv = np.array([s.advantage for s in seqs], dtype=np.float64)
        active = np.ones(len(seqs), bool) if cfg.kl_coef > 0 or cfg.entropy_coef > 0 else adv != 0.0
        mini_batches = _group_mini_batches(seqs, cfg.mini_batches, cfg.epochs, seed)
        old = self._old_logprobs(seqs, active) if len(mini_batches) > 1 else None
        self.model.train()
        stats = _Stats()
        for mb in mini_batches:
            self._mini_batch_step(seqs, mb, active, old, stats)
        self.opt.zero_grad(set_to_none=True)
        return self._report(stats, seqs)

    def _old_logprobs(self, seqs: list[Sequence], active: np.ndarray) -> dict[int, Any]:
        """Behaviour log-probs before any update: the ratio's denominator across mini-batches."""
        import torch

        old = {}
        idx = np.flatnonzero(active)
        with torch.no_grad():
            for s in range(0, len(idx), self.cfg.micro_batch_size):
                part = idx[s : s + self.cfg.micro_batch_size]
                lp, _, _ = self._logprobs(self.model, [seqs[i] for i in part])
                for j, i in enumerate(part):
                    old[int(i)] = lp[j].detach()
        return old

    def _denominator(self, seqs: list[Sequence], mb: np.ndarray) -> float:
        agg = self.cfg.loss_agg
        if agg == "seq-mean-token-mean":
            return float(len(mb))
        return float(sum(len(seqs[i].response) for i in mb if agg == "token-mean" or seqs[i].advantage != 0))

    def _mini_batch_step(self, seqs, mb: np.ndarray, active: np.ndarray, old, stats: _Stats) -> None:
        cfg = self.cfg
        denom = self._denominator(seqs, mb)
        work = mb[active[mb]]
        self.opt.zero_grad(set_to_none=True)
        informative = denom > 0 and len(work) > 0
        if not informative and not cfg.step_uninformative:
            return
        if informative:
            for s in range(0, len(work), cfg.micro_batch_size):
                self._accumulate(
                    [seqs[i] for i in work[s : s + cfg.micro_batch_size]],
                    work[s : s + cfg.micro_batch_size],
                    old,
                    denom,
                    stats,
                )
        self._optimizer_step(stats)

    def _accumulate(self, batch: list[Sequence], idx: np.ndarray, old, denom: float, stats: _Stats) -> None:
        """Forward and backward of one micro-batch; its loss is already divided by `denom`."""
        import torch

        cfg = self.cfg
        logp, mask, ent = self._logprobs(self.model, batch, want_entropy=cfg.entropy_coef > 0)
        old_lp = logp.detach() if old is None else _stack_old(old, idx, logp)
        a = torch.tensor([s.advantage for s in batch], dtype=torch.float32, device=self.device).unsqueeze(1)
        pg_tok, clipped, dual = clipped_policy_loss(logp, old_lp, a, cfg.clip_low, cfg.clip_high, cfg.clip_ratio_c)
        per_tok = pg_tok
        kl_tok = torch.zeros_like(per_tok)
        if self.ref is not None:
            with torch.no_grad():
                ref_lp, _, _ = self._logprobs(self.ref, batch)
            kl_tok = k3_kl(logp, ref_lp)
            per_tok = per_tok + cfg.kl_coef * kl_tok
        if ent is not None:
            per_tok = per_tok - cfg.entropy_coef * ent
        tok_w = mask / mask.sum(1, keepdim=True).clamp_min(1.0) if cfg.loss_agg == "seq-mean-token-mean" else mask
        loss = (per_tok * tok_w).sum() / denom
        loss.backward()
        with torch.no_grad():
            stats.add(
                loss=float(loss),
                pg=float((pg_tok * tok_w).sum() / denom),
                kl=float((kl_tok * mask).sum()),
                entropy=float((ent * mask).sum()) if ent is not None else 0.0,
                clip=float((clipped.float() * mask).sum()),
                dual_clip=float((dual.float() * mask).sum()),
                tokens=float(mask.sum()),
            )

    def _optimizer_step(self, stats: _Stats) -> None:
        import torch

        for p in self.params:
            if p.grad is None:  # an uninformative mini-batch steps with a zero gradient, as in verl
                p.grad = torch.zeros_like(p)
        gn = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
        if not math.isfinite(gn):  # verl: skip the step, drop the gradient
            self.opt.zero_grad(set_to_none=True)
            stats.nonfinite += 1
            return
        self.opt.step()
        stats.steps += 1
        stats.add(grad_norm=gn)

    def _report(self, stats: _Stats, seqs: list[Sequence]) -> dict[str, float]:
        s, n_opt, tok = stats.sums, max(stats.steps, 1), max(stats.sums["tokens"], 1.0)
        n_passes = max(stats.steps + stats.nonfinite, 1)
        return {
            "loss": s["loss"] / n_passes,
            "pg_loss": s["pg"] / n_passes,
            "kl": s["kl"] / tok,
            "entropy": s["entropy"] / tok if self.cfg.entropy_coef > 0 else float("nan"),
            "clip_frac": s["clip"] / tok,
            "dual_clip_frac": s["dual_clip"] / tok,
            "grad_norm": s["grad_norm"] / n_opt if stats.steps else float("nan"),
            "optimizer_steps": float(stats.steps),
            "nonfinite_grad_steps": float(stats.nonfinite),
            "update_tokens": float(sum(len(q.response) for q in seqs)),
            "forward_tokens": s["tokens"],
        }


def _stack_old(old: dict[int, Any], idx: np.ndarray, like: Any) -> Any:
    """The stored behaviour log-probs of sequences `idx`, laid out like `like` (B, T-1)."""
    import torch

    out = torch.zeros_like(like)
    for j, i in enumerate(idx):
        o = old[int(i)]
        w = min(o.shape[0], out.shape[1])
        out[j, :w] = o[:w]
    return out


def supervised_warmup(
    model: Any,
    pairs: list[tuple[list[int], list[int]]],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    pad_id: int,
    device: Any,
    progress: bool = False,
    images: list[ImageInputs | None] | None = None,
) -> list[float]:
    """Cross-entropy on reference responses (response tokens only), to teach the answer format.

    `images`, one entry per pair, are the prompts' images for a VLM (None: text prompts)."""
    import torch

    if steps <= 0 or not pairs:
        return []
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    model.train()
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="warm-up", leave=False)
    for step in it:
        # cosine decay to 10% keeps the end of the warm-up stable
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))))
        pick = rng.choice(len(pairs), size=min(batch_size, len(pairs)), replace=False)
        batch = [Sequence(pairs[i][0], pairs[i][1], 0.0, images=images[i] if images else None) for i in pick]
        logp, mask, _ = token_logprobs(model, batch, pad_id, device, autocast=device.type == "cuda")
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses

"""The GRPO learner: group-normalised advantages, a clipped ratio with separate low/high clip,
optional KL to a frozen reference and entropy bonus, micro-batches with gradient accumulation,
grad-norm clipping and AdamW on fp32 master weights (bf16 autocast on CUDA only).

Loss aggregation (``loss_agg``), over the response tokens of one optimizer step's sequences:

* ``"token-mean"`` (default; verl's default and the paper's setting): the sum of per-token
  losses divided by the number of response tokens of ALL sequences of the trained batch,
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

from dps.train.config import GRPOConfig


def group_advantages(rewards: list[np.ndarray], std_norm: bool = True, eps: float = 1e-6) -> list[np.ndarray]:
    """A_i = r_i - mean(r), divided by std(r) + eps when `std_norm` (population std, as GRPO).

    A group whose rewards are all equal gets exactly zero advantages.
    """
    out = []
    for r in rewards:
        r = np.asarray(r, dtype=np.float64)
        centred = r - r.mean()
        if np.all(np.abs(centred) < 1e-12):
            out.append(np.zeros_like(r))
            continue
        out.append(centred / (r.std() + eps) if std_norm else centred)
    return out


@dataclass
class Sequence:
    prompt: list[int]
    response: list[int]
    advantage: float


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


def token_logprobs(model: Any, seqs: list[Sequence], pad_id: int, device: Any, autocast: bool,
                   want_entropy: bool = False):
    """Per-token log-probs of the response tokens, shape (B, T-1), with the response mask.

    Position t holds log p(token t+1 | tokens <= t); the mask marks response tokens.
    """
    import torch

    ids, attn, resp = _pad_batch(seqs, pad_id, device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids, attention_mask=attn).logits
    logits = logits[:, :-1].float()
    logp_all = torch.log_softmax(logits, dim=-1)
    target = ids[:, 1:]
    logp = logp_all.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    mask = resp[:, 1:].float()
    ent = None
    if want_entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, mask, ent


class GRPOLearner:
    """One `update` per training step on the trained batch's sequences."""

    def __init__(self, model: Any, cfg: GRPOConfig, pad_id: int, device: Any) -> None:
        import torch

        self.model = model
        self.cfg = cfg
        self.pad_id = pad_id
        self.device = device
        self.autocast = bool(cfg.bf16 and device.type == "cuda")
        # Master weights in fp32: the model is kept in fp32 and autocast does bf16 compute.
        for p in model.parameters():
            if p.dtype != torch.float32:
                raise ValueError("GRPOLearner needs fp32 master weights; load the model in float32")
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
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

    def update(self, seqs: list[Sequence], seed: int = 0) -> dict[str, float]:
        import torch

        cfg = self.cfg
        n = len(seqs)
        if n == 0:
            return {"loss": 0.0, "grad_norm": 0.0, "update_tokens": 0.0}
        lens = np.array([len(s.response) for s in seqs], dtype=np.int64)
        adv = np.array([s.advantage for s in seqs], dtype=np.float64)
        need_all = cfg.kl_coef > 0 or cfg.entropy_coef > 0
        active = np.ones(n, bool) if need_all else adv != 0.0
        multi = cfg.mini_batches * cfg.epochs > 1
        self.model.train()

        old: dict[int, torch.Tensor] = {}
        if multi:  # behaviour log-probs before any update (the ratio's denominator)
            with torch.no_grad():
                idx = np.flatnonzero(active)
                for s in range(0, len(idx), cfg.micro_batch_size):
                    part = idx[s : s + cfg.micro_batch_size]
                    lp, _, _ = token_logprobs(self.model, [seqs[i] for i in part], self.pad_id, self.device, self.autocast)
                    for j, i in enumerate(part):
                        old[int(i)] = lp[j].detach()

        rng = np.random.default_rng(seed)
        sums = {"loss": 0.0, "pg": 0.0, "kl": 0.0, "entropy": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "tokens": 0.0}
        n_opt = 0
        for epoch in range(cfg.epochs):
            order = rng.permutation(n) if epoch > 0 or cfg.mini_batches > 1 else np.arange(n)
            for mb in np.array_split(order, cfg.mini_batches):
                if len(mb) == 0:
                    continue
                if cfg.loss_agg == "token-mean":
                    denom = float(lens[mb].sum())
                elif cfg.loss_agg == "token-mean-informative":
                    denom = float(lens[mb][adv[mb] != 0].sum())
                else:
                    denom = float(len(mb))
                work = mb[active[mb]]
                self.opt.zero_grad(set_to_none=True)
                if denom <= 0 or len(work) == 0:
                    continue  # nothing to learn from this mini-batch: no optimizer step
                for s in range(0, len(work), cfg.micro_batch_size):
                    part = work[s : s + cfg.micro_batch_size]
                    batch = [seqs[i] for i in part]
                    logp, mask, ent = token_logprobs(
                        self.model, batch, self.pad_id, self.device, self.autocast,
                        want_entropy=cfg.entropy_coef > 0,
                    )
                    a = torch.tensor(adv[part], dtype=torch.float32, device=self.device).unsqueeze(1)
                    if multi:
                        old_lp = torch.zeros_like(logp)
                        for j, i in enumerate(part):
                            o = old[int(i)]
                            w = min(o.shape[0], old_lp.shape[1])
                            old_lp[j, :w] = o[:w]
                    else:
                        old_lp = logp.detach()
                    ratio = torch.exp(logp - old_lp)
                    unclipped = ratio * a
                    clipped = torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high) * a
                    per_tok = -torch.minimum(unclipped, clipped)
                    pg_tok = per_tok
                    kl_tok = torch.zeros_like(per_tok)
                    if self.ref is not None:
                        with torch.no_grad():
                            ref_lp, _, _ = token_logprobs(self.ref, batch, self.pad_id, self.device, self.autocast)
                        d = ref_lp - logp
                        kl_tok = torch.exp(d) - d - 1.0  # k3 estimator, >= 0
                        per_tok = per_tok + cfg.kl_coef * kl_tok
                    if ent is not None:
                        per_tok = per_tok - cfg.entropy_coef * ent
                    if cfg.loss_agg == "seq-mean-token-mean":
                        tok_w = mask / mask.sum(1, keepdim=True).clamp_min(1.0)
                    else:
                        tok_w = mask
                    loss = (per_tok * tok_w).sum() / denom
                    loss.backward()
                    with torch.no_grad():
                        sums["loss"] += float(loss)
                        sums["pg"] += float((pg_tok * tok_w).sum() / denom)
                        sums["kl"] += float((kl_tok * mask).sum())
                        if ent is not None:
                            sums["entropy"] += float((ent * mask).sum())
                        clipped_tok = ((ratio < 1 - cfg.clip_low) | (ratio > 1 + cfg.clip_high)).float()
                        sums["clip_frac"] += float((clipped_tok * mask).sum())
                        sums["tokens"] += float(mask.sum())
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                sums["grad_norm"] += float(gn) if math.isfinite(float(gn)) else float("nan")
                self.opt.step()
                n_opt += 1
        self.opt.zero_grad(set_to_none=True)
        tok = max(sums["tokens"], 1.0)
        return {
            "loss": sums["loss"] / max(n_opt, 1),
            "pg_loss": sums["pg"] / max(n_opt, 1),
            "kl": sums["kl"] / tok,
            "entropy": sums["entropy"] / tok if cfg.entropy_coef > 0 else float("nan"),
            "clip_frac": sums["clip_frac"] / tok,
            "grad_norm": sums["grad_norm"] / max(n_opt, 1),
            "optimizer_steps": float(n_opt),
            "update_tokens": float(lens.sum()),
            "forward_tokens": sums["tokens"],
        }


def supervised_warmup(model: Any, pairs: list[tuple[list[int], list[int]]], steps: int, batch_size: int, lr: float,
                      seed: int, pad_id: int, device: Any, progress: bool = False) -> list[float]:
    """Cross-entropy on reference responses (response tokens only), to teach the answer format."""
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
        batch = [Sequence(pairs[i][0], pairs[i][1], 0.0) for i in pick]
        logp, mask, _ = token_logprobs(model, batch, pad_id, device, autocast=device.type == "cuda")
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses

"""A plain Python reference of BOTS, written from the paper's update rule (arXiv 2510.26374,
"generalized Bayesian update") and its interpolation plug-in, one prompt at a time.

    alpha_{t+1} = (1 - lam) alpha_t + lam alpha_0 + (1 - rho) s_t + rho s~_t
    beta_{t+1}  = (1 - lam) beta_t  + lam beta_0  + (1 - rho) f_t + rho f~_t

For a prompt rolled out at step t, s_t, f_t are its successes and failures and the plug-in's
estimate is its own result (s~ = s, f~ = f); for any other prompt s_t = f_t = 0 and
s~ = m p~, f~ = m (1 - p~), with p~ = clip(r0 + c (r1 - r0), 0, 1) from its two anchor pass
rates (r0, r1) and the capability c, estimated from the step's rolled-out groups as
(mean pass rate - mean r0) / (mean r1 - mean r0 + 1e-6) and smoothed (c <- 0.9 c + 0.1 estimate,
the first estimate taken as is). The plug-in needs anchors: without them there is no implicit
evidence. Selection: the B prompts whose draw g ~ Beta(alpha, beta)
(Thompson) or posterior mean is closest to the target.
"""

from __future__ import annotations

import math
import random


class ReferenceBOTS:
    def __init__(
        self,
        num_prompts,
        forgetting=0.1,
        implicit_weight=0.1,
        prior=(1.0, 1.0),
        target=0.5,
        pseudo_count=None,
        smoothing=0.9,
        anchors=None,
    ):
        self.lam, self.rho, self.target = forgetting, implicit_weight, target
        self.a0, self.b0 = prior
        self.m, self.smoothing = pseudo_count, smoothing
        self.anchors = anchors  # None: no implicit evidence
        self.alpha = [float(self.a0)] * num_prompts
        self.beta = [float(self.b0)] * num_prompts
        self.capability = None

    def observe(self, ids, n_correct, n_rollouts):
        groups = {int(i): (int(c), int(n)) for i, c, n in zip(ids, n_correct, n_rollouts, strict=True)}
        if groups and self.anchors is not None:
            rates = [c / n for c, n in groups.values()]
            r0 = sum(self.anchors[i][0] for i in groups) / len(groups)
            r1 = sum(self.anchors[i][1] for i in groups) / len(groups)
            estimate = (sum(rates) / len(rates) - r0) / (r1 - r0 + 1e-6)
            if self.capability is None:
                self.capability = estimate
            else:
                self.capability = self.smoothing * self.capability + (1 - self.smoothing) * estimate
        if self.m is not None:
            m = self.m
        else:
            m = sum(n for _, n in groups.values()) / len(groups) if groups else 0.0
        for k in range(len(self.alpha)):
            if k in groups:
                c, n = groups[k]
                s, f = c, n - c
            elif self.capability is not None and m > 0:
                r0, r1 = self.anchors[k]
                p = min(1.0, max(0.0, r0 + self.capability * (r1 - r0)))
                s, f = self.rho * p * m, self.rho * (1 - p) * m
            else:
                s = f = 0.0
            self.alpha[k] = (1 - self.lam) * self.alpha[k] + self.lam * self.a0 + s
            self.beta[k] = (1 - self.lam) * self.beta[k] + self.lam * self.b0 + f

    def mean(self, k):
        return self.alpha[k] / (self.alpha[k] + self.beta[k])

    def select_by_mean(self, batch_size):
        """The B prompts whose posterior mean is closest to the target (ties: lower id first)."""
        order = sorted(range(len(self.alpha)), key=lambda k: (abs(self.mean(k) - self.target), k))
        return order[:batch_size]

    def select_thompson(self, batch_size, rng: random.Random):
        draws = [rng.betavariate(a, b) for a, b in zip(self.alpha, self.beta, strict=True)]
        order = sorted(range(len(draws)), key=lambda k: abs(draws[k] - self.target))
        return order[:batch_size]

    def state_probs(self, k, n):
        """P(0 of n correct), P(partial), P(n of n) under the Beta-binomial predictive."""
        a, b = self.alpha[k], self.beta[k]
        log_none = sum(math.log((b + i) / (a + b + i)) for i in range(n))
        log_all = sum(math.log((a + i) / (a + b + i)) for i in range(n))
        none, full = math.exp(log_none), math.exp(log_all)
        return [none, 1 - none - full, full]

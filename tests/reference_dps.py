"""A per-prompt Python reference of DPS, written from docs/method.md#filter alone.

Deliberately plain: one dict of Python lists per prompt, one loop over prompts per step, the
same shape as the paper's released sampler. The tests compare the Rust core against it, and the
benchmark times it.
"""

from __future__ import annotations

import math


def normalise_columns(alpha):
    sums = [sum(alpha[i][j] for i in range(3)) for j in range(3)]
    return [[alpha[i][j] / sums[j] for j in range(3)] for i in range(3)]


def predict(alpha, post):
    p = normalise_columns(alpha)
    prior = [sum(p[i][j] * post[j] for j in range(3)) for i in range(3)]
    total = sum(prior)
    return [x / total for x in prior]


def state_of(n_correct, n_rollouts):
    if n_correct == 0:
        return 0
    if n_correct == n_rollouts:
        return 2
    return 1


class ReferenceDPS:
    def __init__(self, num_prompts, decay, alpha0, pi0=(1 / 3, 1 / 3, 1 / 3)):
        self.decay = decay
        self.alpha0 = [list(map(float, row)) for row in alpha0]
        total = sum(pi0)
        self.prompts = [
            {
                "alpha": [row[:] for row in self.alpha0],
                "post": [x / total for x in pi0],
                "prior": [x / total for x in pi0],
            }
            for _ in range(num_prompts)
        ]

    def decayed(self, alpha):
        lam = self.decay
        return [[lam * alpha[i][j] + (1 - lam) * self.alpha0[i][j] for j in range(3)] for i in range(3)]

    def observe(self, observed):
        """observed: {prompt_id: (n_correct, n_rollouts)}."""
        for pid, prompt in enumerate(self.prompts):
            alpha, post = prompt["alpha"], prompt["post"]
            if pid in observed:
                y = state_of(*observed[pid])
                new_post = [1.0 if i == y else 0.0 for i in range(3)]
                p = normalise_columns(alpha)
                xi = [[new_post[i] * post[j] * p[i][j] for j in range(3)] for i in range(3)]
                z = sum(sum(row) for row in xi)
                alpha = self.decayed(alpha)
                if z > 0:  # the 'local' prior's forbidden jump adds no count
                    alpha = [[alpha[i][j] + xi[i][j] / z for j in range(3)] for i in range(3)]
            else:
                new_post = prompt["prior"]
                alpha = self.decayed(alpha)
            prompt["alpha"] = alpha
            prompt["prior"] = predict(alpha, new_post)
            prompt["post"] = new_post

    def priors(self):
        return [prompt["prior"] for prompt in self.prompts]

    def select(self, batch_size):
        scores = [(-prompt["prior"][1], pid) for pid, prompt in enumerate(self.prompts)]
        return [pid for _, pid in sorted(scores)[:batch_size]]


def entropy(p):
    return -sum(x * math.log(x) for x in p if x > 0)

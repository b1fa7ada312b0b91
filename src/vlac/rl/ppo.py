"""PPO on action tokens (paper 3.2.2), as pure functions over tensors.

The policy's log-probability of an action is the sum over its chosen number tokens
(``Actor.evaluate``); "old" log-probabilities are recomputed by the training model before the
update rather than taken from the inference worker (paper 3.2.1: inference engines drift).

    >>> adv, ret = gae(rewards, values, dones, last_value, gamma=0.99, lam=0.95)
    >>> loss, stats = ppo_loss(new_logp, old_logp, adv, new_values, ret, entropy)
"""

from __future__ import annotations

import numpy as np

from vlac.utils.imports import require

torch = require("torch", extra="model")


def gae(rewards, values, dones, last_value: float = 0.0, gamma: float = 0.99, lam: float = 0.95):
    """Generalised advantage estimation over one stream of steps.

    ``rewards``, ``values`` and ``dones`` are (T,); ``dones[t]`` means the episode ended after step
    t (a terminal: nothing is bootstrapped past it). ``last_value`` is V of the state after the last
    step, used when the stream stops mid-episode (a truncation). Returns (advantages, returns)."""
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    d = np.asarray(dones, dtype=bool)
    if not (r.shape == v.shape == d.shape) or r.ndim != 1:
        raise ValueError(f"rewards {r.shape}, values {v.shape} and dones {d.shape} must be equal 1-d shapes")
    adv = np.zeros_like(r)
    running, next_v = 0.0, float(last_value)
    for t in range(len(r) - 1, -1, -1):
        keep = 0.0 if d[t] else 1.0
        delta = r[t] + gamma * next_v * keep - v[t]
        running = delta + gamma * lam * keep * running
        adv[t] = running
        next_v = v[t]
    return adv, adv + v


def explained_variance(values, returns) -> float:
    """1 - Var(returns - values) / Var(returns); 1 is perfect, <= 0 is no better than a constant."""
    v, r = np.asarray(values, np.float64), np.asarray(returns, np.float64)
    var = r.var()
    return float("nan") if var == 0 else float(1.0 - (r - v).var() / var)


def ppo_loss(new_log_prob: "torch.Tensor", old_log_prob: "torch.Tensor", advantages: "torch.Tensor",
             new_value: "torch.Tensor", returns: "torch.Tensor", entropy: "torch.Tensor", clip: float = 0.2,
             value_coef: float = 0.5, entropy_coef: float = 0.01, old_value: "torch.Tensor | None" = None,
             value_clip: float = 0.0) -> tuple["torch.Tensor", dict]:
    """Eq. 5's clipped surrogate (negated, to minimise) + value loss - entropy bonus.

    All arguments are (B,). ``value_clip`` > 0 also clips the value update around ``old_value``.
    Statistics: policy and value loss, entropy, the fraction of clipped ratios and the approximate
    KL divergence ``E[(r - 1) - log r]`` between old and new policy."""
    log_ratio = new_log_prob - old_log_prob.detach()
    ratio = log_ratio.exp()
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    policy_loss = -surrogate.mean()
    v_err = (new_value - returns.detach()) ** 2
    if value_clip > 0 and old_value is not None:
        clipped = old_value.detach() + (new_value - old_value.detach()).clamp(-value_clip, value_clip)
        v_err = torch.maximum(v_err, (clipped - returns.detach()) ** 2)
    value_loss = 0.5 * v_err.mean()
    ent = entropy.mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * ent
    with torch.no_grad():
        stats = {"policy_loss": float(policy_loss), "value_loss": float(value_loss), "entropy": float(ent),
                 "clip_fraction": float(((ratio - 1.0).abs() > clip).float().mean()),
                 "approx_kl": float(((ratio - 1.0) - log_ratio).mean())}
    return loss, stats


def normalise(x: "torch.Tensor", eps: float = 1e-8, by_std: bool = True) -> "torch.Tensor":
    """Zero mean, unit variance (advantages within one update); zero mean only without ``by_std``."""
    centred = x - x.mean()
    return centred / (x.std(unbiased=False) + eps) if by_std and x.numel() > 1 else centred


def outcome_advantages(returns, groups, eps: float = 1e-6, by_std: bool = True) -> np.ndarray:
    """Episode-level advantages relative to the episode's group (GRPO-style; one number per episode,
    given to every step of it): ``(R - mean) / std`` over the episodes of the same group (the same
    task within one update), or ``R - mean`` without ``by_std`` (Dr. GRPO: a group whose returns
    barely differ then moves the policy barely, instead of by a full unit). A group whose episodes
    all earned the same return, or that holds one episode, gives 0: it says nothing about which
    actions did better."""
    r = np.asarray(returns, dtype=np.float64)
    g = np.asarray(groups)
    if r.shape != g.shape or r.ndim != 1:
        raise ValueError(f"returns {r.shape} and groups {g.shape} must be equal 1-d shapes")
    adv = np.zeros_like(r)
    for key in np.unique(g):
        m = g == key
        std = r[m].std()
        if m.sum() > 1 and std > eps:
            adv[m] = (r[m] - r[m].mean()) / (std if by_std else 1.0)
    return adv


def steps_of_episodes(per_episode, owner, equal_episodes: bool = True) -> np.ndarray:
    """Each step's advantage from its episode's (``owner[i]``: the episode of step ``i``). A loss
    averaged over steps weighs an episode by its length, so where episodes end at different steps
    (the simulator's flag or the critic's done ending successes early) the longer failures would
    outweigh the successes and their advantages would no longer sum to zero over the steps: a push
    down on every sampled action. ``equal_episodes`` scales each step by the mean length over its
    episode's length, so every episode weighs the same (GRPO's per-sequence mean); with episodes of
    one length (a fixed horizon) it changes nothing."""
    adv = np.asarray(per_episode, dtype=np.float64)
    owner = np.asarray(owner)
    steps = adv[owner]
    if equal_episodes and len(owner):
        lengths = np.bincount(owner, minlength=len(adv)).astype(np.float64)
        steps = steps * lengths[lengths > 0].mean() / lengths[owner]
    return steps


def discounted_returns(rewards, dones, gamma: float = 0.99) -> np.ndarray:
    """Reward-to-go ``sum_k gamma^k r[t+k]`` up to the next terminal (no bootstrap): the
    Monte-Carlo returns whose spread sets the reward scale."""
    r, d = np.asarray(rewards, np.float64), np.asarray(dones, bool)
    out, running = np.zeros_like(r), 0.0
    for t in range(len(r) - 1, -1, -1):
        running = r[t] + gamma * running * (0.0 if d[t] else 1.0)
        out[t] = running
    return out


class RunningMoments:
    """Mean and variance of a stream of numbers, merged batch by batch (Chan et al.), so that a
    learner can scale rewards by the spread of returns seen over the whole run."""

    def __init__(self, count: float = 0.0, mean: float = 0.0, var: float = 0.0):
        self.count, self.mean, self.var = float(count), float(mean), float(var)

    def update(self, x) -> None:
        x = np.asarray(x, np.float64).reshape(-1)
        if not x.size:
            return
        n, m, v = float(x.size), float(x.mean()), float(x.var())
        total = self.count + n
        delta = m - self.mean
        self.var = (self.count * self.var + n * v + delta ** 2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var))

    def state(self) -> dict:
        return {"count": self.count, "mean": self.mean, "var": self.var}


def fit_linear(features, targets, ridge: float = 1e-2) -> tuple[np.ndarray, float]:
    """Ridge regression ``targets ~ features @ w + b`` (features standardised inside, ``ridge`` is
    relative to the sample count): the value warm-up's closed-form fit of a linear value head."""
    x, y = np.asarray(features, np.float64), np.asarray(targets, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features {x.shape} must be (N, D) and targets {y.shape} (N,)")
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    y0 = y.mean()
    a = z.T @ z + ridge * len(y) * np.eye(z.shape[1])
    wz = np.linalg.solve(a, z.T @ (y - y0))
    w = wz / sd
    return w, float(y0 - mu @ w)

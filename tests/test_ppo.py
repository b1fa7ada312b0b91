"""GAE and the PPO loss against naive implementations."""

import numpy as np
import pytest
import torch

from vlac.rl.ppo import (RunningMoments, discounted_returns, explained_variance, fit_linear, gae, normalise,
                         outcome_advantages, ppo_loss, steps_of_episodes)


def _naive_gae(r, v, d, last, gamma, lam):
    """Advantages as the (gamma*lam)-weighted sum of TD errors, episode by episode."""
    n = len(r)
    adv = np.zeros(n)
    for t in range(n):
        total, w = 0.0, 1.0
        for k in range(t, n):
            nxt = 0.0 if d[k] else (v[k + 1] if k + 1 < n else last)
            total += w * (r[k] + gamma * nxt - v[k])
            if d[k]:
                break
            w *= gamma * lam
        adv[t] = total
    return adv


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (1.0, 1.0), (0.9, 0.0)])
def test_gae_matches_naive(gamma, lam):
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=40), rng.normal(size=40)
    d = rng.random(40) < 0.1
    d[17] = True
    adv, ret = gae(r, v, d, last_value=0.7, gamma=gamma, lam=lam)
    np.testing.assert_allclose(adv, _naive_gae(r, v, d, 0.7, gamma, lam), atol=1e-10)
    np.testing.assert_allclose(ret, adv + v)
    # lam = 1: returns are discounted reward sums (bootstrapped with last_value at the end)
    if lam == 1.0:
        ends = np.flatnonzero(d)
        t = ends[0]
        np.testing.assert_allclose(ret[t], r[t])


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal 1-d"):
        gae([1.0, 2.0], [0.0], [False, True])


def test_ppo_loss_matches_naive_loop():
    rng = np.random.default_rng(1)
    n = 64
    old = torch.tensor(rng.normal(-3, 1, n))
    new = (old + torch.tensor(rng.normal(0, 0.3, n))).requires_grad_()
    adv = torch.tensor(rng.normal(size=n))
    val = torch.tensor(rng.normal(size=n), requires_grad=True)
    ret = torch.tensor(rng.normal(size=n))
    ent = torch.tensor(rng.uniform(0.5, 2, n))
    loss, st = ppo_loss(new, old, adv, val, ret, ent, clip=0.2, value_coef=0.5, entropy_coef=0.01)
    pol, clipped, kl = 0.0, 0, 0.0
    for i in range(n):
        ratio = float(np.exp(new[i].item() - old[i].item()))
        pol += min(ratio * adv[i].item(), min(max(ratio, 0.8), 1.2) * adv[i].item())
        clipped += abs(ratio - 1) > 0.2
        kl += (ratio - 1) - np.log(ratio)
    vloss = 0.5 * np.mean((val.detach().numpy() - ret.numpy()) ** 2)
    want = -pol / n + 0.5 * vloss - 0.01 * ent.mean().item()
    assert loss.item() == pytest.approx(want, rel=1e-9)
    assert st["clip_fraction"] == pytest.approx(clipped / n) and 0 < st["clip_fraction"] < 1
    assert st["approx_kl"] == pytest.approx(kl / n) and st["approx_kl"] > 0
    loss.backward()
    # the gradient of a ratio clipped on the side the advantage pushes is zero
    r = (new - old).exp().detach()
    dead = ((r > 1.2) & (adv > 0)) | ((r < 0.8) & (adv < 0))
    assert dead.any() and torch.all(new.grad[dead] == 0) and torch.all(new.grad[~dead] != 0)


def test_identical_policies_give_no_clipping_and_zero_kl():
    lp = torch.randn(16)
    _, st = ppo_loss(lp, lp, torch.randn(16), torch.zeros(16), torch.zeros(16), torch.ones(16))
    assert st["clip_fraction"] == 0 and st["approx_kl"] == pytest.approx(0, abs=1e-12)


def test_helpers():
    assert explained_variance([1, 2, 3], [1, 2, 3]) == 1.0
    assert explained_variance([2, 2, 2], [1, 2, 3]) == pytest.approx(0.0)
    x = normalise(torch.tensor([1.0, 2.0, 3.0]))
    assert x.mean().abs() < 1e-6 and x.std(unbiased=False) == pytest.approx(1, abs=1e-6)


def test_running_moments_merged_in_chunks_equal_the_whole():
    rng = np.random.default_rng(3)
    x = rng.normal(4.0, 2.5, 1000)
    m = RunningMoments()
    for chunk in np.split(x, [7, 8, 300, 301, 650]):
        m.update(chunk)
    m.update([])  # an empty batch changes nothing
    assert m.count == 1000
    assert m.mean == pytest.approx(x.mean()) and m.std == pytest.approx(x.std())
    again = RunningMoments(**m.state())  # what a resumed learner restores
    assert (again.count, again.mean, again.var) == (m.count, m.mean, m.var)


def test_discounted_returns_are_gae_with_zero_values_and_lambda_one():
    rng = np.random.default_rng(4)
    r = rng.normal(size=30)
    d = np.zeros(30, bool)
    d[[9, 29]] = True
    g = discounted_returns(r, d, gamma=0.9)
    np.testing.assert_allclose(g, gae(r, np.zeros(30), d, 0.0, gamma=0.9, lam=1.0)[1])
    assert g[9] == pytest.approx(r[9]) and g[8] == pytest.approx(r[8] + 0.9 * r[9])


def test_fit_linear_recovers_a_linear_map():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 12)) * rng.uniform(0.1, 10, 12)  # features of very different scales
    w_true = rng.normal(size=12)
    y = x @ w_true + 3.0 + rng.normal(0, 0.01, 400)
    w, b = fit_linear(x, y, ridge=1e-6)
    np.testing.assert_allclose(w, w_true, rtol=1e-2, atol=1e-3)
    assert b == pytest.approx(3.0, abs=0.05)
    with pytest.raises(ValueError, match="must be"):
        fit_linear(x, y[:-1])


def test_outcome_advantages_compare_each_episode_with_its_own_task():
    adv = outcome_advantages([1.0, 0.0, 0.0, 1.0, 2.0, 5.0, 0.3], ["a", "a", "a", "a", "b", "b", "c"])
    assert adv[:4] == pytest.approx([1.0, -1.0, -1.0, 1.0])  # (R - mean) / std within task a
    assert adv[4:6] == pytest.approx([-1.0, 1.0])
    assert adv[6] == 0.0  # a task with one episode says nothing
    assert not outcome_advantages([1.0, 1.0, 1.0], ["a"] * 3).any()  # all succeeded: no signal
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        outcome_advantages([1.0, 0.0], ["a"])


def test_outcome_advantages_undivided_keep_a_near_tie_small():
    """Without the division by the group's spread (Dr. GRPO), a group whose returns barely differ (a
    verdict of 0.02 against 0.06 on two failures) moves the policy by 0.02, not by a full unit as a
    success against a failure does; with it the two groups weigh the same."""
    returns, groups = [0.02, 0.06, 0.9, 0.1], ["a", "a", "b", "b"]
    assert outcome_advantages(returns, groups) == pytest.approx([-1.0, 1.0, 1.0, -1.0])
    assert outcome_advantages(returns, groups, by_std=False) == pytest.approx([-0.02, 0.02, 0.4, -0.4])
    assert not outcome_advantages([0.3, 0.3], ["a", "a"], by_std=False).any()


def test_every_episode_weighs_the_same_whatever_its_length():
    """An early success (2 steps) against a failure that ran to the limit (6 steps): per step, the
    failure's advantage would outweigh the success's 3 to 1 in a step-averaged loss; scaled, the two
    episodes weigh the same and the advantages sum to zero over the steps."""
    adv = outcome_advantages([1.0, 0.0], ["a", "a"])
    owner = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    plain = steps_of_episodes(adv, owner, equal_episodes=False)
    assert plain.tolist() == [1.0, 1.0] + [-1.0] * 6 and plain.sum() == -4.0
    equal = steps_of_episodes(adv, owner)
    assert equal == pytest.approx([2.0, 2.0] + [-2.0 / 3] * 6) and equal.sum() == pytest.approx(0.0)
    same = np.array([0, 0, 0, 1, 1, 1])  # one length (a fixed horizon): nothing changes
    assert steps_of_episodes(adv, same).tolist() == steps_of_episodes(adv, same, equal_episodes=False).tolist()
    # an episode with no steps of its own (operator steps only) takes no part in the mean length
    assert steps_of_episodes([1.0, 0.0, -1.0], np.array([0, 2, 2, 2])) == pytest.approx([2.0] + [-2.0 / 3] * 3)


def test_advantages_centred_only_keep_their_units():
    x = torch.tensor([0.01, 0.03, 0.02])
    c = normalise(x, by_std=False)
    assert c.mean().abs() < 1e-8 and c.tolist() == pytest.approx([-0.01, 0.01, 0.0], abs=1e-7)
    assert normalise(torch.tensor([5.0]), by_std=False).item() == 0.0

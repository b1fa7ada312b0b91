"""The RL loop's learner (paper 3.2.1): token-level PPO on the actor's own episodes, with return
normalisation, a value warm-up, a KL early stop, a frozen vision tower, demonstration replay
(Eq. 6) and self-imitation; it checkpoints after every update and resumes from the last one.
``vlac.rl.loop`` runs it as a Ray actor; tests and benchmarks run it in-process.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from vlac.rl.episodes import EpisodeRecord
from vlac.rl.ppo import RunningMoments
from vlac.utils.files import atomic_dir
from vlac.utils.imports import require, set_threads

torch = require("torch", extra="model")


def load_actor(checkpoint: str):
    from vlac.actor.actor import Actor

    return Actor.load(checkpoint)


def reference_kl(log_probs: list, ref_log_probs: list) -> "torch.Tensor":
    """KL(policy || reference) per action, averaged over the actions: for each action the k3
    estimate ``exp(d) - d - 1`` (``d = ref - policy``; non-negative, unbiased, zero where the two
    agree) summed over its sampled tokens, as the PPO ratio sums their log-probabilities. Each
    argument holds one tensor of token log-probabilities per action; ``d`` is clipped to +-10 so a
    token the policy has all but dropped cannot overflow."""
    d = (torch.cat(ref_log_probs).detach() - torch.cat(log_probs)).clamp(-10.0, 10.0)
    return (d.exp() - d - 1.0).sum() / max(len(log_probs), 1)


def outcome_group(rec: EpisodeRecord, index: int, by: str) -> tuple:
    """The group an episode's outcome advantage is taken in: its task (``by="task"``), or its task and
    the start its robot named (``by="scene"``); an episode without a named start, or one that began
    at a return point (another episode's state), is a group of its own."""
    if by == "task":
        return (rec.task,)
    if rec.scene is None or rec.start is not None:
        return (rec.task, "own", index)
    return (rec.task, "scene", rec.scene)


def apply_weights(actor, state: dict) -> None:
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    head_state = {k[len("value_head."):]: v for k, v in state.items() if k.startswith("value_head.")}
    actor.vlm.model.load_state_dict(model_state)
    actor.value_head.load_state_dict(head_state)


@dataclass
class LearnerConfig:
    actor: Annotated[str, tyro.conf.Suppress] = "builtin"
    """Actor to start from; `vlac rl` sets it from its --actor."""
    out: Annotated[str, tyro.conf.Suppress] = "runs/rl"
    """Run folder; the learner checkpoints into OUT/learner/. `vlac rl` sets it from its --out."""
    lr: float = 1e-5
    """AdamW learning rate of the PPO steps (0: none; the epochs are skipped, replay still runs)."""
    epochs: int = 2
    """Passes over each batch of episodes."""
    minibatch: int = 32
    """Steps per gradient step."""
    clip: float = 0.2
    """PPO ratio clip."""
    value_coef: float = 0.5
    value_trunk: bool = True
    """Let the value loss's gradient reach the language model the value head reads (the paper's
    shared trunk). ``--learner.no-value-trunk`` trains the head alone on detached features, so the
    policy's weights move only for the policy and replay losses (the value error of a fresh reward
    then cannot shift the actions)."""
    entropy_coef: float = 0.0
    gamma: float = 0.99
    lam: float = 0.95
    advantage: str = "gae"
    """gae: per-step advantages from the value head (generalised advantage estimation, then
    normalised over the update). outcome: one advantage per episode, its return against the other
    episodes of the same task in the update (``(R - mean) / std``, GRPO-style), given to each of its
    steps; no value estimate enters it, so the value loss then trains the head alone (as
    ``--learner.no-value-trunk``). Wants several episodes per task per update
    (``--episodes-per-update``)."""
    gae_by_std: bool = True
    """With ``advantage: gae``, divide the update's centred advantages by their standard deviation (PPO's
    usual normalisation). ``--learner.no-gae-by-std`` only centres them, so they keep the reward's own
    units (rewards divided by the run's return scale, ``normalise_returns``): an update whose episodes all
    failed under a sparse reward, where the advantages are nothing but the value head's errors, then
    moves the policy by those errors' size instead of by a full unit. Measured on lever-pull with the
    flag as reward (BENCHMARKS.md "The budget and the credit"): it delays GAE's collapse, not prevents it."""
    outcome_equal_episodes: bool = True
    """With ``advantage: outcome``, every episode weighs the same in the step-averaged loss whatever its
    length (its steps' advantages scaled by the mean length over its own; GRPO's per-sequence mean).
    Off: every step weighs the same, so where the simulator's flag or the critic's done ends successes
    early the longer failures outweigh them (the runs before session 47). A fixed horizon (``final``,
    the critic's done off) gives episodes of one length, where the two agree."""
    outcome_groups: str = "task"
    """With ``advantage: outcome``, which episodes an episode's return is compared with: task (those of
    its task in the update; most of the spread then comes from how hard each start was) or scene
    (those of its task that began from the same start, as the robot names it in episode_start: GRPO's
    groups of answers to one prompt; simulated robots give them with ``--start-repeats``). An episode
    with no other from its start in the update, or one started from a return point, gets 0."""
    outcome_by_std: bool = True
    """With ``advantage: outcome``, divide each group's ``R - mean`` by the group's standard deviation
    (GRPO). ``--learner.no-outcome-by-std`` leaves it undivided (Dr. GRPO), so episodes whose returns
    barely differ (a continuous verdict on episodes that all failed) weigh little instead of a full
    unit; returns in [0, 1] (``final``, ``oracle-sparse``) keep advantages of order 0.5."""
    reward: str = "dense"
    """dense (critic progress delta per step), sparse (1 at the critic's done) or final (the
    critic's mean done probability over the episode's last 10 transitions, at its last step: a
    verdict on how a fixed-horizon episode ended, for ``--learner.advantage outcome``): the critic's
    rewards. Reference arms, never a default: oracle-dense (Meta-World's own shaped reward per step)
    and oracle-sparse (1 at the simulator's success flag, which ends the episode), and oracle-final (1 at
    the last step if the flag was on at any step, the episode running to its end: ``final`` with a perfect
    verdict): they measure the learner's ceiling and the baseline the critic must beat."""
    done_bonus: float = 0.0
    """Added to the last dense reward of an episode the critic declared done."""
    demo_data: list[str] = field(default_factory=list)
    """LeRobot dataset of demonstrations replayed with an NLL loss (paper Eq. 6); empty: none."""
    demo_weight: float = 0.1
    demo_batch: int = 16
    self_imitation: float = 0.0
    """Weight of an NLL loss on the run's own episodes that ended at a done (self-imitation; 0:
    off): their steps join a replay buffer drawn like the demonstrations (``demo_batch`` a
    minibatch). The done is the critic's in the product arms and the simulator's flag in
    oracle-sparse, so the critic arm imitates what its critic calls success."""
    self_imitation_steps: int = 2000
    """Steps the self-imitation buffer keeps (the newest; about 28 kB each at 96 px)."""
    operator_weight: float = 1.0
    """Weight of the NLL loss on the steps an operator drove (human-guided exploration, paper 3.2.3:
    they join the demonstration replay and never enter the PPO ratio; see `vlac rl --takeover-after`)."""
    operator_steps: int = 4000
    """Operator steps the replay buffer keeps (the newest)."""
    replay_steps: int = 0
    """Gradient steps on the replay losses alone (demonstrations, operator steps, self-imitation)
    after each update's PPO epochs, outside the KL stop (0: they only ride along PPO's minibatches,
    where the KL stop bounds how far they can move the policy)."""
    replay_lr: float = 0.0
    """AdamW learning rate of the ``replay_steps`` (0: ``lr``). Behaviour cloning usually wants a
    larger step than PPO's trust region allows (the built-in actor was trained at 1e-4)."""
    grad_clip: float = 1.0
    normalise_returns: bool = True
    """Divide rewards by the running standard deviation of the discounted returns seen so far in
    the run (kept across updates and resumes), so the value head's targets stay near unit scale
    whatever the reward source (the simulator's shaped reward sums to 25-65 over 100 steps, the
    critic's to about 1)."""
    value_warmup: bool = True
    """Before the first policy step of a run, fit the value head to the first batch's returns by
    ridge regression on the model's own features (the prior's rollouts), so the first advantages
    are not the raw returns of a head that never saw this reward."""
    target_kl: float = 0.02
    """Stop an update's epochs once the approximate KL between the acting policy and the one
    being trained passes 1.5x this (0: off): each update moves the policy a bounded amount."""
    freeze_vision: bool = True
    """Keep the vision tower and projector as the prior left them; PPO trains the language model
    and the value head. The image features are then computed once per step sample in the no-grad
    pass and reused by every epoch (about a third less compute per update)."""
    temperature: float = 1.0
    """Sampling temperature of the inference workers (log-probabilities are under it)."""
    ref_kl: float = 0.0
    """Weight of a penalty on the policy's KL divergence from the actor the run started from
    (``--actor``, kept frozen beside the trained one): per action, the k3 estimate ``exp(d) - d - 1``
    of ``d = log p_ref - log p`` summed over its sampled tokens (GRPO's beta; 0: off). It
    holds the policy near the prior, where a reward learnt from the prior's own rollouts was
    measured to hold, so the policy cannot walk far into states the reward misreads; it costs one
    no-grad pass of the reference per update."""
    threads: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"learner.advantage {self.advantage!r} must be one of {', '.join(ADVANTAGES)}")
        if self.outcome_groups not in ("task", "scene"):
            raise ValueError(f"learner.outcome_groups {self.outcome_groups!r} must be task or scene")
        if self.outcome_groups == "scene" and self.advantage != "outcome":
            raise ValueError("learner.outcome_groups scene groups outcome advantages: give --learner.advantage "
                             "outcome too")
        if not self.gae_by_std and self.advantage != "gae":
            raise ValueError("learner.gae_by_std off changes how GAE advantages are scaled, and --learner.advantage "
                             f"{self.advantage} reads none: drop --learner.no-gae-by-std or give --learner.advantage gae")


ADVANTAGES = ("gae", "outcome")


class ReplayBuffer:
    """(actor input, action, frozen vision output or None) triples trained with an NLL loss beside
    PPO; keeps the newest ``capacity``."""

    def __init__(self, capacity: int, path: Path | None = None):
        self.capacity = capacity
        self.items: list[tuple] = torch.load(path, weights_only=False) if path is not None and path.is_file() else []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: list[tuple]) -> None:
        self.items += items
        del self.items[:max(0, len(self.items) - self.capacity)]

    def loss(self, actor, rng: np.random.Generator, n: int):
        """NLL of ``n`` drawn steps' actions under the actor (paper Eq. 6)."""
        pick = rng.integers(0, len(self.items), size=n)
        feats = [self.items[k][2] for k in pick]
        loss, _ = actor.bc_loss([self.items[k][0] for k in pick], [self.items[k][1] for k in pick],
                                image_features=None if any(f is None for f in feats) else torch.stack(feats))
        return loss

    def save(self, path: Path) -> None:
        if self.items:
            torch.save(self.items, path)


class Learner:
    """Token-level PPO on the actor; checkpoints after every update and resumes from the last one."""

    def __init__(self, cfg: LearnerConfig):
        from vlac.actor.actor import Actor

        set_threads(cfg.threads)
        self.cfg = cfg
        self.dir = Path(cfg.out) / "learner"
        self.resumed = (self.dir / "trainer.pt").is_file()
        self.actor = Actor.load(self.dir / "model") if self.resumed else load_actor(cfg.actor)
        if cfg.freeze_vision:
            for p in self.actor.vlm.vision_parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.actor.parameters(), lr=cfg.lr)
        self.reference = None  # the start actor, frozen: the anchor of --learner.ref-kl
        if cfg.ref_kl > 0:
            self.reference = load_actor(cfg.actor)
            self.reference.train(False)
            for p in self.reference.parameters():
                p.requires_grad_(False)
        self.step, self.episodes_seen = 0, 0
        self.rng = np.random.default_rng(cfg.seed)
        self.return_moments = RunningMoments()
        if self.resumed:
            state = torch.load(self.dir / "trainer.pt", weights_only=False)
            self.opt.load_state_dict(state["optimizer"])
            self.step, self.episodes_seen = state["step"], state["episodes_seen"]
            self.rng.bit_generator.state = state["rng"]
            self.return_moments = RunningMoments(**state.get("return_moments", {}))
        self.demos = None
        if cfg.demo_data:
            from vlac.train.actions import ActionSource, load_demos
            from vlac.data.dataset import LeRobotDataset

            demos = load_demos([LeRobotDataset(p) for p in cfg.demo_data], progress=False)
            self.demos = ActionSource(demos, self.actor.action_template, self.actor.state_template, self.actor.history)
        # Replay beside PPO: the steps of the run's own episodes that ended at a done (self-imitation)
        # and the steps operators drove (human-guided exploration); both survive a restart.
        self.imitate = ReplayBuffer(cfg.self_imitation_steps, self.dir / "imitate.pt" if self.resumed else None)
        self.operated = ReplayBuffer(cfg.operator_steps, self.dir / "operator.pt" if self.resumed else None)

    def status(self) -> dict:
        return {"step": self.step, "episodes_seen": self.episodes_seen, "resumed": self.resumed, "pid": os.getpid()}

    def weights(self) -> tuple[dict, int]:
        state = {f"model.{k}": v.detach().cpu().clone() for k, v in self.actor.vlm.model.state_dict().items()}
        state.update({f"value_head.{k}": v.detach().cpu().clone() for k, v in self.actor.value_head.state_dict().items()})
        return state, self.step

    def _batches(self, n: int) -> list[np.ndarray]:
        idx = self.rng.permutation(n)
        return [idx[k:k + self.cfg.minibatch] for k in range(0, n, self.cfg.minibatch)]

    def update(self, episodes: list[EpisodeRecord]) -> dict:
        from vlac.actor.actor import ActionSample
        from vlac.rl.ppo import (discounted_returns, explained_variance, normalise, outcome_advantages, ppo_loss,
                                  steps_of_episodes)

        cfg = self.cfg
        t0 = time.perf_counter()
        inputs, samples, owner, versions = [], [], [], []
        for e, rec in enumerate(episodes):
            inputs += rec.actor_inputs()  # the prompts the inference worker built (history included)
            for s in rec.acted:
                samples.append(ActionSample.from_dict(s.sample))
                owner.append(e)
                if s.version is not None:
                    versions.append(s.version)
        n = len(samples)
        self.actor.train(False)
        operated = self._remember_operated(episodes)
        if n == 0:  # only operator steps (or nothing scored): kept for replay, no PPO step
            self.step += 1
            self.episodes_seen += len(episodes)
            self.save()
            return {"steps": 0, "update": self.step, "operator_steps_added": operated,
                    "operator_buffer": len(self.operated), "seconds": time.perf_counter() - t0}
        owner = np.array(owner)
        sel = [np.flatnonzero(owner == e) for e in range(len(episodes))]
        # Old log-probabilities, values and the value head's features from the training model
        # itself (paper 3.2.1), not the inference worker's numbers (eval mode since above).
        old_lp, values = np.zeros(n), np.zeros(n)
        features = np.zeros((n, self.actor.value_head.in_features))
        images = None  # with a frozen vision tower: its output for every sample, reused by each epoch
        ref_tokens: list = [None] * n  # the reference's log-probability of each sampled token
        with torch.no_grad():
            for mb in self._batches(n):
                out = self.actor.evaluate([inputs[i] for i in mb], [samples[i] for i in mb], cfg.temperature)
                old_lp[mb], values[mb] = out["log_prob"].numpy(), out["value"].numpy()
                features[mb] = out["features"].float().numpy()
                if self.reference is not None:  # with a frozen vision tower both read the same image features
                    ref = self.reference.evaluate([inputs[i] for i in mb], [samples[i] for i in mb], cfg.temperature,
                                                  image_features=out["image_features"] if cfg.freeze_vision else None)
                    for i, t in zip(mb, ref["token_log_probs"]):
                        ref_tokens[i] = t
                if cfg.freeze_vision:
                    if images is None:
                        images = torch.zeros((n, *out["image_features"].shape[1:]), dtype=out["image_features"].dtype)
                    images[mb] = out["image_features"]
        infer_lp = np.array([s.log_prob for s in samples])
        imitated = self._remember_successes(episodes, sel, images)
        extra = {}
        if cfg.normalise_returns:
            for rec in episodes:
                self.return_moments.update(discounted_returns(rec.rewards(cfg.reward, cfg.done_bonus), rec.terminals(),
                                                              cfg.gamma))
        scale = max(self.return_moments.std, 1e-3) if cfg.normalise_returns and self.return_moments.count > 1 else 1.0

        def targets(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            adv, ret = np.zeros(n), np.zeros(n)
            for e, rec in enumerate(episodes):
                if len(sel[e]):
                    adv[sel[e]], ret[sel[e]] = rec.advantages(v[sel[e]], v[sel[e][-1]], cfg.reward, cfg.gamma, cfg.lam,
                                                              cfg.done_bonus, scale)
            return adv, ret

        if cfg.value_warmup and self.step == 0:
            extra["value_warmup_ev_before"] = explained_variance(values, targets(values)[1])
            values = self._warm_up_value_head(features, targets)
            extra["value_warmup_ev_after"] = explained_variance(values, targets(values)[1])
        adv, ret = targets(values)
        returns = [float(rec.rewards(cfg.reward, cfg.done_bonus).sum()) for rec in episodes]
        if cfg.advantage == "outcome":
            groups = [outcome_group(rec, e, cfg.outcome_groups) for e, rec in enumerate(episodes)]
            ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
            per_episode = outcome_advantages(returns, [ids[g] for g in groups], by_std=cfg.outcome_by_std)
            extra["episodes_with_signal"] = int(np.count_nonzero(per_episode))
            extra["outcome_groups"] = len(ids)
            adv_t = torch.tensor(steps_of_episodes(per_episode, owner, cfg.outcome_equal_episodes), dtype=torch.float32)
        else:
            extra["advantage_std"] = float(adv.std())  # in the reward's units (before any division)
            adv_t = normalise(torch.tensor(adv, dtype=torch.float32), by_std=cfg.gae_by_std)
        self.actor.train(True)
        agg: dict[str, list] = {}
        stopped = False
        for _ in range(cfg.epochs if cfg.lr > 0 else 0):  # PPO's rate 0 (replay alone): its epochs cannot move anything
            for mb in self._batches(n):
                out = self.actor.evaluate([inputs[i] for i in mb], [samples[i] for i in mb], cfg.temperature,
                                          image_features=None if images is None else images[mb])
                loss, st = ppo_loss(out["log_prob"], torch.tensor(old_lp[mb], dtype=torch.float32), adv_t[mb],
                                    self._trained_value(out), torch.tensor(ret[mb], dtype=torch.float32), out["entropy"],
                                    clip=cfg.clip, value_coef=cfg.value_coef, entropy_coef=cfg.entropy_coef)
                if self.reference is not None:
                    kl = reference_kl(out["token_log_probs"], [ref_tokens[i] for i in mb])
                    loss = loss + cfg.ref_kl * kl
                    st["ref_kl"] = float(kl.detach())
                r_loss, r_st = self._replay_loss()  # Eq. 6: NLL of demonstrated (and replayed) actions
                if r_loss is not None:
                    loss = loss + r_loss
                st.update(r_st)
                for k, v in st.items():
                    agg.setdefault(k, []).append(v)
                if cfg.target_kl > 0 and st["approx_kl"] > 1.5 * cfg.target_kl:
                    stopped = True  # this minibatch already left the trust region: no step on it
                    break
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
                self.opt.step()
                agg.setdefault("gradient_steps", []).append(1)
            if stopped:
                break
        replay = []
        for group in self.opt.param_groups:
            group["lr"] = cfg.replay_lr or cfg.lr
        for _ in range(cfg.replay_steps):  # replay alone, outside the PPO trust region
            r_loss, _ = self._replay_loss()
            if r_loss is None:
                break
            self.opt.zero_grad(set_to_none=True)
            r_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
            self.opt.step()
            replay.append(float(r_loss.detach()))
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr
        if replay:
            extra.update(replay_steps=len(replay), replay_loss_first=replay[0], replay_loss_last=replay[-1])
        self.step += 1
        self.episodes_seen += len(episodes)
        stats = {k: float(np.mean(v)) for k, v in agg.items() if k != "gradient_steps"}
        stats.update(extra)
        stats.update({"steps": n, "update": self.step, "explained_variance": explained_variance(values, ret),
                      "gradient_steps": len(agg.get("gradient_steps", [])), "kl_stop": int(stopped),
                      "return_scale": scale, "imitated_episodes": imitated, "imitation_buffer": len(self.imitate),
                      "operator_steps_added": operated, "operator_buffer": len(self.operated),
                      "mean_return": float(np.mean(returns)),
                      "inference_ratio_drift": float(np.mean(np.abs(np.exp(old_lp - infer_lp) - 1.0))),
                      # updates between the weights that acted and those being trained (0: on-policy)
                      "policy_lag": float(self.step - 1 - np.mean(versions)) if versions else float("nan"),
                      "seconds": time.perf_counter() - t0})
        self.save()
        return stats

    def _trained_value(self, out: dict) -> "torch.Tensor":
        """The value the PPO loss fits: through the language model, or (``value_trunk`` off, or
        outcome advantages, which read no value) from the head alone on detached features."""
        if self.cfg.value_trunk and self.cfg.advantage == "gae":
            return out["value"]
        return self.actor.value_of(out["features"].detach())

    def _replay_loss(self):
        """The weighted NLL of a draw from each replay source (demonstrations, operator steps, the
        run's own successes) and each one's figure; (None, {}) when there is none."""
        cfg, loss, st = self.cfg, None, {}
        if self.demos is not None and cfg.demo_weight > 0:
            d_in, d_act, _ = self.demos.draw(self.rng, cfg.demo_batch)
            d_loss, _ = self.actor.bc_loss(d_in, d_act)
            loss, st["demo_nll"] = cfg.demo_weight * d_loss, float(d_loss.detach())
        for name, buf, weight in (("self_imitation", self.imitate, cfg.self_imitation),
                                  ("operator", self.operated, cfg.operator_weight)):
            if len(buf) and weight > 0:
                b_loss = buf.loss(self.actor, self.rng, cfg.demo_batch)
                loss = weight * b_loss if loss is None else loss + weight * b_loss
                st[f"{name}_nll"] = float(b_loss.detach())
        return loss, st

    def _remember_successes(self, episodes: list[EpisodeRecord], sel: list[np.ndarray], images) -> int:
        """Add the steps of the episodes that ended at a done to the self-imitation buffer as
        (input, executed action, frozen vision output or None); the newest
        ``self_imitation_steps`` are kept. Returns how many episodes joined."""
        if self.cfg.self_imitation <= 0:
            return 0
        joined = [e for e, rec in enumerate(episodes) if rec.terminal and not rec.operated]  # the policy's own
        for e in joined:
            rec = episodes[e]
            self.imitate.add([(x, np.asarray(s.sample["action"], np.float32), None if images is None else images[i].clone())
                              for x, s, i in zip(rec.actor_inputs(), rec.acted, sel[e])])
        return len(joined)

    def _remember_operated(self, episodes: list[EpisodeRecord]) -> int:
        """The steps operators drove join their replay buffer (with the frozen vision tower's output
        of each, computed once); returns how many."""
        from vlac.actor.actor import ActorInput

        items = [(ActorInput(s.image, s.state, rec.task, s.history or []), np.asarray(s.operator_action, np.float32))
                 for rec in episodes for s in rec.operated]
        if not items:
            return 0
        feats: list = [None] * len(items)
        if self.cfg.freeze_vision:
            with torch.no_grad():
                for k in range(0, len(items), 32):
                    batch = self.actor.vlm.encode([self.actor.prompt(x) for x, _ in items[k:k + 32]])
                    out = self.actor.vlm.image_features(batch["pixel_values"])
                    feats[k:k + 32] = [f.clone() for f in out]
        self.operated.add([(x, a, f) for (x, a), f in zip(items, feats)])
        return len(items)

    def _warm_up_value_head(self, features: np.ndarray, targets) -> np.ndarray:
        """Fit the linear value head to this batch's value targets (ridge regression on the
        features the head reads), a few rounds since GAE targets depend on the values; returns
        the new values."""
        from vlac.rl.ppo import fit_linear

        head = self.actor.value_head
        values = head(torch.tensor(features, dtype=torch.float32)).squeeze(-1).detach().numpy().astype(np.float64)
        for _ in range(3):
            w, b = fit_linear(features, targets(values)[1], ridge=0.05)
            values = features @ w + b
        with torch.no_grad():
            head.weight.copy_(torch.tensor(w, dtype=torch.float32)[None])
            head.bias.fill_(b)
        return values

    def save(self) -> None:
        with atomic_dir(self.dir) as tmp:  # a kill mid-save keeps the previous checkpoint
            self.actor.save(tmp / "model")
            torch.save({"optimizer": self.opt.state_dict(), "step": self.step, "episodes_seen": self.episodes_seen,
                        "rng": self.rng.bit_generator.state, "config": asdict(self.cfg),
                        "return_moments": self.return_moments.state()}, tmp / "trainer.pt")
            self.imitate.save(tmp / "imitate.pt")
            self.operated.save(tmp / "operator.pt")

    def pid(self) -> int:
        return os.getpid()

"""The components of the RL loop (paper 3.2.1) as plain classes: inference worker (an actor
replica), critic worker (reward and done), learner (token-level PPO), data service (every episode
persisted before it is trained on), evaluator and log service. ``vlac.rl.loop`` turns them into
Ray actors; tests also run them in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vlac.rl.episodes import EpisodeRecord, Step
from vlac.rl.ppo import RunningMoments
from vlac.utils.files import replace_dir
from vlac.utils.imports import require, set_threads

torch = require("torch", extra="model")


def _load_actor(checkpoint: str):
    from vlac.actor.actor import Actor

    return Actor.load(checkpoint or None)


def _apply_weights(actor, state: dict) -> None:
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    head_state = {k[len("value_head."):]: v for k, v in state.items() if k.startswith("value_head.")}
    actor.vlm.model.load_state_dict(model_state)
    actor.value_head.load_state_dict(head_state)


class InferenceWorker:
    """One actor replica: decodes actions for a batch of waiting observations."""

    def __init__(self, checkpoint: str = "", temperature: float = 1.0, top_k: int = 0, threads: int = 1,
                 seed: int = 0):
        set_threads(threads)
        self.actor = _load_actor(checkpoint)
        self.temperature, self.top_k = temperature, top_k
        self.generator = torch.Generator().manual_seed(seed)
        self.version = 0

    def act(self, requests: list[dict]) -> list[dict]:
        """``requests``: {robot, obs_id, image, state, task, history}; returns, in order,
        {robot, obs_id, sample (ActionSample.to_dict()), version, seconds}, or {robot, obs_id,
        error} for a request the model rejects (that request fails alone, never the batch)."""
        from vlac.actor.actor import ActorInput

        t0 = time.perf_counter()

        def decode(batch: list[dict]) -> list[dict]:
            inputs = [ActorInput(r["image"], r["state"], r["task"], r.get("history", [])) for r in batch]
            samples = self.actor.act(inputs, temperature=self.temperature, top_k=self.top_k, generator=self.generator)
            return [{"sample": s.to_dict(), "version": self.version} for s in samples]

        out = _each_alone_on_error(decode, requests)
        dt = time.perf_counter() - t0
        return [{"robot": r["robot"], "obs_id": r["obs_id"], "seconds": dt, **o} for r, o in zip(requests, out)]

    def set_weights(self, state: dict, version: int) -> int:
        _apply_weights(self.actor, state)
        self.version = version
        return version

    def pid(self) -> int:
        return os.getpid()


class CriticWorker:
    """Scores transitions: reward = progress delta (before -> after), p_done of the after frame."""

    def __init__(self, checkpoint: str = "", threads: int = 1, decoding: str = "rich", symmetric: bool = False):
        from vlac.critic.critic import Critic

        set_threads(threads)
        self.critic = Critic.load(checkpoint or None, symmetric=symmetric)
        self.decoding = decoding

    def score(self, items: list[dict]) -> list[dict]:
        """``items``: {key, task, before, after}; returns {key, reward, p_done, seconds} in order,
        or {key, error, seconds} for an item the model rejects (it fails alone)."""
        t0 = time.perf_counter()

        def judge(group: list[dict]) -> list[dict]:
            task = group[0]["task"]
            rewards = self.critic.progress([(it["before"], it["after"]) for it in group], task, decoding=self.decoding)
            done = self.critic.done([it["after"] for it in group], task)
            return [{"reward": float(r), "p_done": float(d)} for r, d in zip(rewards, done)]

        out: list[dict] = [{} for _ in items]
        for task in {it["task"] for it in items}:
            idx = [k for k, it in enumerate(items) if it["task"] == task]
            for k, o in zip(idx, _each_alone_on_error(judge, [items[k] for k in idx])):
                out[k] = o
        per_item = (time.perf_counter() - t0) / max(len(items), 1)
        return [{"key": it["key"], "seconds": per_item, **o} for it, o in zip(items, out)]


def _each_alone_on_error(fn, batch: list[dict]) -> list[dict]:
    """``fn`` over the batch at once; if the model rejects it, over each item alone, so one bad
    request gets ``{"error": ...}`` and the others their answers."""
    try:
        return fn(batch)
    except Exception as e:  # noqa: BLE001 - any model error is one request's, not the run's
        if len(batch) == 1:
            return [{"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}]
    return [_each_alone_on_error(fn, [item])[0] for item in batch]


@dataclass
class LearnerConfig:
    checkpoint: str = ""
    """Actor to start from (default: the built-in behaviour-cloned tiny actor)."""
    out: str = "runs/rl"
    """Run folder; the learner checkpoints into OUT/learner/."""
    lr: float = 1e-5
    """AdamW learning rate."""
    epochs: int = 2
    """Passes over each batch of episodes."""
    minibatch: int = 32
    """Steps per gradient step."""
    clip: float = 0.2
    """PPO ratio clip."""
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    gamma: float = 0.99
    lam: float = 0.95
    reward: str = "dense"
    """dense (critic progress delta per step) or sparse (1 at the critic's done): the critic's
    rewards. Reference arms, never a default: oracle-dense (Meta-World's own shaped reward per step)
    and oracle-sparse (1 at the simulator's success flag, which ends the episode): they measure the
    learner's ceiling and the baseline the critic must beat."""
    done_bonus: float = 0.0
    """Added to the last dense reward of an episode the critic declared done."""
    demo_data: str = ""
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
    threads: int = 1
    seed: int = 0


class Learner:
    """Token-level PPO on the actor; checkpoints after every update and resumes from the last one."""

    def __init__(self, cfg: LearnerConfig):
        from vlac.actor.actor import Actor

        set_threads(cfg.threads)
        self.cfg = cfg
        self.dir = Path(cfg.out) / "learner"
        self.resumed = (self.dir / "trainer.pt").is_file()
        self.actor = Actor.load(self.dir / "model") if self.resumed else _load_actor(cfg.checkpoint)
        if cfg.freeze_vision:
            for p in self.actor.vlm.vision_parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.actor.parameters(), lr=cfg.lr)
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
            from vlac.actor.samples import ActionSource, load_demos
            from vlac.data.dataset import LeRobotDataset

            demos = load_demos([LeRobotDataset(p) for p in cfg.demo_data.split(",")], progress=False)
            self.demos = ActionSource(demos, self.actor.action_template, self.actor.state_template, self.actor.history)
        # Self-imitation: (input, executed action) of the steps of episodes that ended at a done.
        self.imitate: list[tuple] = []
        if self.resumed and (self.dir / "imitate.pt").is_file():
            self.imitate = torch.load(self.dir / "imitate.pt", weights_only=False)

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
        from vlac.rl.ppo import discounted_returns, explained_variance, normalise, ppo_loss

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
        if n == 0:
            return {"steps": 0}
        owner = np.array(owner)
        sel = [np.flatnonzero(owner == e) for e in range(len(episodes))]
        # Old log-probabilities, values and the value head's features from the training model
        # itself (paper 3.2.1), not the inference worker's numbers.
        self.actor.train(False)
        old_lp, values = np.zeros(n), np.zeros(n)
        features = np.zeros((n, self.actor.value_head.in_features))
        images = None  # with a frozen vision tower: its output for every sample, reused by each epoch
        with torch.no_grad():
            for mb in self._batches(n):
                out = self.actor.evaluate([inputs[i] for i in mb], [samples[i] for i in mb], cfg.temperature)
                old_lp[mb], values[mb] = out["log_prob"].numpy(), out["value"].numpy()
                features[mb] = out["features"].float().numpy()
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
        adv_t = normalise(torch.tensor(adv, dtype=torch.float32))
        self.actor.train(True)
        agg: dict[str, list] = {}
        stopped = False
        for _ in range(cfg.epochs):
            for mb in self._batches(n):
                out = self.actor.evaluate([inputs[i] for i in mb], [samples[i] for i in mb], cfg.temperature,
                                          image_features=None if images is None else images[mb])
                loss, st = ppo_loss(out["log_prob"], torch.tensor(old_lp[mb], dtype=torch.float32), adv_t[mb],
                                    out["value"], torch.tensor(ret[mb], dtype=torch.float32), out["entropy"],
                                    clip=cfg.clip, value_coef=cfg.value_coef, entropy_coef=cfg.entropy_coef)
                if self.demos is not None and cfg.demo_weight > 0:
                    # Eq. 6, offline demonstration replay: NLL of demonstrated action tokens.
                    d_in, d_act, _ = self.demos.draw(self.rng, cfg.demo_batch)
                    d_loss, _ = self.actor.bc_loss(d_in, d_act)
                    loss = loss + cfg.demo_weight * d_loss
                    st["demo_nll"] = float(d_loss.detach())
                if self.imitate and cfg.self_imitation > 0:
                    pick = self.rng.integers(0, len(self.imitate), size=cfg.demo_batch)
                    feats = [self.imitate[k][2] for k in pick]
                    s_loss, _ = self.actor.bc_loss([self.imitate[k][0] for k in pick], [self.imitate[k][1] for k in pick],
                                                   image_features=None if any(f is None for f in feats)
                                                   else torch.stack(feats))
                    loss = loss + cfg.self_imitation * s_loss
                    st["self_imitation_nll"] = float(s_loss.detach())
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
        self.step += 1
        self.episodes_seen += len(episodes)
        stats = {k: float(np.mean(v)) for k, v in agg.items() if k != "gradient_steps"}
        stats.update(extra)
        stats.update({"steps": n, "update": self.step, "explained_variance": explained_variance(values, ret),
                      "gradient_steps": len(agg.get("gradient_steps", [])), "kl_stop": int(stopped),
                      "return_scale": scale, "imitated_episodes": imitated, "imitation_buffer": len(self.imitate),
                      "mean_return": float(np.mean([r.rewards(cfg.reward, cfg.done_bonus).sum() for r in episodes])),
                      "inference_ratio_drift": float(np.mean(np.abs(np.exp(old_lp - infer_lp) - 1.0))),
                      # updates between the weights that acted and those being trained (0: on-policy)
                      "policy_lag": float(self.step - 1 - np.mean(versions)) if versions else float("nan"),
                      "seconds": time.perf_counter() - t0})
        self.save()
        return stats

    def _remember_successes(self, episodes: list[EpisodeRecord], sel: list[np.ndarray], images) -> int:
        """Add the steps of the episodes that ended at a done to the self-imitation buffer as
        (input, executed action, frozen vision output or None); the newest
        ``self_imitation_steps`` are kept. Returns how many episodes joined."""
        if self.cfg.self_imitation <= 0:
            return 0
        joined = [e for e, rec in enumerate(episodes) if rec.terminal]
        for e in joined:
            rec = episodes[e]
            self.imitate += [(x, np.asarray(s.sample["action"], np.float32), None if images is None else images[i].clone())
                             for x, s, i in zip(rec.actor_inputs(), rec.acted, sel[e])]
        del self.imitate[:max(0, len(self.imitate) - self.cfg.self_imitation_steps)]
        return len(joined)

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
        """Atomic: write beside, then rename, so a kill mid-save keeps the previous checkpoint."""
        tmp = self.dir.with_name("learner.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.actor.save(tmp / "model")
        torch.save({"optimizer": self.opt.state_dict(), "step": self.step, "episodes_seen": self.episodes_seen,
                    "rng": self.rng.bit_generator.state, "config": asdict(self.cfg),
                    "return_moments": self.return_moments.state()}, tmp / "trainer.pt")
        if self.imitate:
            torch.save(self.imitate, tmp / "imitate.pt")
        replace_dir(tmp, self.dir)

    def pid(self) -> int:
        return os.getpid()


def _fit_frame(image: np.ndarray, size: int) -> np.ndarray:
    """A camera frame of any size as the dataset stores it: centre-cropped to a square and resized
    to ``size`` (what the model sees anyway); frames already that size are kept as they are."""
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top:top + side, left:left + side])
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))


class DataService:
    """Persists every finished episode, in the LeRobot layout (what the robot saw and did, with the
    simulator's success flag when there is one) plus the RL record (rewards, done probabilities,
    decoded tokens and log-probabilities) in ``OUT/rl_steps/``; returns once it is on disk. Frames
    of another size than ``image_size`` are centre-cropped and resized to it."""

    def __init__(self, out: str, image_size: int = 96):
        from vlac.data.collect import FPS
        from vlac.data.lerobot_format import SIM_ACTION_NAMES, SIM_STATE_NAMES, make_features
        from vlac.data.writer import DatasetWriter

        self.root = Path(out)
        self.image_size = image_size
        feats = make_features(["main"], (image_size, image_size), SIM_STATE_NAMES, SIM_ACTION_NAMES)
        self.writer = DatasetWriter(self.root / "episodes", feats, fps=FPS, robot_type="rl")
        (self.root / "rl_steps").mkdir(parents=True, exist_ok=True)
        self._quarantined: list[str] = []

    def count(self) -> int:
        return self.writer.num_episodes

    def untrained(self, start: int) -> list[EpisodeRecord]:
        """Episodes ``start``.. of the run folder rebuilt for the learner (frames and states from the
        dataset, decoded tokens, log-probabilities and rewards from ``rl_steps/``): on a resumed run,
        those persisted before the stop but not yet trained on. An episode that cannot be read back
        is quarantined (see ``quarantined``) instead of stopping the run."""
        from vlac.data.dataset import LeRobotDataset
        from vlac.data.lerobot_format import DatasetError

        if start >= self.writer.num_episodes:
            return []
        ds = LeRobotDataset(self.root / "episodes")
        out = []
        for index in range(start, ds.num_episodes):
            try:
                out.append(self._rebuild(ds, index))
            except (DatasetError, OSError, ValueError, KeyError, TypeError) as e:  # a damaged file, whatever its kind
                self._quarantine(index, e)
        return out

    def _rebuild(self, ds, index: int) -> EpisodeRecord:
        from vlac.data.lerobot_format import DatasetError

        path = self.root / "rl_steps" / f"episode_{index:06d}.json"
        side = json.loads(path.read_text())
        ep = ds.episode(index)
        if len(side["steps_detail"]) != ep.length:
            raise DatasetError(f"{path} records {len(side['steps_detail'])} steps, the dataset episode has "
                               f"{ep.length} frames")
        rec = EpisodeRecord(side["robot"], side["task"], side["episode"], reason=side["reason"],
                            success=side["success"], done_step=side["done_step"])
        rec.steps = [Step(d["obs_id"], d["t_obs"], ep.images["main"][k], ep.state[k], d["sample"], d["t_action"],
                          d["reward"], d["p_done"], d.get("version"), d.get("history"), d.get("oracle_reward"))
                     for k, d in enumerate(side["steps_detail"])]
        return rec

    def _quarantine(self, index: int, error: Exception) -> None:
        """One line naming the episode, the file and the fix; the episode stays on disk untouched
        and is only left out of training (a damaged file must not end a long run)."""
        import sys

        from vlac.data.lerobot_format import DamagedEpisode

        reason = error.reason if isinstance(error, DamagedEpisode) else f"{type(error).__name__}: {error}"
        dataset = self.root / "episodes"
        line = (f"quarantined episode {index} of {dataset}: {reason}. It is left out of training and the run goes "
                f"on; `vlac data repair {dataset}` drops it from the dataset (its rl_steps record with it)")
        self._quarantined.append(line)
        print(line, file=sys.stderr, flush=True)

    def quarantined(self) -> list[str]:
        """The quarantine lines so far (a Ray actor's own output does not reach the console)."""
        return list(self._quarantined)

    def add(self, rec: EpisodeRecord) -> int:
        from vlac.data.episode import Episode

        steps = rec.acted
        if not steps:
            return -1
        index = self.writer.num_episodes
        side = {**rec.summary(), "dataset_index": index, "done_step": rec.done_step,
                "steps_detail": [{"obs_id": s.obs_id, "t_obs": s.t_obs, "t_action": s.t_action, "reward": s.reward,
                                  "p_done": s.p_done, "sample": s.sample, "version": s.version, "history": s.history,
                                  "oracle_reward": s.oracle_reward} for s in steps]}
        path = self.root / "rl_steps" / f"episode_{index:06d}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(side))
        os.replace(tmp, path)
        frames = [_fit_frame(s.image, self.image_size) for s in steps]
        flags = np.zeros(len(steps), dtype=bool)
        if rec.success:
            flags[-1] = True
        self.writer.add_episode(Episode(rec.task, {"main": np.stack(frames)},
                                        np.stack([s.state for s in steps]).astype(np.float32),
                                        np.stack([np.asarray(s.sample["action"], np.float32) for s in steps]), flags,
                                        {"behaviour": f"rl:{rec.robot}", "seed": rec.episode, "scene_variant": "default",
                                         "env_task": rec.robot, "success": bool(rec.success)}))
        return index

    def close(self) -> None:
        self.writer.close()


class Evaluator:
    """Success rate of given weights on fixed evaluation episodes (simulator flag; measurement)."""

    def __init__(self, checkpoint: str = "", threads: int = 1):
        set_threads(threads)
        self.actor = _load_actor(checkpoint)

    def evaluate(self, state: dict | None, version: int, tasks: list[str], episodes: int, seed: int,
                 max_steps: int, temperature: float = 0.0) -> dict:
        from vlac.actor.evaluate import ActorEvalConfig, run_batch
        from vlac.envs.rollout import episode_seed

        if state is not None:
            _apply_weights(self.actor, state)
        t0 = time.perf_counter()
        cfg = ActorEvalConfig(out="", max_steps=max_steps, critic="none", temperature=temperature)
        out = {"version": version, "temperature": temperature}
        for task in tasks:
            rolls = run_batch(self.actor, task, "default", [episode_seed(seed, task, i) for i in range(episodes)], cfg)
            out[task] = float(np.mean([r.success for r in rolls]))
        out["seconds"] = time.perf_counter() - t0
        return out


class LogService:
    """TensorBoard scalars plus JSON-lines logs (episodes, learner updates, evaluations) that the
    final report reads; the console view is the loop's progress bar."""

    def __init__(self, out: str):
        from torch.utils.tensorboard import SummaryWriter

        self.root = Path(out)
        self.tb = SummaryWriter(str(self.root / "tb"))

    def _append(self, name: str, row: dict) -> None:
        with open(self.root / f"{name}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def episode(self, summary: dict, n: int) -> None:
        self._append("episodes", {"n": n, **summary})
        self.tb.add_scalar(f"episode/return/{summary['robot']}", summary["return"], n)
        self.tb.add_scalar("episode/steps", summary["steps"], n)
        if summary.get("success") is not None:
            self.tb.add_scalar("episode/sim_success", float(summary["success"]), n)

    def scalars(self, group: str, stats: dict, step: int) -> None:
        self._append(group, {"step": step, **stats})
        for k, v in stats.items():
            if isinstance(v, (int, float)) and np.isfinite(v):
                self.tb.add_scalar(f"{group}/{k}", v, step)

    def evaluation(self, res: dict) -> None:
        self._append("eval", res)
        self.tb.add_scalar("eval/success", res["success"], res["episodes"])
        print(f"evaluation after {res['episodes']} episodes (policy update {res['version']}): "
              f"success {res['success']:.2f}", flush=True)

    def close(self) -> None:
        self.tb.close()

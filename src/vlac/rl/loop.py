"""``vlac rl``: the asynchronous real-world RL loop (paper 3.2.1), the one module that knows Ray.

The gateway (ZeroMQ) receives robots' observations; each waiting observation goes to an idle
inference replica (dynamic allocation); the critic worker scores every transition (reward) and
watches for done, which ends the robot's episode with a reset; each finished episode is written
to disk by the data service before the learner sees it; the learner runs token-level PPO on
batches of episodes and its new weights are pushed to the replicas while robots keep going.

    vlac rl --config configs/rl/reach.yaml --episodes 200 --out runs/rl-reach
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vlac.model.preprocess import run_pipeline
from vlac.rl.config import RLConfig
from vlac.rl.episodes import ORACLE_REWARDS, EpisodeRecord, trained_return
from vlac.rl.fleet import Fleet, FleetRules
from vlac.rl.learner import Learner
from vlac.rl.messages import ActReply, Score
from vlac.rl.report import held_still_warning
from vlac.rl.returns import ReturnBank
from vlac.rl.storage import LOCKSTEP_FPS, DataLink
from vlac.rl.workers import CriticWorker, Evaluator, InferenceWorker, LogService
from vlac.sim.robot import robot_command
from vlac.utils.imports import require


@dataclass
class InFlight:
    """A Ray call the loop waits on, and what it was made for: the requests, transitions or episodes
    it carries (retried, failed or requeued with it; for an evaluation, the episode count it was
    asked at) and, for inference, the fleet's batch of robots it answers."""

    ref: Any
    items: Any
    batch: list = field(default_factory=list)


class RLLoop:
    """The rollout side: gateway, robots' episodes, dispatch to Ray workers, learner schedule."""

    def __init__(self, cfg: RLConfig):
        from vlac.transport.link import is_loopback

        self.cfg = cfg
        if not cfg.ray_address or is_loopback(f"tcp://{cfg.ray_address}"):
            # A local cluster stays on 127.0.0.1: without this Ray resolves 127.0.0.1 to the
            # machine's external address, listens there, and a driver joining 127.0.0.1:PORT
            # dials the external address instead (read when ray is imported).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if not cfg.ray_address:
            # Ray runs workers at nice 15 by default; ours are the latency-critical part.
            os.environ.setdefault("RAY_worker_niceness", "0")
        elif "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get(
                "RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").exists()):
            # `ray start` turns token authentication on by default; a joining driver must present
            # the token, which Ray 2.60 does only when told to
            os.environ["RAY_AUTH_MODE"] = "token"
        self.ray = require("ray", extra="rl")
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        cfg.learner.out = str(self.out)
        cfg.learner.actor = cfg.actor
        (self.out / "rl_config.json").write_text(json.dumps({**asdict(cfg), "console_token": "(set)" if cfg.console_token
                                                            else ""}, indent=2))  # a secret stays out of the run folder
        self.stats = {k: [] for k in ("obs_to_action", "capture_to_action", "reward_latency", "assign", "critic",
                                      "inference_batch", "update_seconds", "eval_seconds")}
        self.counters = {"worker_restarts": 0, "learner_restarts": 0, "robot_restarts": 0, "requeued": 0,
                         "unsaved_episodes": 0, "unexecuted_actions": 0, "late_answers": 0,
                         "episodes_capped": 0, "request_errors": 0, "scoring_errors": 0, "learner_errors": 0,
                         "eval_errors": 0, "no_oracle_episodes": 0}
        self.buffer: list[EpisodeRecord] = []
        self.procs: list[subprocess.Popen] = []
        from vlac.actor.actor import Actor

        # Reference arms only: the simulator's reward and flag reach the learner in no other arm.
        self.oracle = cfg.learner.reward if cfg.learner.reward in ORACLE_REWARDS else ""
        self.scored = cfg.critic != "none"  # a reference arm may run without a critic
        self.rules = FleetRules(preprocess=run_pipeline(cfg.actor, cfg.critic), done_threshold=cfg.done_threshold,
                                done_patience=cfg.done_patience, done_min_value=cfg.done_min_value,
                                oracle=self.oracle, scored=self.scored,
                                max_steps=cfg.max_episode_steps or 10 * cfg.max_steps, max_mb=cfg.max_episode_mb,
                                history_len=Actor.history_length(cfg.actor),
                                wait_for_learner=cfg.wait_for_learner, takeover_after=cfg.takeover_after,
                                takeover_gain=cfg.takeover_gain, takeover_steps=cfg.takeover_steps,
                                takeovers_per_episode=cfg.takeovers_per_episode)
        self.fleet: Fleet | None = None  # the robots' episodes; made with the gateway it sends resets through
        # return points: the rule's (return-and-explore) and those an operator marks at the console
        self.returns = ReturnBank(cfg.returns) if cfg.return_explore == "auto" or cfg.console else None
        self.desk = None  # the operator console's commands and snapshots (--console)
        self.refresh = None  # the done probe retrained on the run's labelled episodes (--critic-refresh-every)
        self.next_critic: str | None = None  # a refreshed critic waiting to be swapped in
        if cfg.critic_refresh_every:
            from vlac.rl.refresh import CriticRefresh, RefreshRules

            self.refresh = CriticRefresh(self.out, cfg.critic, RefreshRules(
                cfg.critic_refresh_every, cfg.critic_labels, cfg.critic_refresh_share, cfg.critic_refresh_steps,
                cfg.critic_refresh_from, cfg.critic_label_fraction))
            self.counters["critic_refreshes"] = 0
        self.rng = np.random.default_rng(cfg.seed)
        self.critic_inflight = self.update_inflight = self.eval_inflight = self.weights_inflight = None
        self._last_eval: float | None = None
        self._evaluated_version: int | None = None  # the policy update of the last evaluation started

    # ------------------------------------------------------------------ set-up
    def _start_ray(self) -> None:
        ray = self.ray
        os.environ.setdefault("MUJOCO_GL", "egl")
        if self.cfg.ray_address:
            _check_reachable(self.cfg.ray_address)
            try:
                # workers started by the cluster's raylets do not inherit this process's environment
                ray.init(address=self.cfg.ray_address, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": {"MUJOCO_GL": os.environ["MUJOCO_GL"]}})
            except ConnectionError as e:
                raise SystemExit(f"error: could not join the Ray cluster at --ray-address {self.cfg.ray_address} "
                                 f"({e}); check the address `ray start --head` printed, that this machine "
                                 "reaches it, and RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH if the cluster uses token "
                                 "authentication") from None
        else:
            # "local": always a new cluster, never one a `ray start` left behind on this machine.
            # Ray turns token authentication on for it and says so on every start; it stays on,
            # the notice (a warning, not something the user has to act on) is not printed.
            import logging

            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            try:
                ray.init(address="local", num_cpus=self.cfg.num_cpus, include_dashboard=False,
                         _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
            except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its node does not come up
                if "timed out during startup" not in str(e):
                    raise
                ray.shutdown()
                raise SystemExit("error: Ray's local cluster did not come up within its 30 s (the machine is too busy "
                                 "to start it; nothing was collected yet): run again when the CPUs are freer, or "
                                 "start one with `ray start --head` and pass --ray-address HOST:PORT") from None
        remote = lambda cls, **kw: ray.remote(num_cpus=0.1, max_restarts=-1, **kw)(cls)  # noqa: E731
        lc = self.cfg.learner
        self.workers = [remote(InferenceWorker).remote(self.cfg.actor, lc.temperature, 0, 1, self.cfg.seed + k)
                        for k in range(self.cfg.inference_workers)]
        self._remote = remote
        critic = self.refresh.current if self.refresh is not None else self.cfg.critic  # a resumed run's newest
        if critic != self.cfg.critic:
            print(f"resuming with the refreshed critic {critic}", flush=True)
        self.critic = None if self.cfg.critic == "none" else remote(CriticWorker).remote(
            critic, 1, symmetric=self.cfg.critic_symmetric)
        self.learner = remote(Learner).remote(lc)
        fps = 1.0 / self.cfg.period if self.cfg.period > 0 else LOCKSTEP_FPS  # the dataset's frame rate
        self.data = DataLink(ray, str(self.out), self.rules.preprocess.camera, fps, self.cfg.data_timeout)
        # the evaluator runs the simulator (measurement only): no process for it when evaluations are off
        # (`--eval-episodes 0`, e.g. a real robot's run with no simulator on the machine)
        self.evaluator = remote(Evaluator).remote(self.cfg.actor, 1) if self.cfg.eval_episodes >= 1 else None
        if self.cfg.eval_mean and self.evaluator is not None:
            problem = ray.get(self.evaluator.mean_problem.remote())
            if problem:
                ray.shutdown()
                raise SystemExit(f"error: --eval-mean with --actor {self.cfg.actor}: {problem}")
        status = ray.get(self.learner.status.remote())
        self.version = status["step"]
        self.done_episodes = self.data.call("count")
        # A resumed run: episodes persisted before the stop but not yet trained on go first.
        self.buffer = self.data.call("untrained", status["episodes_seen"])
        for line in self.data.call("quarantined"):  # the data service's own output goes nowhere
            print(line, flush=True)
        if self.buffer:
            print(f"resuming at update {self.version}: {len(self.buffer)} persisted episodes not yet trained on "
                  "go into the next updates", flush=True)
        self.weights_ref = None
        if status["resumed"]:
            print(f"resuming {self.out}: learner at update {status['step']}, {self.done_episodes} episodes on disk")
            self._broadcast(self.learner.weights.remote())

    def _start_robot(self, k: int) -> subprocess.Popen:
        tasks = self.cfg.task_list
        shared = self.cfg.start_repeats > 1  # the robots of a task share their starts (one base seed)
        seed = self.cfg.seed * 1000 + self.done_episodes + (0 if shared else k) + 100 * self.counters["robot_restarts"]
        cmd = robot_command(self.gateway.address, tasks[k % len(tasks)], f"sim-{k}", self.cfg.max_steps,
                            self.cfg.period, seed, self.cfg.start_repeats)
        log = open(self.out / f"robot-sim-{k}.log", "a")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def _watch_robots(self) -> None:
        """A simulated robot that stopped while the run goes on, killed by a signal or stopped
        cleanly from outside (SIGTERM: it runs until stopped), is started again under the same id
        (its open episode is closed as aborted when the new one starts, and kept): the run never
        waits for robots that are gone. One that exits with an error (e.g. turned away at hello)
        stops the run with its log's name."""
        for k, p in enumerate(self.procs):
            code = p.poll()
            if code is None:
                continue
            if code <= 0:
                self.counters["robot_restarts"] += 1
                if self.returns is not None:  # the new process holds none of the old one's states
                    self.returns.forget(f"sim-{k}")
                how = f"was killed (signal {-code})" if code < 0 else "was stopped from outside the run"
                print(f"simulated robot sim-{k} {how}; starting it again", flush=True)
                self.procs[k] = self._start_robot(k)
            else:
                raise RuntimeError(f"simulated robot sim-{k} exited with code {code}; see {self.out}/robot-sim-{k}.log")

    # ------------------------------------------------------------------ events
    def attach(self, gateway) -> None:
        """The robots' link: the gateway whose events drive the fleet and which carries its resets."""
        self.gateway = gateway
        self.fleet = Fleet(self.rules, gateway.send_reset, self.counters, send_takeover=gateway.send_takeover)
        self.names: dict[str, tuple] = {}  # robot -> (state names, action names) from its hello

    def _on_event(self, ev, now: float) -> None:
        msg, fleet = ev.msg, self.fleet
        if ev.kind == "hello":  # how the dataset names its state and action columns
            self.names[ev.robot] = (msg.get("state_names"), msg.get("action_names"))
        elif ev.kind == "episode_start":
            fleet.episode_start(ev.robot, msg["task"], msg["episode"], msg.get("returned_to"), msg.get("scene"))
        elif ev.kind == "obs":
            fleet.observation(ev.robot, msg, now, self.gateway.robots[ev.robot].task)
        elif ev.kind == "episode_end":
            fleet.episode_end(ev.robot, msg["episode"], msg["reason"], msg.get("success"))
        elif ev.kind == "lost":
            fleet.lost(ev.robot)

    def _open_console(self) -> None:
        from vlac.rl.console import ConsoleServer, OperatorDesk

        cfg = self.cfg
        server = ConsoleServer(cfg.console, cfg.console_token)
        try:
            url = server.start() + (f"?token={cfg.console_token}" if cfg.console_token else "")
        except RuntimeError as e:
            self.gateway.close()
            self.ray.shutdown()
            raise SystemExit(f"error: {e}; choose another --console HOST:PORT (port 0 picks a free one)") from None
        self.desk = OperatorDesk(server, self.fleet, self.gateway, self.returns, cfg.console_step)
        (self.out / "console.txt").write_text(server.url + "\n")  # without the token
        print(f"operator console: {url}", flush=True)

    def _operate(self, now: float) -> None:
        """Operators: the actions of robots driven at the console go out; the console's commands
        are carried out and its snapshot refreshed."""
        for robot, obs_id, action, t_obs in self.fleet.operator_answers():
            self.gateway.send_action(robot, obs_id, action, t_obs=t_obs)
        if self.desk is not None:
            last = self._last_eval
            self.desk.tick(now, {"update": self.version, "updating": self.update_inflight is not None,
                                 "episodes": self.done_episodes, "budget": self.cfg.episodes,
                                 "buffer": len(self.buffer), "eval": None if last is None else round(last, 3)})

    # ------------------------------------------------------------------ dispatch and results
    def _learner_due(self) -> bool:
        """An update is running, its weights are not yet with the replicas, or enough finished
        episodes are waiting to start one."""
        return (self.update_inflight is not None or self.weights_inflight is not None
                or len(self.buffer) + len(self.fleet.finishing) >= self.cfg.episodes_per_update)

    def _dispatch(self, now: float) -> None:
        held = self.fleet.held(now, self.cfg.wait_for_learner and self._learner_due())
        for k, w in enumerate(self.workers):
            if self.inflight[k] is not None:
                continue
            batch = self.fleet.take(self.cfg.max_batch, held)
            if not batch:
                break
            reqs = [q for q in (self.fleet.request(x) for x in batch) if q is not None]
            if not reqs:
                continue
            self.stats["assign"] += [now - q.t_recv for q in reqs]
            self.inflight[k] = InFlight(w.act.remote(reqs), reqs, batch)

    def _collect_inference(self) -> None:
        ray = self.ray
        for k, item in enumerate(self.inflight):
            if item is None:
                continue
            ref, reqs, batch = item.ref, item.items, item.batch
            if ref not in self.ready:
                continue
            self.inflight[k] = None
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError:  # the replica crashed: Ray restarts it; retry the requests
                self.counters["worker_restarts"] += 1
                self.counters["requeued"] += len(batch)
                self.fleet.requeue(batch)
                if self.weights_ref is not None:
                    self.workers[k].set_weights.remote(*self.weights_ref)
                continue
            except Exception as e:  # noqa: BLE001 - a failed call fails its requests, never the loop
                results = [ActReply(q.robot, q.obs_id, error=_first_line(e)) for q in reqs]
            now = time.monotonic()
            if results[0].error is None:
                self.stats["inference_batch"].append(results[0].seconds)
            for req, res in zip(reqs, results):
                if res.error is not None:
                    self.counters["request_errors"] += 1
                    self.fleet.failed(res.robot, res.obs_id)
                    self.gateway.send_error(res.robot, "model-error", f"observation {res.obs_id} could not be "
                                            f"served: {res.error}", "obs")
                    continue
                step = self.fleet.answered(res.robot, res.obs_id, res.sample, res.version, now, req.t_recv)
                if step is None:  # the robot is gone or sent a newer observation meanwhile
                    continue
                self.gateway.send_action(res.robot, step.obs_id, res.sample["action"], t_obs=step.t_obs)
                self.stats["obs_to_action"].append(now - req.t_recv)
                # from the robot's capture stamp (wall clock): includes the time the message sat in
                # the socket; exact where robots share the gateway's clock (127.0.0.1)
                self.stats["capture_to_action"].append(step.t_action - step.t_obs)

    def _score(self) -> None:
        ray = self.ray
        if not self.scored:
            return
        if self.critic_inflight is not None and self.critic_inflight.ref in self.ready:
            ref, items = self.critic_inflight.ref, self.critic_inflight.items
            self.critic_inflight = None
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.fleet.to_score = items + self.fleet.to_score
                results = []
            except Exception as e:  # noqa: BLE001 - unscored transitions are not trained on; the run goes on
                results = [Score(it.key, error=_first_line(e)) for it in items]
            now = time.monotonic()
            for item, res in zip(items, results):  # results come in the order of the items
                if res.error is not None:
                    self.counters["scoring_errors"] += 1
                    continue
                self.stats["critic"].append(res.seconds)
                # transition complete (next observation read) -> reward and done known
                self.stats["reward_latency"].append(now - item.t_queued)
                self.fleet.scored(tuple(res.key), res.reward, res.p_done)
        if self.critic_inflight is None and self.fleet.to_score:
            items, self.fleet.to_score = self.fleet.to_score[:32], self.fleet.to_score[32:]
            self.critic_inflight = InFlight(self.critic.score.remote(items), items)

    def _refresh_critic(self) -> None:
        """Start a refresh of the done probe when due; swap a written one in between two scoring
        calls: a new critic worker on the new model (so a restart loads it too), the old one ended."""
        if self.refresh is None:
            return
        if self.done_episodes < self.cfg.episodes:
            new = self.refresh.poll(self.done_episodes)
            self.next_critic = new or self.next_critic
        if self.next_critic is None or self.critic_inflight is not None:
            return
        old, self.next_critic, path = self.critic, None, self.next_critic
        self.critic = self._remote(CriticWorker).remote(path, 1, symmetric=self.cfg.critic_symmetric)
        self.ray.kill(old)
        self.counters["critic_refreshes"] += 1
        self.bar.write(f"critic refreshed after {self.refresh.started_at} episodes: scoring with {path} "
                       f"from episode {self.done_episodes + 1}")

    def _finish_episodes(self) -> None:
        pending = {tuple(it.key[:2]) for it in self.fleet.to_score}
        if self.critic_inflight is not None:
            pending |= {tuple(it.key[:2]) for it in self.critic_inflight.items}
        for rec in list(self.fleet.finishing):
            if (rec.robot, rec.episode) in pending:
                continue
            self.fleet.finishing.remove(rec)
            try:
                index = self.data.add(rec, *self.names.get(rec.robot, (None, None)))  # on disk before anyone trains on it
            except Exception as e:  # noqa: BLE001 - one bad episode must not end the run or vanish
                self._keep_unsaved(rec, e)
                continue
            if index < 0:
                continue
            self.done_episodes += 1
            if self.refresh is not None:  # the operator's verdict; the simulator's flag only for a simulated operator
                self.refresh.label(index, rec.label, rec.success)
            auto = self.cfg.return_explore == "auto"
            point = self.returns.finished(rec, self.rng, auto) if self.returns is not None else None
            if point is not None and rec.robot in self.gateway.robots:  # return-and-explore
                self.gateway.send_return(rec.robot, point.episode, point.step)
            summary = rec.summary()
            if self.desk is not None:
                self.desk.finished(summary)
            self.log.episode(summary, self.done_episodes)
            self.bar.update(1)
            self._show(ret=f"{summary.get(trained_return(self.cfg.learner.reward)[0], float('nan')):.2f}",
                       reason=rec.reason, updates=self.version)
            if self.oracle and any(s.oracle_reward is None or s.oracle_success is None for s in rec.acted):
                self.counters["no_oracle_episodes"] += 1
                print(f"episode {rec.episode} of robot {rec.robot}: no simulator reward reported, so the "
                      f"{self.oracle} arm cannot train on it (kept on disk)", flush=True)
                continue
            self.buffer.append(rec)

    def _show(self, **fields) -> None:
        """The progress bar's fields, kept between calls (an update changes only ``updates``)."""
        self.postfix.update(fields)
        self.bar.set_postfix(self.postfix)

    def _keep_unsaved(self, rec: EpisodeRecord, err: Exception) -> None:
        """An episode the data service could not write is kept raw in OUT/unsaved/ (frames, states,
        actions, rewards) and counted, and is not trained on; the run goes on."""
        self.counters["unsaved_episodes"] += 1
        folder = self.out / "unsaved"
        folder.mkdir(exist_ok=True)
        path = folder / f"{rec.robot}-episode{rec.episode}-{int(time.time())}.npz"
        steps = rec.steps
        np.savez_compressed(path, task=rec.task, reason=rec.reason,
                            images=np.array([s.image for s in steps], dtype=object),
                            states=np.array([s.state for s in steps], dtype=object),
                            actions=np.array([None if s.sample is None else s.sample["action"] for s in steps], dtype=object),
                            rewards=np.array([s.reward for s in steps], dtype=object))
        print(f"episode {rec.episode} of robot {rec.robot} could not be persisted ({type(err).__name__}: "
              f"{str(err).splitlines()[0] if str(err) else ''}); kept raw in {path}, not trained on", flush=True)

    def _learn(self, drain: bool = False) -> None:
        ray = self.ray
        if self.update_inflight is not None and self.update_inflight.ref in self.ready:
            ref, episodes = self.update_inflight.ref, self.update_inflight.items
            self.update_inflight = None
            try:
                stats = ray.get(ref)
            except ray.exceptions.RayActorError:  # killed: Ray restarts it from its last checkpoint
                self.counters["learner_restarts"] += 1
                self.buffer = episodes + self.buffer
                return
            except Exception as e:  # noqa: BLE001 - the episodes stay on disk; the run goes on
                self.counters["learner_errors"] += 1
                print(f"PPO update on {len(episodes)} episodes failed ({_first_line(e)}); they stay in "
                      f"{self.out / 'episodes'} and are not trained on", flush=True)
                return
            self.version = stats["update"]
            self._show(updates=self.version)
            self.stats["update_seconds"].append(stats["seconds"])
            self.log.scalars("learner", stats, self.version)
            self.weights_inflight = self.learner.weights.remote()
        if self.weights_inflight is not None and self.weights_inflight in self.ready:
            ref, self.weights_inflight = self.weights_inflight, None
            try:
                self._broadcast(ref)
            except ray.exceptions.RayActorError:  # killed after its update: ask the restarted one
                self.counters["learner_restarts"] += 1  # (it loads the checkpoint that update wrote)
                self.weights_inflight = self.learner.weights.remote()
        if self.update_inflight is None and self.buffer and (len(self.buffer) >= self.cfg.episodes_per_update or drain):
            # Robots never wait for the learner, so episodes can pile up while an update runs: the
            # next update takes all of them (up to max_episodes_per_update), so none is left untrained.
            n = max(self.cfg.episodes_per_update, self.cfg.max_episodes_per_update)
            episodes, self.buffer = self.buffer[:n], self.buffer[n:]
            self.update_inflight = InFlight(self.learner.update.remote([self._for_learner(e) for e in episodes]), episodes)

    @staticmethod
    def _for_learner(rec: EpisodeRecord) -> EpisodeRecord:
        """What the learner gets of an episode: the simulator's success flag never (it is for
        measurement); its rewards only in the oracle arms, the only ones that record them."""
        return replace(rec, success=None)

    def _broadcast(self, weights_ref) -> None:
        state, version = self.ray.get(weights_ref)
        state_ref = self.ray.put(state)
        self.weights_ref = (state_ref, version)
        for w in self.workers:
            w.set_weights.remote(state_ref, version)

    def _refs(self) -> list:
        items = [x for x in self.inflight if x is not None]
        items += [x for x in (self.critic_inflight, self.update_inflight, self.eval_inflight) if x is not None]
        return [x.ref for x in items] + ([self.weights_inflight] if self.weights_inflight is not None else [])

    def _wait(self, timeout: float = 0.005) -> None:
        """Block briefly on whichever comes first, a robot message or a finished Ray call (a
        busy loop here would take a CPU core from the workers)."""
        refs = self._refs()
        if self.gateway.poll_ready(0):
            self.ready = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
            return
        if refs:
            done, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
            if done:
                self.ready = set(self.ray.wait(refs, num_returns=len(refs), timeout=0)[0])
                return
        self.ready = set()
        self.gateway.poll_ready(int(timeout * 1000))

    def _eval_done(self) -> None:
        ref, episodes = self.eval_inflight.ref, self.eval_inflight.items
        self.eval_inflight = None
        try:
            res = self.ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a failed evaluation is reported, never ends the run
            self.counters["eval_errors"] += 1
            print(f"evaluation at episode {episodes} failed ({_first_line(e)})", flush=True)
            return
        res["episodes"] = episodes
        res["eval_episodes"] = self.cfg.eval_episodes * len(self.cfg.task_list)  # behind the mean: its noise
        self.stats["eval_seconds"].append(res.get("seconds", 0.0))
        res["success"] = self._last_eval = float(np.mean([res[t] for t in self.cfg.task_list]))
        self.log.evaluation(res)

    def _evaluate(self, final: bool = False) -> None:
        """Success on fixed evaluation episodes at the start, every ``eval_every`` episodes and at
        the end (``final`` waits for it). A due evaluation of the policy the last one evaluated (no
        update finished since: a learner slower than ``eval_every`` episodes, or an evaluation that
        ran into the next one's time) moves to the next multiple: it would draw the same point again;
        at the end it is left out."""
        if self.cfg.eval_episodes < 1:
            return
        if self.eval_inflight is not None and (final or self.eval_inflight.ref in self.ready):
            self._eval_done()
        if self.eval_inflight is None and (final or self.done_episodes >= self.next_eval):
            state, version = self.weights_ref if self.weights_ref else (None, self.version)
            if version == self._evaluated_version:
                if final:  # no update since the last evaluation (e.g. a finished run started again): it stands
                    return
                skipped, self.next_eval = self.next_eval, next_evaluation(self.done_episodes, self.cfg.eval_every)
                self.bar.write(f"evaluation at {skipped} episodes skipped: policy update {version} was evaluated "
                               f"already (no update since); next at {self.next_eval}")
                return
            self._evaluated_version = version
            keep = str(self.out / "evaluated" / f"episodes-{self.done_episodes:04d}") if self.cfg.keep_evaluated else ""
            call = self.evaluator.evaluate.remote(state, version, self.cfg.task_list, self.cfg.eval_episodes,
                                                  self.cfg.eval_seed, self.cfg.max_steps, self.cfg.eval_temperature,
                                                  keep, self.cfg.eval_mean)
            self.eval_inflight = InFlight(call, self.done_episodes)
            self.next_eval = next_evaluation(self.done_episodes, self.cfg.eval_every)
            if final:
                self._eval_done()

    def _write_report(self, failed: bool) -> None:
        """report.md and the plots, also after a stop by error, Ctrl-C or SIGTERM (what was
        collected until then); a report that cannot be drawn then never hides why the run stopped."""
        from vlac.rl.report import write_report

        if not failed:
            write_report(self.out)
            return
        try:
            write_report(self.out)
        except Exception as e:  # noqa: BLE001 - the run's own error is the one to raise
            print(f"the report of the stopped run could not be written ({_first_line(e)}); "
                  f"`vlac rl report {self.out}` retries", flush=True)

    # ------------------------------------------------------------------ main
    def run(self) -> dict:
        from vlac.transport.gateway import Gateway
        from vlac.transport.link import CurveKeys, load_robot_keys

        cfg = self.cfg
        self._start_ray()
        keys = CurveKeys.load(cfg.keys) if cfg.keys else None
        allowed = load_robot_keys(cfg.robot_keys) or None
        from vlac.actor.actor import Actor

        action_t, state_t = Actor.templates(cfg.actor)
        # A robot whose state or action size does not fit the actor is turned away at hello (error
        # reply, counted) instead of failing inside an inference worker.
        self.attach(Gateway(cfg.bind, keys=keys, allowed_clients=allowed, lost_after_s=cfg.lost_after,
                            expect_dims=(state_t.dim, action_t.dim), expect_camera=self.rules.preprocess.camera))
        (self.out / "gateway.txt").write_text(self.gateway.address + "\n")
        if cfg.console:
            self._open_console()
        print(f"gateway listening on {self.gateway.address}; add robots with "
              f"`vlac robot sim --task TASK --connect {self.gateway.address}`", flush=True)
        self.log = LogService(str(self.out))
        self.inflight = [None] * len(self.workers)
        self.critic_inflight = self.update_inflight = self.eval_inflight = self.weights_inflight = None
        self.ready: set = set()
        # a resumed run whose policy was already evaluated (the last record is this update's)
        # goes on to the next evaluation instead of repeating it on the same weights
        self.next_eval, self._last_eval = first_evaluation(self.out / "eval.jsonl", self.version,
                                                           self.done_episodes, self.cfg.eval_every)
        if self._last_eval is not None:
            self._evaluated_version = self.version
        self.procs = [self._start_robot(k) for k in range(cfg.robots)]
        self.bar = tqdm(total=cfg.episodes, initial=self.done_episodes, desc="rl", unit="ep")
        self.postfix: dict = {}
        t_start = time.monotonic()
        start_episodes = self.done_episodes
        failed = True
        # SIGTERM (a scheduler, `kill`, systemd) stops the run as Ctrl-C does: open episodes saved
        _TERMINATED.clear()
        on_term = signal.signal(signal.SIGTERM, _stop_on_sigterm)
        try:
            while self.done_episodes < cfg.episodes:
                self._wait()
                now = time.monotonic()
                for ev in self.gateway.poll(timeout_ms=0):
                    self._on_event(ev, now)
                self._dispatch(time.monotonic())
                self._operate(now)
                self._collect_inference()
                self._score()
                self._finish_episodes()
                self._learn()
                self._evaluate()
                self._refresh_critic()
                self._watch_robots()
            # train on every finished episode still waiting (robots are stopped first: episodes
            # beyond the budget are not started), then evaluate
            for p in self.procs:
                p.send_signal(signal.SIGTERM)
            self._learn(drain=True)
            while self.update_inflight is not None or self.buffer or self.weights_inflight is not None:
                self._wait()
                self._learn(drain=True)
            self._evaluate(final=True)
            if self.refresh is not None:
                self.refresh.poll(self.done_episodes, final=True)
            failed = False
        except SystemExit:
            if _TERMINATED:  # Ray turns an exception raised inside its waits into SystemExit(1)
                raise SystemExit(128 + _TERMINATED[-1]) from None
            raise
        finally:
            signal.signal(signal.SIGTERM, on_term)
            self.bar.close()
            for p in self.procs:
                p.send_signal(signal.SIGTERM)
            for p in self.procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            wall = time.monotonic() - t_start
            if self.desk is not None:
                self.desk.server.stop()
            self.gateway.close()
            if self.refresh is not None:
                self.refresh.stop()
            if failed:  # an error or Ctrl-C: keep what the robots collected, and the run's figures
                self._save_open_episodes()
            summary = self._summary(wall, self.done_episodes - start_episodes)
            (self.out / "loop_stats.json").write_text(json.dumps(summary, indent=1))
            self.log.close()
            self._write_report(failed)
            behind = held_still_warning(summary)
            if behind:
                print(f"warning: the loop did not keep up with the robots. {behind}", flush=True)
            # Ray is shut down here, on every path: left to its exit hook after a stop by SIGTERM,
            # its shutdown could end the process with code 1 instead of the stop's own code.
            self.ray.shutdown()
        return summary

    def _save_open_episodes(self) -> None:
        """On a run that stops abnormally: every open episode is closed as aborted and, with those
        still being scored, persisted (or kept raw in OUT/unsaved/ if the data service is gone)."""
        self.fleet.close_all("abort")
        for rec in self.fleet.finishing:
            try:
                index = self.data.add(rec, *self.names.get(rec.robot, (None, None)), timeout_s=60)
                print(f"episode {rec.episode} of robot {rec.robot} ({len(rec.steps)} steps) "
                      + (f"saved as episode {index}" if index >= 0 else "not saved: no step of it was scored yet")
                      + " before stopping", flush=True)
            except BaseException as e:  # noqa: BLE001 - whatever stopped the run may have taken Ray with it
                self._keep_unsaved(rec, e)
                continue
            if index < 0:
                continue
            self.done_episodes += 1  # episodes.jsonl keeps one line per stored episode, `n` its place in the dataset
            # no label for the critic's refresh: an episode cut by the stop has no outcome, success or failure
            try:
                self.log.episode(rec.summary(), self.done_episodes)
            except Exception as e:  # noqa: BLE001 - the episode is on disk; its summary line is secondary
                print(f"episode {index} has no line in episodes.jsonl: {_first_line(e)}", flush=True)
        self.fleet.finishing = []

    def _summary(self, wall: float, episodes: int) -> dict:
        def pct(xs, q):
            return float(np.percentile(xs, q)) if xs else float("nan")

        s = self.stats
        idle = self.fleet.idle_fractions(time.monotonic()) if self.fleet else {}
        return {"wall_seconds": wall, "episodes": episodes, "episodes_per_hour": 3600 * episodes / max(wall, 1e-9),
                "obs_to_action_median": pct(s["obs_to_action"], 50), "obs_to_action_p99": pct(s["obs_to_action"], 99),
                "capture_to_action_median": pct(s["capture_to_action"], 50),
                "capture_to_action_p99": pct(s["capture_to_action"], 99),
                "assign_median": pct(s["assign"], 50), "assign_p99": pct(s["assign"], 99),
                "critic_seconds_per_pair": pct(s["critic"], 50), "reward_latency_median": pct(s["reward_latency"], 50),
                "reward_latency_p99": pct(s["reward_latency"], 99), "updates": len(s["update_seconds"]),
                "update_seconds_median": pct(s["update_seconds"], 50), "robot_idle_fraction": idle,
                "learner_hold_s": float(np.sum(self.fleet.holds)) if self.fleet else 0.0,
                # busy seconds of each stage per finished episode (its workers' own clocks): set
                # against what each costs alone (benchmarks/bench_stages.py) and the wall clock
                "seconds_per_episode": {k: float(np.sum(s[src])) / max(episodes, 1) for k, src in
                                        (("actor", "inference_batch"), ("critic", "critic"),
                                         ("learner", "update_seconds"), ("evaluation", "eval_seconds"))}
                | {"wall": wall / max(episodes, 1)},
                "data_service_restarts": self.data.restarts,
                "gateway_errors": dict(self.gateway.errors), "refused_handshakes": self.gateway.admitted.refused,
                **(self.returns.summary() if self.returns is not None else {}),
                **(self.desk.counters if self.desk is not None else {}), **self.counters}


_TERMINATED: list[int] = []  # the signal that stopped the run, if one did


def next_evaluation(done_episodes: int, eval_every: int) -> int:
    """The episode count of the evaluation after one made at ``done_episodes``: the next multiple of
    ``eval_every``, so that runs (resumed ones too, and ones whose evaluation started a few episodes
    late) are measured at the same points, 0 / 50 / 100 / ..."""
    every = max(int(eval_every), 1)  # 0 (or less): after every episode, as before, not a division by zero
    return (done_episodes // every + 1) * every


def first_evaluation(log: Path, version: int, done_episodes: int, eval_every: int) -> tuple[int, float | None]:
    """The episode count of a run's first evaluation and the last success on record: at once for a
    new run, and for a resumed one whose policy (``version``) the last record of ``log`` already
    evaluated, at the next multiple of ``eval_every`` after that record (it was the evaluation after
    the last update; repeating it on the same weights costs an evaluation and draws the same point twice)."""
    from vlac.rl.report import read_log

    records = read_log(log)
    last = records[-1] if records else None
    if last is None or last.get("version") != version:
        return done_episodes, None
    return next_evaluation(int(last["episodes"]), eval_every), last.get("success")


def _stop_on_sigterm(signum, frame) -> None:
    _TERMINATED.append(signum)
    raise SystemExit(128 + signum)


def _first_line(err: Exception) -> str:
    """``Type: first line`` of an error (a Ray task error's own first line, not its traceback)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming the address, when nothing listens at a HOST:PORT Ray address (Ray
    itself retries for minutes). Other forms ("auto", "ray://...") are left to Ray."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise SystemExit(f"error: nothing answers at --ray-address {address} ({e}); start the cluster with "
                         "`ray start --head --port PORT` (add --node-ip-address 127.0.0.1 to keep it on this "
                         "machine) and pass the address it prints") from None


def run(cfg: RLConfig) -> dict:
    return RLLoop(cfg).run()

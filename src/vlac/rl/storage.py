"""The RL loop's storage (paper 3.2.1): the data service that persists every finished episode
before it is trained on, and the loop's handle on it. Apart from the model workers
(``vlac.rl.workers``) so that its Ray process imports no torch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from vlac.model.preprocess import Preprocess
from vlac.rl.episodes import EpisodeRecord, Step


LOCKSTEP_FPS = 80.0
"""The RL dataset's frame rate when robots run in lock-step (``--period 0``, simulation only): the
simulator's control rate (`vlac.sim.env.FPS`); real robots' rate is 1 / their period."""


class DataService:
    """Persists every finished episode, in the LeRobot layout (what the robot saw and did: every
    camera, its state and action under the names the robot announced, the simulator's success flag
    when there is one) plus the RL record (rewards, done probabilities, decoded tokens and
    log-probabilities) in ``OUT/rl_steps/``; returns once it is on disk. Frames are stored as the
    run's observation pipeline kept them. The dataset's schema comes from the first episode stored
    (or from the dataset a resumed run appends to)."""

    def __init__(self, out: str, camera: str = "", fps: float = LOCKSTEP_FPS):
        from vlac.data.lerobot_format import read_json

        self.root = Path(out)
        self.camera, self.fps = camera, fps
        self.writer = None
        info = self.root / "episodes" / "meta" / "info.json"
        if info.is_file():  # a resumed run appends to its own dataset, whatever robot comes first
            self._open(read_json(info)["features"])
        (self.root / "rl_steps").mkdir(parents=True, exist_ok=True)
        self._quarantined: list[str] = []
        self._first_add = True

    def _open(self, features: dict) -> None:
        from vlac.data.writer import DatasetWriter

        self.writer = DatasetWriter(self.root / "episodes", features, fps=self.fps, robot_type="rl")

    def _features(self, rec: EpisodeRecord, state_names: list | None, action_names: list | None) -> dict:
        from vlac.data.lerobot_format import make_features

        first = rec.executed[0]
        state_names = state_names or [f"state_{i}" for i in range(len(first.state))]
        action_names = action_names or [f"action_{i}" for i in range(len(first.action))]
        return make_features(list(first.views), first.image.shape[:2], state_names, action_names,
                             with_success=rec.success is not None)

    def count(self) -> int:
        return 0 if self.writer is None else self.writer.num_episodes

    def untrained(self, start: int) -> list[EpisodeRecord]:
        """Episodes ``start``.. of the run folder rebuilt for the learner (frames and states from the
        dataset, decoded tokens, log-probabilities and rewards from ``rl_steps/``): on a resumed run,
        those persisted before the stop but not yet trained on. An episode that cannot be read back
        is quarantined (see ``quarantined``) instead of stopping the run."""
        from vlac.data.dataset import LeRobotDataset
        from vlac.data.lerobot_format import DatasetError

        if start >= self.count():
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
                            success=side["success"], done_step=side["done_step"], scene=side.get("scene"),
                            start=tuple(side["start"]) if side.get("start") else None)
        view = Preprocess(camera=self.camera).view(ep.images)  # the camera the run's models read
        rec.steps = [Step(d["obs_id"], d["t_obs"], view[k], ep.state[k], d["sample"], d["t_action"],
                          d["reward"], d["p_done"], d.get("version"), d.get("history"), d.get("oracle_reward"),
                          d.get("oracle_success"), d.get("operator_action"))
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

    def add(self, rec: EpisodeRecord, state_names: list | None = None, action_names: list | None = None) -> int:
        """Store a finished episode; ``state_names`` / ``action_names``: what its robot announced."""
        from vlac.data.episode import Episode
        from vlac.data.lerobot_format import SUCCESS_KEY

        steps = rec.executed  # the policy's steps and an operator's, in order
        if not steps:
            return -1
        if self.writer is None:
            self._open(self._features(rec, state_names, action_names))
        index = self.writer.num_episodes
        if self._first_add and index > 0 and self._stored_as_last(rec, index - 1):
            return index - 1  # a killed service committed it just before it died (see DataLink)
        self._first_add = False
        side = {**rec.summary(), "dataset_index": index, "done_step": rec.done_step,
                "steps_detail": [{"obs_id": s.obs_id, "t_obs": s.t_obs, "t_action": s.t_action, "reward": s.reward,
                                  "p_done": s.p_done, "sample": s.sample, "version": s.version, "history": s.history,
                                  "oracle_reward": s.oracle_reward, "oracle_success": s.oracle_success,
                                  "operator_action": s.operator_action}
                                 for s in steps]}
        path = self.root / "rl_steps" / f"episode_{index:06d}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(side))
        os.replace(tmp, path)
        images = {cam: np.stack([s.views[cam] for s in steps]) for cam in steps[0].views}
        flags = None
        if SUCCESS_KEY in self.writer.features:
            flags = np.zeros(len(steps), dtype=bool)
            flags[-1] = bool(rec.success)
        self.writer.add_episode(Episode(rec.task, images, np.stack([s.state for s in steps]).astype(np.float32),
                                        np.stack([np.asarray(s.action, np.float32) for s in steps]), flags,
                                        {"behaviour": f"rl:{rec.robot}", "seed": rec.episode, "scene_variant": "default",
                                         "env_task": rec.robot, "success": rec.success}))
        return index

    def _stored_as_last(self, rec: EpisodeRecord, index: int) -> bool:
        """Whether dataset episode ``index`` is ``rec``: its rl_steps record names the same robot and
        episode, with the same steps observed at the same times."""
        path = self.root / "rl_steps" / f"episode_{index:06d}.json"
        try:
            side = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return (side.get("robot"), side.get("episode")) == (rec.robot, rec.episode) and \
            [(d["obs_id"], d["t_obs"]) for d in side["steps_detail"]] == [(s.obs_id, s.t_obs) for s in rec.executed]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class DataLink:
    """The loop's handle on the ``DataService`` actor. Calls wait in one-second slices so a stop
    (Ctrl-C, SIGTERM) is answered while they wait. ``add`` returns once the episode is on disk; a
    service that has not stored it within ``timeout_s`` (a stalled video encoder held a run for good
    once, its process idle) is killed, and once its process is gone it is started again on the same
    folder, whose writer drops a half-written episode, and the episode is offered once more (kept, not
    stored twice, where the killed service had committed it); a second stall raises ``TimeoutError``
    (the loop then keeps the episode raw). ``restarts`` counts the restarts."""

    def __init__(self, ray, out: str, camera: str = "", fps: float = LOCKSTEP_FPS, timeout_s: float = 300.0):
        self.ray, self.args, self.timeout_s = ray, (out, camera, fps), timeout_s
        self.restarts = 0
        self.service = self._start()

    def _start(self):
        return self.ray.remote(num_cpus=0.1)(DataService).remote(*self.args)

    def get(self, ref, timeout_s: float | None = None):
        """``ray.get`` in one-second slices; ``TimeoutError`` after ``timeout_s`` (None: no limit)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.ray.wait([ref], timeout=1.0 if deadline is None else
                                min(1.0, max(deadline - time.monotonic(), 0.0)))[0]:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"the data service did not answer within {timeout_s:g} s")
        return self.ray.get(ref)

    def call(self, method: str, *args):
        """A service method's answer, without a time limit (still answering a stop)."""
        return self.get(getattr(self.service, method).remote(*args))

    def add(self, rec: EpisodeRecord, state_names: list | None = None, action_names: list | None = None,
            timeout_s: float | None = None) -> int:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        for then in ("storing the episode again", "giving the episode up to the loop"):
            ref = self.service.add.remote(rec, state_names, action_names)
            try:
                return self.get(ref, timeout_s)
            except TimeoutError:
                index = self._restart(ref)
                print(f"the data service stalled storing episode {rec.episode} of robot {rec.robot} (no answer in "
                      f"{timeout_s:g} s); restarted it on {self.args[0]}"
                      + (f", the episode was stored as {index} meanwhile" if index is not None else f", {then}"),
                      flush=True)
                if index is not None:
                    return index
        raise TimeoutError(f"the data service stalled twice storing episode {rec.episode} of robot {rec.robot}")

    def _restart(self, ref) -> int | None:
        """Kill the service, wait until its process is gone (so two writers never share the folder),
        start a new one; the pending call's episode index where it finished after all."""
        self.ray.kill(self.service)
        self.restarts += 1
        try:
            index = self.ray.get(ref, timeout=120)  # an answer, or the error that the actor died
        except Exception:  # noqa: BLE001 - the actor died (the usual case), or the call failed: not stored
            index = None
        self.service = self._start()
        return index

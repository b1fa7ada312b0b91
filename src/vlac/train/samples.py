"""Training samples for the critic's objectives, drawn from any dataset in the LeRobot layout.

Progress and done labels come from successful episodes only (paper 3.1.1). With
``done_labels="flag"`` (not in the paper) done labels come from the episodes' per-frame success flag
instead of the frame's position: done where the flag is on, not done anywhere before the first
success, so the frames just short of the goal, which the position rule leaves unlabelled, are
taught as not done. Optionally
(``done_failed``, not in the paper) the not-done half of a done pair comes from the second half
of a failed episode, at frames where the simulator's flag is off: states that look late in a task
but are not done, which successful episodes alone never show. Each call returns prompts (text +
images) and answers, ready for ``VLM.encode``.

Policy rollouts (``load_rollouts``, not in the paper): the actor's own episodes, saved by
``vlac critic fidelity --rollouts-only``, labelled only with what a person watching them could
give: whether each succeeded and, if so, the moment it did. A successful rollout up to that moment
joins the successful episodes; a failed rollout, and what follows a success, become "still"
trajectories whose pairs are labelled 0 (``still_share`` of the progress groups): motion without
progress, the paper's stagnation samples, so moving the hand is not mistaken for progress.
With ``done_rollouts`` a share of the done pairs comes from the rollouts too, matched by task: a
frame of a success's first done segment (from the moment it succeeded until it stops being done,
as an operator marking it would) against a late frame of a failed rollout of the same task. Those
are the states the loop must tell apart (the arm raised beside the lever it missed, against the
lever pulled), which expert episodes never show side by side.

    >>> src = SampleSource([LeRobotDataset("runs/train")])
    >>> prompts, answers = src.progress(rng, groups=8)          # 8 joint groups = 32 samples
    >>> prompts, answers = src.done(rng, pairs=16)              # 16 balanced pairs
    >>> prompts, answers = src.done_goal(rng, pairs=16)         # the same, led by a goal image
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlac.critic import labels as L
from vlac.data.dataset import LeRobotDataset
from vlac.model import prompts as P
from vlac.model.vlm import Prompt


@dataclass
class Trajectory:
    """One successful episode's frames from the critic's camera."""

    task: str
    frames: np.ndarray  # (T+1, H, W, 3) uint8
    source: str  # "dataset-path#episode"
    flags: np.ndarray | None = None  # (T+1,) bool per-frame success flag, when the dataset has one

    @property
    def last(self) -> int:
        return len(self.frames) - 1


def iter_episodes(datasets: list[LeRobotDataset], camera: str | None = None, successful_only: bool = True,
                  min_frames: int = 4, progress: bool = True, failed_only: bool = False, first: int = 0,
                  only: set[int] | None = None):
    """Yield (dataset, index, episode, camera key) for every (successful, or with ``failed_only``
    failed) episode long enough, among each dataset's first ``first`` episodes (0: all) and, given
    ``only``, among those indices; the others are skipped before their frames are decoded."""
    for ds in datasets:
        key = camera or ds.camera_keys[0]
        if key not in ds.camera_keys:
            raise ValueError(f"camera {key!r} not in dataset {ds.root} (cameras: {ds.camera_keys})")
        count = min(first, ds.num_episodes) if first > 0 else ds.num_episodes
        for i in tqdm(range(count), desc=f"load {ds.root.name}", unit="ep", disable=not progress):
            meta = ds.meta(i)
            ok = meta.get("success", False)
            if (successful_only and not ok) or (failed_only and ok) or int(meta["length"]) < min_frames or (
                    only is not None and i not in only):
                continue
            yield ds, i, ds.episode(i), key


def load_trajectories(datasets: list[LeRobotDataset], camera: str | None = None, successful_only: bool = True,
                      min_frames: int = 4, progress: bool = True) -> list[Trajectory]:
    """Decode every (successful) episode's frames of ``camera`` (default: each dataset's first)."""
    return [Trajectory(ep.task, ep.images[key], f"{ds.root}#{i}", ep.success)
            for ds, i, ep, key in iter_episodes(datasets, camera, successful_only, min_frames, progress)]


def load_failed_late_frames(datasets: list[LeRobotDataset], camera: str | None = None,
                            progress: bool = True, first: int = 0) -> list[Trajectory]:
    """Failed episodes' second halves, only the frames whose simulator flag is off (hard not-done
    examples), among each dataset's first ``first`` episodes (0: all). Episodes without a per-frame
    flag are skipped."""
    out = []
    for ds, i, ep, key in iter_episodes(datasets, camera, successful_only=False, progress=progress,
                                        failed_only=True, first=first):
        if ep.success is None:
            continue
        late = np.arange(len(ep.success)) >= len(ep.success) // 2
        keep = np.flatnonzero(late & ~ep.success)
        if len(keep):
            out.append(Trajectory(ep.task, ep.images[key][keep], f"{ds.root}#{i}"))
    return out


@dataclass
class Rollouts:
    """Policy rollouts split for training: successes up to their success moment, still trajectories
    (failures, and the frames after a success), the failures' late halves (hard not-done frames)
    and each success's first done segment (done frames of the policy's own making)."""

    successes: list[Trajectory]
    still: list[Trajectory]
    failed_late: list[Trajectory]
    done_segments: list[Trajectory] = field(default_factory=list)
    """Each success's approach (the last 20 % of its frames before the success moment, flag off)
    and its first done segment (flag on, from the success moment until the flag is lost)."""

    def summary(self) -> str:
        return (f"{len(self.successes)} successful up to their success moment, {len(self.still)} still "
                f"trajectories ({sum(len(t.frames) for t in self.still)} frames), {len(self.done_segments)} done "
                f"segments ({sum(int(t.flags.sum()) for t in self.done_segments)} frames)")


def split_rollout(rollouts: Rollouts, task: str, frames: np.ndarray, flags: np.ndarray, source: str,
                  approach: bool = True) -> None:
    """Add one policy episode, labelled only by episode (success, and the first frame it is done), to
    ``rollouts``: a success up to its success moment, the frames after it as still, its approach
    (unless ``approach`` is off: when the flag does not mark the moment) and first done segment; a
    failure as still, and its second half as hard not-done frames."""
    if flags.any():
        k = int(np.argmax(flags))
        if k >= 1:
            rollouts.successes.append(Trajectory(task, frames[:k + 1], source, np.arange(k + 1) >= k))
        if len(frames) - k > 1:
            rollouts.still.append(Trajectory(task, frames[k:], source + "#after-success"))
        lost = np.flatnonzero(~flags[k:])
        end = k + (lost[0] if len(lost) else len(frames) - k)
        start = k - L.near_miss_count(k) if k and approach else k  # the approach: just short of the moment
        rollouts.done_segments.append(Trajectory(task, frames[start:end], source + "#done",
                                                 np.arange(start, end) >= k))
    else:
        rollouts.still.append(Trajectory(task, frames, source))
        half = len(frames) // 2
        rollouts.failed_late.append(Trajectory(task, frames[half:], source + "#late"))


def load_rollouts(folders: list[str], progress: bool = True) -> Rollouts:
    """Every ``rollouts/POLICY/TASK/SEED.npz`` under each folder (a `vlac critic fidelity --out`).

    Only episode-level labels are used: success, and the first frame the episode is done (the
    moment an operator would mark; here the first frame of the simulator's flag). The per-frame
    distance to the goal saved beside the frames is never read."""
    from vlac.data.tasks import TASKS

    paths = []
    for folder in folders:
        root = Path(folder) / "rollouts"
        found = sorted(root.glob("*/*/*.npz")) if root.is_dir() else []
        if not found:
            raise FileNotFoundError(f"--rollouts {folder}: no rollouts/POLICY/TASK/SEED.npz there; write some with "
                                    "`vlac critic fidelity --rollouts-only --seed S --out DIR`")
        paths += found
    out = Rollouts([], [], [])
    for path in tqdm(paths, desc="load rollouts", unit="ep", disable=not progress):
        try:
            with np.load(path) as z:
                frames, flags = z["frames"], np.asarray(z["flags"], bool)
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"rollout {path} cannot be read ({e}); delete it or collect it again") from None
        if path.parent.name not in TASKS:
            raise ValueError(f"rollout {path}: {path.parent.name!r} is not a simulated task; the folder layout is "
                             "rollouts/POLICY/TASK/SEED.npz as `vlac critic fidelity` writes it")
        # prompts carry the instruction the datasets carry, not the simulator's task name
        split_rollout(out, TASKS[path.parent.name].instruction, frames, flags, str(path))
    return out


def load_labelled(datasets: list[LeRobotDataset], camera: str | None = None, first: int = 0,
                  progress: bool = True, labels: list[dict[int, bool] | None] | None = None) -> Rollouts:
    """Policy episodes in the LeRobot layout labelled by episode, split as ``load_rollouts`` splits
    rollouts, among each dataset's first ``first`` episodes (0: all). An RL run's ``episodes/`` flag
    only the last frame of a successful episode (its outcome, not the moment it was done), so a
    success gives its last frame as done and no approach: frames before it may be done already.
    ``labels`` (one per dataset, or None for its own flags): {episode index: success} as an operator
    gave them (`RUN/labels.jsonl`); only those episodes are read, a success done at its last frame."""
    out = Rollouts([], [], [])
    labels = labels or [None] * len(datasets)
    for ds, given in zip(datasets, labels):
        for _, i, ep, key in iter_episodes([ds], camera, successful_only=False, progress=progress, first=first,
                                           only=None if given is None else set(given)):
            if given is not None:
                flags = np.zeros(len(ep.action), bool)
                flags[-1] = given[i]
            elif ep.success is None:
                raise ValueError(f"--labelled {ds.root}: episode {i} has no per-frame success flag (sim.success), "
                                 "so it carries no label; give its labels with --labels, or datasets of labelled "
                                 "episodes, e.g. an RL run's episodes/")
            else:
                flags = np.asarray(ep.success, bool)
            moment = not flags.any() or int(np.argmax(flags)) < len(flags) - 1  # a flag before the last frame
            split_rollout(out, ep.task, ep.images[key], flags, f"{ds.root}#{i}", approach=moment)
    return out


def read_labels(path: str | Path, num_episodes: int | None = None) -> dict[int, bool]:
    """{episode index: success} from a JSON-lines file of ``{"index": i, "success": true|false}`` (what
    `vlac rl` writes to RUN/labels.jsonl); a later line for the same episode wins. With
    ``num_episodes``, an index outside the dataset is an error."""
    out: dict[int, bool] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise FileNotFoundError(f"--labels {path}: cannot be read ({e.strerror}); give the labels file of the "
                                "--labelled dataset (an RL run writes RUN/labels.jsonl)") from None
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            i, ok = int(row["index"]), row["success"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"--labels {path}: line {k} is not {{\"index\": N, \"success\": true|false}}; "
                             "fix or delete that line") from None
        if not isinstance(ok, bool) or i < 0 or (num_episodes is not None and i >= num_episodes):
            span = "numbered from 0" if num_episodes is None else f"0..{num_episodes - 1} of its dataset"
            raise ValueError(f"--labels {path}: line {k} labels episode {i} with {ok!r}; episodes are {span}, "
                             "labels true or false")
        out[i] = ok
    return out


class DonePool:
    """Done pairs of policy episodes, matched by task: the successes' done segments (their approach
    flagged off) and the failures' late frames."""

    def __init__(self, segments: list[Trajectory], failed: list[Trajectory]):
        self.failed: dict[str, list[Trajectory]] = {}
        for t in failed:
            self.failed.setdefault(t.task, []).append(t)
        self.segments = [t for t in segments if t.task in self.failed]
        # per segment: its done frames and its approach frames, found once
        self.frames = [(np.flatnonzero(t.flags), np.flatnonzero(~t.flags)) for t in self.segments]

    def __bool__(self) -> bool:
        return bool(self.segments)


class SampleSource:
    """Draws samples of each objective from a pool of successful trajectories."""

    def __init__(self, trajectories: list[Trajectory], fine_step: int = 3, mismatch_prob: float = 0.05,
                 diff_threshold: float = L.PIXEL_DIFF_THRESHOLD, reference_frames: int = 3,
                 failed: list[Trajectory] | None = None, done_failed: float = 0.0,
                 done_labels: str = "position", done_near: float = 0.0,
                 still: list[Trajectory] | None = None, still_share: float = 0.0,
                 done_rollouts: float = 0.0, done_segments: list[Trajectory] | None = None,
                 rollout_failed: list[Trajectory] | None = None, done_labelled: float = 0.0,
                 labelled: Rollouts | None = None):
        if not trajectories:
            raise ValueError("no successful episodes to train on; collect some with `vlac data collect` "
                             "(progress labels come from successful episodes only)")
        self.trajs = [t for t in trajectories if t.last > fine_step]
        if not self.trajs:
            raise ValueError(f"every successful episode is shorter than fine_step + 2 = {fine_step + 2} frames")
        self.fine_step = fine_step
        self.mismatch_prob = mismatch_prob
        self.diff_threshold = diff_threshold
        self.k = reference_frames
        self.tasks = sorted({t.task for t in self.trajs})
        self.by_task: dict[str, list[int]] = {}
        for n, t in enumerate(self.trajs):
            self.by_task.setdefault(t.task, []).append(n)
        # One-shot needs a second successful episode of the same task as the reference.
        self.one_shot_ids = [n for n, t in enumerate(self.trajs) if len(self.by_task[t.task]) > 1]
        if not 0.0 <= done_failed <= 1.0:
            raise ValueError(f"done_failed={done_failed} must be a share in [0, 1]")
        self.failed = list(failed or [])
        if done_failed > 0 and not self.failed:
            raise ValueError("done_failed > 0 needs failed episodes with a per-frame simulator flag (sim.success); "
                             "collect some with a failing behaviour, e.g. --behaviours expert:0.8,noisy:0.2")
        self.done_failed = done_failed
        if done_labels not in ("position", "flag"):
            raise ValueError(f"done_labels={done_labels!r}; valid: position (the paper's 0.8 T / 0.95 T rule) "
                             "or flag (the dataset's per-frame success flag)")
        self.done_labels = done_labels
        if not 0.0 <= done_near <= 1.0:
            raise ValueError(f"done_near={done_near} must be a share in [0, 1]")
        self.done_near = done_near
        self._done_frames = [self._done_split(t) for t in self.trajs]
        if not 0.0 <= still_share <= 1.0:
            raise ValueError(f"still_share={still_share} must be a share in [0, 1]")
        self.still = [t for t in (still or []) if t.last > fine_step]
        if still_share > 0 and not self.still:
            raise ValueError("still_share > 0 needs still trajectories (failed rollouts, or frames after a "
                             "success); give --rollouts folders with such episodes")
        self.still_share = still_share
        self.still_by_task: dict[str, list[int]] = {}
        for n, t in enumerate(self.still):
            self.still_by_task.setdefault(t.task, []).append(n)
        for name, share in (("done_rollouts", done_rollouts), ("done_labelled", done_labelled)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name}={share} must be a share in [0, 1]")
        if done_rollouts + done_labelled > 1.0:
            raise ValueError(f"done_rollouts + done_labelled = {done_rollouts + done_labelled} must be at most 1 "
                             "(shares of the done pairs)")
        self.rollout_pool = DonePool(done_segments or [], rollout_failed or [])
        if done_rollouts > 0 and not self.rollout_pool:
            raise ValueError("done_rollouts > 0 needs rollouts of one task with both a success and a failure; "
                             "give --rollouts folders with such episodes (more episodes, or a stronger actor)")
        self.done_rollouts = done_rollouts
        self.labelled_pool = DonePool(labelled.done_segments, labelled.failed_late) if labelled else DonePool([], [])
        if done_labelled > 0 and not self.labelled_pool:
            raise ValueError("done_labelled > 0 needs labelled episodes of one task with both a success and a "
                             "failure; give --labelled datasets (or a larger --labelled-first) with such episodes")
        self.done_labelled = done_labelled

    def _done_split(self, traj: Trajectory) -> tuple:
        """(not-done frames, done frames) of one trajectory under the chosen done labels."""
        if self.done_labels == "position":
            return L.done_ranges(traj.last)
        if traj.flags is None:
            raise ValueError(f"--done-labels flag needs a per-frame success flag (sim.success), but episode "
                             f"{traj.source} has none; use --done-labels position for datasets without it")
        split = L.done_frames_from_flag(traj.flags)
        if split is None or not len(split[0]):
            raise ValueError(f"episode {traj.source} is marked successful but its success flag is never on "
                             "after an off frame; use --done-labels position, or fix the dataset's sim.success")
        return split

    # ------------------------------------------------------------------------------ progress
    def _draw(self, traj: Trajectory, rng: np.random.Generator) -> list[tuple[int, int]]:
        """The four frame pairs of one joint group from a random draw (i, j) in ``traj``."""
        i = int(rng.integers(0, traj.last - self.fine_step + 1))
        j = int(rng.integers(0, traj.last))  # any other frame: dt in [-i, last - i] minus 0
        j = j + 1 if j >= i else j
        return L.joint_group(i, j, self.fine_step)

    def _pair_samples(self, traj: Trajectory, rng: np.random.Generator) -> tuple[list, list[str], list[str]]:
        """One joint group: four (images, task, answer) from a random draw (i, j)."""
        images, tasks, answers = [], [], []
        for a, b in self._draw(traj, rng):
            diff = L.pixel_difference(traj.frames[a], traj.frames[b])
            c = L.filtered_label(a, b, traj.last, diff, self.diff_threshold)
            task = traj.task
            if len(self.tasks) > 1 and rng.random() < self.mismatch_prob:
                task = self.tasks[int(rng.integers(0, len(self.tasks)))]
                if task != traj.task:
                    c = 0.0  # a description that does not belong to this trajectory: no progress
            images.append([traj.frames[a], traj.frames[b]])
            tasks.append(task)
            answers.append(P.progress_answer(L.to_percent(c)))
        return images, tasks, answers

    def _still_samples(self, rng: np.random.Generator, ids: list[int]) -> tuple[list, list[str], list[str]]:
        """One joint group from a still trajectory: the same four pairs, every one labelled 0."""
        traj = self.still[ids[int(rng.integers(0, len(ids)))]]
        pairs = self._draw(traj, rng)
        return ([[traj.frames[a], traj.frames[b]] for a, b in pairs], [traj.task] * 4,
                [P.progress_answer(0)] * 4)

    def _group(self, rng: np.random.Generator, traj: Trajectory,
               same_task: bool = False) -> tuple[list, list[str], list[str]]:
        """A joint group from ``traj``, or with probability ``still_share`` from a still trajectory
        (with ``same_task``, one of ``traj``'s task, as a one-shot reference needs)."""
        if self.still_share and rng.random() < self.still_share:
            ids = self.still_by_task.get(traj.task, []) if same_task else range(len(self.still))
            if len(ids):
                return self._still_samples(rng, ids)
        return self._pair_samples(traj, rng)

    def progress(self, rng: np.random.Generator, groups: int) -> tuple[list[Prompt], list[str]]:
        prompts, answers = [], []
        for _ in range(groups):
            traj = self.trajs[int(rng.integers(0, len(self.trajs)))]
            imgs, tasks, ans = self._group(rng, traj)
            prompts += [Prompt(P.pair_prompt(t), im) for t, im in zip(tasks, imgs)]
            answers += ans
        return prompts, answers

    def one_shot(self, rng: np.random.Generator, groups: int) -> tuple[list[Prompt], list[str]]:
        """Joint groups whose prompt starts with k labelled frames of another successful episode
        of the same task and the current trajectory's first frame."""
        if not self.one_shot_ids:
            raise ValueError("one-shot samples need at least two successful episodes of one task")
        prompts, answers = [], []
        for _ in range(groups):
            n = self.one_shot_ids[int(rng.integers(0, len(self.one_shot_ids)))]
            traj = self.trajs[n]
            others = [m for m in self.by_task[traj.task] if m != n]
            ref = self.trajs[others[int(rng.integers(0, len(others)))]]
            idx = L.reference_frames(ref.last, self.k)
            ref_imgs = [ref.frames[t] for t in idx]
            progress = [L.frame_progress(t, ref.last) for t in idx]
            imgs, tasks, ans = self._group(rng, traj, same_task=True)
            for im, t, a in zip(imgs, tasks, ans):
                prompts.append(Prompt(P.one_shot_pair_prompt(t, progress), ref_imgs + [traj.frames[0]] + im))
                answers.append(a)
        return prompts, answers

    # ------------------------------------------------------------------------------ done, describe
    def _done_draws(self, rng: np.random.Generator, pairs: int, ids: list[int], failed: list[Trajectory]):
        """(trajectory, frame, label) of balanced done pairs from trajectories ``ids``."""
        for _ in range(pairs):
            n = ids[int(rng.integers(0, len(ids)))]
            traj = self.trajs[n]
            not_done, done = self._done_frames[n]
            for frames, label in ((not_done, False), (done, True)):
                src = traj
                if not label and failed and rng.random() < self.done_failed:
                    src = failed[int(rng.integers(0, len(failed)))]
                    frames = range(len(src.frames))
                if not label and src is traj and self.done_near and rng.random() < self.done_near:
                    frames = frames[-L.near_miss_count(len(frames)):]  # just short of the goal
                yield src, int(frames[int(rng.integers(0, len(frames)))]), label

    def _pool_done_pair(self, pool: DonePool, rng: np.random.Generator) -> list[tuple[Trajectory, int, bool]]:
        """A done frame of a successful policy episode and a late frame of a failed one of its task, or
        with probability ``done_near`` a frame of the success's own approach (just short of the moment)."""
        n = int(rng.integers(0, len(pool.segments)))
        pos, (done, approach) = pool.segments[n], pool.frames[n]
        if len(approach) and self.done_near and rng.random() < self.done_near:
            neg, t = pos, int(approach[int(rng.integers(0, len(approach)))])
        else:
            negs = pool.failed[pos.task]
            neg = negs[int(rng.integers(0, len(negs)))]
            t = int(rng.integers(0, len(neg.frames)))
        return [(neg, t, False), (pos, int(done[int(rng.integers(0, len(done)))]), True)]

    def done(self, rng: np.random.Generator, pairs: int) -> tuple[list[Prompt], list[str]]:
        """Balanced pairs from one trajectory: a frame before 80% (0) and one after 95% (1), or with
        ``done_labels="flag"`` a frame before the first success and one where the flag is on; with
        probability ``done_failed`` the 0 is a late frame of a failed episode of any task instead,
        and with probability ``done_near`` it is one of the last 20% of the episode's not-done frames
        (the hardest: just short of the goal). With probability ``done_rollouts`` the pair comes
        from the policy rollouts instead (``_pool_done_pair``, where ``done_near`` draws the 0
        from the success's own approach), and with probability ``done_labelled`` from the labelled
        episodes (an RL run's own, labelled as it goes) in the same way."""
        draws, ids = [], list(range(len(self.trajs)))
        for _ in range(pairs):
            r = rng.random() if self.done_rollouts or self.done_labelled else 1.0
            if r < self.done_rollouts:
                draws += self._pool_done_pair(self.rollout_pool, rng)
            elif r < self.done_rollouts + self.done_labelled:
                draws += self._pool_done_pair(self.labelled_pool, rng)
            else:
                draws += self._done_draws(rng, 1, ids, self.failed)
        return ([Prompt(P.done_prompt(src.task), [src.frames[t]]) for src, t, _ in draws],
                [P.done_answer(label) for _, _, label in draws])

    def done_goal(self, rng: np.random.Generator, pairs: int) -> tuple[list[Prompt], list[str]]:
        """In-context done: the same balanced pairs, each prompt led by the last frame (the goal)
        of another successful episode of the judged frame's task. Hard negatives from failed
        episodes come only from tasks that have successful episodes to take the goal from."""
        if not self.one_shot_ids:
            raise ValueError("in-context done samples need at least two successful episodes of one task")
        failed = [f for f in self.failed if f.task in self.by_task]
        prompts, answers = [], []
        for src, t, label in self._done_draws(rng, pairs, self.one_shot_ids, failed):
            goals = [m for m in self.by_task[src.task] if self.trajs[m] is not src]
            goal = self.trajs[goals[int(rng.integers(0, len(goals)))]].frames[-1]
            prompts.append(Prompt(P.goal_done_prompt(src.task), [goal, src.frames[t]]))
            answers.append(P.done_answer(label))
        return prompts, answers

    def describe(self, rng: np.random.Generator, n: int) -> tuple[list[Prompt], list[str]]:
        """Start frame in the first 30%, end frame in the last 20%; the answer is the task."""
        prompts, answers = [], []
        for _ in range(n):
            traj = self.trajs[int(rng.integers(0, len(self.trajs)))]
            starts, ends = L.description_ranges(traj.last)
            a = starts[int(rng.integers(0, len(starts)))]
            b = ends[int(rng.integers(0, len(ends)))]
            prompts.append(Prompt(P.describe_prompt(), [traj.frames[a], traj.frames[b]]))
            answers.append(P.describe_answer(traj.task))
        return prompts, answers

    def draw(self, objective: str, rng: np.random.Generator, batch_size: int) -> tuple[list[Prompt], list[str]]:
        """About ``batch_size`` samples of one objective (groups of 4 and pairs stay whole)."""
        if objective == "progress":
            return self.progress(rng, max(1, batch_size // 4))
        if objective == "one_shot":
            return self.one_shot(rng, max(1, batch_size // 4))
        if objective == "done":
            return self.done(rng, max(1, batch_size // 2))
        if objective == "done_goal":
            return self.done_goal(rng, max(1, batch_size // 2))
        if objective == "describe":
            return self.describe(rng, batch_size)
        raise ValueError(f"unknown objective {objective!r}; valid: progress, one_shot, done, done_goal, describe")

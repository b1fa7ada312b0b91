"""``vlac critic fidelity``: is the critic's reward right on the policy's own episodes?

RL trains on the actor's rollouts, not on experts', so this rolls a given actor out as the RL loop
does (sampling temperature, full episodes to the step limit, no cut at success), scores every
step pair with a given critic as the loop's critic worker does (frame t -> t+1, the same reading;
``--reading anchored`` reads every frame against the episode's first instead), and measures the
reward against the task's true progress and outcome, which come from the simulator and are used
only to measure:

- mean per-episode Spearman of the value curve (Eq. 7) against true progress, and against time
  alone (a critic that only follows the clock scores as high on the second);
- AUC of the return and of the final value, successful vs failed episodes (0.5: no signal);
- per-step correlation of the reward with true progress made and with the hand's speed;
- the reward given to two identical frames (should be 0);
- the done rule of the loop (threshold, patience, value gate): precision (fires only once the task
  is done) and on-time recall (fires, at or after the first successful frame, in successful episodes);
- reward latency at batch 1 (progress + done of one transition, as the loop asks);
- policy ranking (RBM-EVAL): over policies of known success rate (scripted behaviours, noisy
  experts at several sigma, the actor at several temperatures), Kendall tau between the mean
  critic return and the true success rate.

    vlac critic fidelity --tasks reach-v3 push-v3 lever-pull-v3 --episodes 30 --out runs/fidelity
    vlac critic fidelity --critic runs/critic-b/model --reuse runs/fidelity --out runs/fidelity-b   # same rollouts
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlac.critic.metrics import spearman
from vlac.utils.report import pyplot, fmt, markdown_table

POLICIES = ("expert", "noisy@1", "noisy@2", "random-bursts", "stall", "actor@0", "actor@1", "actor@2")


@dataclass
class FidelityConfig:
    out: str
    """Report folder: report.md, fidelity.json, episodes.jsonl, fidelity.png, ranking.png, rollouts/."""
    tasks: list[str] = field(default_factory=lambda: ["reach-v3", "push-v3", "lever-pull-v3"])
    """Simulated tasks."""
    episodes: int = 30
    """Actor rollouts per task for the fidelity measures."""
    actor: str = "builtin"
    """Actor whose rollouts are scored: builtin (the built-in tiny actor) or a checkpoint folder."""
    critic: str = "builtin"
    """Critic: builtin (the built-in tiny critic) or a checkpoint folder."""
    temperature: float = 1.0
    """The actor's sampling temperature (the RL loop's inference workers use 1)."""
    max_steps: int = 100
    """Episode length; every episode runs to it, as in the RL loop with the critic's done off."""
    seed: int = 30_000
    """Base seed of the rollouts (training data 0-5000, actor evaluation 10000-11999)."""
    symmetric: bool = False
    """Read progress symmetrically, (f(a,b) - f(b,a)) / 2, as `vlac rl --critic-symmetric`."""
    reading: str = "pair"
    """pair: the loop's reading, each step pair (t-1, t), the value built by Eq. 7; anchored: each
    frame against the episode's first, value_t = f(frame 0, frame t) (the progress the critic sees
    since the start, in one pass per step, no sum of small per-step biases), reward_t = value_t -
    value_{t-1}."""
    done_threshold: float = 0.9
    """The loop's done rule: p(done) at least this ..."""
    done_patience: int = 4
    """... on this many consecutive transitions ..."""
    done_min_value: float = 0.0
    """... where the value curve has reached this (0: no gate); defaults as `vlac rl`."""
    ranking_episodes: int = 10
    """Episodes per policy and task for the policy ranking (0: skip it)."""
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    """Policies of the ranking: scripted behaviours (noisy@SIGMA: the expert plus Gaussian noise of
    SIGMA in normalised action units) and actor@TEMPERATURE (0: greedy)."""
    rebuild: bool = False
    """Make the report of OUT again from its episodes.jsonl (no model runs)."""
    reuse: str = ""
    """An earlier fidelity folder whose saved rollouts are scored again instead of new ones (to
    compare critics on the same episodes)."""
    threads: int = 0
    """torch threads (0: torch's default)."""
    codec: bool = False
    """Score the frames as a stored dataset gives them back (the writer's video codec, AV1 at CRF 30,
    4:2:0 colour, encoded and decoded), not as the robot sends them: the critics are trained on such
    frames while the loop scores raw ones, and this measures what that gap costs."""
    rollouts_only: bool = False
    """Save the rollouts under OUT/rollouts and score nothing: training data for
    `vlac critic train --rollouts OUT` (use a --seed of its own, away from the rollouts you measure on)."""


@dataclass
class Episode:
    """One rollout with the simulator's measurements (frames t = 0..T, T actions executed)."""

    policy: str
    task: str
    seed: int
    frames: np.ndarray  # (T+1, H, W, 3)
    hand: np.ndarray  # (T+1, 3) mm
    remaining: np.ndarray  # (T+1,) the task's distance from done
    flags: np.ndarray  # (T+1,) success flag per frame

    @property
    def success(self) -> bool:
        return bool(self.flags.any())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, frames=self.frames, hand=self.hand, remaining=self.remaining, flags=self.flags)

    @classmethod
    def load(cls, path: Path, policy: str, task: str, seed: int) -> "Episode":
        with np.load(path) as z:
            return cls(policy, task, seed, z["frames"], z["hand"], z["remaining"], z["flags"])


BEHAVIOUR_ARGUMENT = {
    "noisy": lambda v: {"sigma": v},  # noisy@SIGMA: noise in normalised action units
    "miss": lambda v: {"offset": (v / 100, v / 100)},  # miss@CM: the object and goal moved CM cm sideways
    "stop-short": lambda v: {"fraction": (v, v)},  # stop-short@F: frozen at F of the expert's time to success
}
"""Behaviours that take a number after ``@`` in a policy name, and what it sets."""


def parse_policy(spec: str) -> tuple[str, float | None]:
    """``"noisy@1"`` -> ("noisy", 1.0); ``"expert"`` -> ("expert", None); actor@T: T the temperature;
    ``miss@2`` the miss 2 cm off; ``stop-short@0.95`` frozen at 95% of the expert's time to success."""
    from vlac.sim.behaviours import BEHAVIOURS

    name, _, arg = spec.strip().partition("@")
    if name != "actor" and name not in BEHAVIOURS:
        raise ValueError(f"unknown policy {spec!r}; use actor@TEMPERATURE or a behaviour ({', '.join(BEHAVIOURS)}), "
                         "noisy@SIGMA for a noisy expert, miss@CM, stop-short@FRACTION")
    try:
        value = float(arg) if arg else None
    except ValueError:
        raise ValueError(f"policy {spec!r}: {arg!r} after @ is not a number") from None
    if name == "actor" and value is None:
        raise ValueError(f"policy {spec!r}: write actor@TEMPERATURE, e.g. actor@1")
    if value is not None and name != "actor" and name not in BEHAVIOUR_ARGUMENT:
        raise ValueError(f"policy {spec!r}: {name} takes no number after @ (only actor, "
                         f"{', '.join(BEHAVIOUR_ARGUMENT)} do)")
    return name, value


def _seeds(cfg: FidelityConfig, task: str, n: int, offset: int) -> list[int]:
    from vlac.sim.rollout import episode_seed

    return [episode_seed(cfg.seed + offset, task, k) for k in range(n)]


def _actor_rollouts(actor, task: str, seeds: list[int], temperature: float, cfg: FidelityConfig,
                    policy: str) -> list[Episode]:
    from vlac.sim.actor_eval import ActorEvalConfig, run_batch

    ecfg = ActorEvalConfig(out="", max_steps=cfg.max_steps, post_success_steps=10**9, temperature=temperature)
    out = []
    for r in run_batch(actor, task, "default", seeds, ecfg):
        out.append(Episode(policy, task, r.seed, r.frames, r.states[:, :3], r.remaining, r.flags))
    return out


def _scripted_rollout(name: str, value: float | None, task: str, seed: int, cfg: FidelityConfig,
                      policy: str) -> Episode:
    from vlac.sim.behaviours import make_behaviour
    from vlac.sim.env import SimEnvConfig, SimRobotEnv

    behaviour = make_behaviour(name, **(BEHAVIOUR_ARGUMENT[name](value) if value is not None else {}))
    with SimRobotEnv(SimEnvConfig(task=task, max_steps=cfg.max_steps)) as env:
        obs = env.reset(seed)
        behaviour.reset(env, np.random.default_rng(seed))
        frames, hand, rem, flags = [], [], [], []
        while True:
            frames.append(obs["images"]["main"])
            hand.append(obs["state"][:3])
            rem.append(env.remaining())
            flags.append(obs["success"])
            if env.done:
                break
            obs = env.step(behaviour.act(env))
    return Episode(policy, task, seed, np.stack(frames), np.stack(hand), np.asarray(rem), np.asarray(flags))


def collect(cfg: FidelityConfig, actor, plan: list[tuple[str, str, int, int]]) -> list[Episode]:
    """``plan``: (policy, task, n, seed offset) -> episodes, loaded from ``--reuse`` where saved."""
    episodes = []
    bar = tqdm(total=sum(n for _, _, n, _ in plan), desc="rollouts", unit="ep")
    for policy, task, n, offset in plan:
        seeds = _seeds(cfg, task, n, offset)
        paths = [Path(cfg.reuse) / "rollouts" / policy / task / f"{s}.npz" for s in seeds] if cfg.reuse else []
        if paths and all(p.is_file() for p in paths):
            episodes += [Episode.load(p, policy, task, s) for p, s in zip(paths, seeds)]
        else:
            name, arg = parse_policy(policy)
            if name == "actor":
                new = _actor_rollouts(actor, task, seeds, arg, cfg, policy)
            else:
                new = [_scripted_rollout(name, arg, task, s, cfg, policy) for s in seeds]
            for e in new:
                e.save(Path(cfg.out) / "rollouts" / policy / task / f"{e.seed}.npz")
            episodes += new
        bar.update(n)
    bar.close()
    return episodes


READINGS = ("pair", "anchored")


def read_values(critic, frames, text: str, reading: str = "pair") -> tuple[np.ndarray, np.ndarray]:
    """Per-step rewards (T,) and the value curve (T+1,) of one episode's frames under ``reading``
    (see ``FidelityConfig.reading``), float64."""
    from vlac.critic.metrics import value_curve

    if reading == "pair":
        deltas = np.asarray(critic.progress(list(zip(frames[:-1], frames[1:])), text, decoding="rich"), np.float64)
        return deltas, value_curve(deltas)  # frames 0..T, v_0 = 0
    check_reading(reading)
    since_start = critic.progress([(frames[0], f) for f in frames[1:]], text, decoding="rich")  # anchored
    values = np.concatenate([[0.0], np.asarray(since_start, np.float64)])
    return np.diff(values), values  # the rewards sum to the final value


def check_reading(reading: str) -> None:
    if reading not in READINGS:
        raise ValueError(f"--reading {reading!r} is not one of {', '.join(READINGS)}")


def score(critic, episodes: list[Episode], cfg: FidelityConfig) -> list[dict]:
    """Every transition of every episode as the loop's critic worker scores it (``cfg.reading``)."""
    from vlac.critic.metrics import DoneRule
    from vlac.data.tasks import TASKS

    rows, rule = [], DoneRule(cfg.done_threshold, cfg.done_patience, cfg.done_min_value)
    for e in tqdm(episodes, desc="score", unit="ep"):
        text = TASKS[e.task].instruction
        # float64 from here on, so a report rebuilt from episodes.jsonl gives the very same figures
        deltas, values = read_values(critic, e.frames, text, cfg.reading)
        p_done = np.asarray(critic.done(list(e.frames[1:]), text), np.float64)
        fire = rule.first(p_done, values[1:])
        rows.append({"policy": e.policy, "task": e.task, "seed": e.seed, "success": e.success,
                     "first_success": int(np.argmax(e.flags)) if e.success else None,
                     "deltas": deltas, "p_done": p_done, "values": values,
                     "done_at": None if fire is None else fire + 1,  # the frame after the transition
                     "progress": 1.0 - e.remaining / max(float(e.remaining[0]), 1e-9),
                     "speed": np.linalg.norm(np.diff(e.hand, axis=0), axis=1)})
    return rows


def _pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def auc(pos, neg) -> float:
    """P(a positive's figure beats a negative's), ties half; NaN when either side is empty."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    p, n = np.asarray(pos, np.float64)[:, None], np.asarray(neg, np.float64)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def _nanmean(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def task_measures(rows: list[dict]) -> dict:
    """The fidelity measures of one task's scored episodes."""
    good = [r for r in rows if r["success"]]
    bad = [r for r in rows if not r["success"]]
    ret = lambda rs: [float(np.sum(r["deltas"])) for r in rs]  # noqa: E731
    final = lambda rs: [float(r["values"][-1]) for r in rs]  # noqa: E731
    fired = [r for r in rows if r["done_at"] is not None]
    on_time = [r for r in fired if r["success"] and r["done_at"] >= r["first_success"]]
    delays = [r["done_at"] - r["first_success"] for r in on_time]
    step_progress = np.concatenate([np.diff(r["progress"]) for r in rows])
    return {
        "episodes": len(rows), "successes": len(good),
        "spearman_progress": _nanmean([spearman(r["values"], r["progress"]) for r in rows]),
        "spearman_time": _nanmean([spearman(r["values"], np.arange(len(r["values"]))) for r in rows]),
        "time_vs_progress": _nanmean([spearman(np.arange(len(r["progress"])), r["progress"]) for r in rows]),
        "auc_return": auc(ret(good), ret(bad)), "auc_final_value": auc(final(good), final(bad)),
        "mean_return_success": _nanmean(ret(good)), "mean_return_failure": _nanmean(ret(bad)),
        "step_corr_progress": _pearson(np.concatenate([r["deltas"] for r in rows]), step_progress),
        "step_corr_speed": _pearson(np.concatenate([r["deltas"] for r in rows]),
                                    np.concatenate([r["speed"] for r in rows])),
        "done_fired": len(fired), "done_precision": len(on_time) / len(fired) if fired else float("nan"),
        "done_recall": len(on_time) / len(good) if good else float("nan"),
        "done_median_delay": float(np.median(delays)) if delays else float("nan"),
    }


def done_outcomes(rows: list[dict], rule) -> tuple[float, float]:
    """Precision and on-time recall of a done rule over scored episodes (fires at or after the
    first successful frame = right; in a failed episode or before success = wrong)."""
    fired = right = 0
    for r in rows:
        k = rule.first(r["p_done"], r["values"][1:])
        if k is None:
            continue
        fired += 1
        right += int(r["success"] and k + 1 >= r["first_success"])
    good = sum(r["success"] for r in rows)
    return (right / fired if fired else float("nan")), (right / good if good else float("nan"))


def choose_done_rule(rows: list[dict], thresholds=(0.5, 0.7, 0.9, 0.95, 0.99), patiences=(1, 2, 4, 8, 12),
                     gates=(0.0, 0.3, 0.5, 0.7)) -> dict:
    """The done rule (threshold, patience, value gate) with the best F1 of precision and on-time
    recall on half of the episodes (even positions), and its figures on the other half, so the
    choice is not judged on the episodes it was chosen on."""
    from vlac.critic.metrics import DoneRule

    fit, held = rows[0::2], rows[1::2]
    best = None
    for t in thresholds:
        for p in patiences:
            for g in gates:
                prec, rec = done_outcomes(fit, DoneRule(t, p, g))
                f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
                f1 = 0.0 if not np.isfinite(f1) else f1
                if best is None or f1 > best["f1_fit"]:
                    best = {"threshold": t, "patience": p, "min_value": g, "f1_fit": f1, "precision_fit": prec,
                            "recall_fit": rec}
    prec, rec = done_outcomes(held, DoneRule(best["threshold"], best["patience"], best["min_value"]))
    return {**best, "precision_held_out": prec, "recall_held_out": rec, "episodes_fit": len(fit),
            "episodes_held_out": len(held)}


def ranking(rows: list[dict], policies: list[str]) -> dict:
    """Per task: each policy's true success rate and mean critic return, and Kendall tau between them."""
    from scipy.stats import kendalltau

    out = {}
    for task in sorted({r["task"] for r in rows}):
        per = {}
        for p in policies:
            rs = [r for r in rows if r["task"] == task and r["policy"] == p]
            if rs:
                per[p] = {"success_rate": float(np.mean([r["success"] for r in rs])),
                          "mean_return": float(np.mean([np.sum(r["deltas"]) for r in rs])), "episodes": len(rs)}
        s = [v["success_rate"] for v in per.values()]
        m = [v["mean_return"] for v in per.values()]
        tau = float(kendalltau(m, s).statistic) if len(per) > 2 and np.ptp(s) > 0 else float("nan")
        out[task] = {"policies": per, "kendall_tau": tau}
    return out


def identical_frames(critic, episodes: list[Episode]) -> float:
    """Mean reward of (frame, the same frame), over the first and middle frame of each episode."""
    from vlac.data.tasks import TASKS

    values = []
    for e in episodes:
        for f in (e.frames[0], e.frames[len(e.frames) // 2]):
            values.append(float(critic.progress([(f, f)], TASKS[e.task].instruction, decoding="rich")[0]))
    return float(np.mean(values)) if values else float("nan")


def latency(critic, episode: Episode, n: int = 20) -> float:
    """Median seconds to score one transition at batch 1 (progress + done, as the loop asks)."""
    from vlac.data.tasks import TASKS

    text, times = TASKS[episode.task].instruction, []
    for k in range(min(n, len(episode.frames) - 1)):
        t0 = time.perf_counter()
        critic.progress([(episode.frames[k], episode.frames[k + 1])], text, decoding="rich")
        critic.done([episode.frames[k + 1]], text)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fidelity(cfg: FidelityConfig) -> dict:
    from vlac.actor.actor import Actor
    from vlac.critic.critic import Critic
    from vlac.data.tasks import resolve_tasks
    from vlac.utils.imports import set_threads

    if cfg.rebuild:
        return rebuild(cfg.out)
    if cfg.done_patience < 1:
        raise ValueError(f"--done-patience {cfg.done_patience} must be >= 1")
    scripted_only = cfg.rollouts_only and cfg.episodes == 0 and cfg.ranking_episodes > 0
    if cfg.episodes < 2 and not scripted_only:  # --rollouts-only --episodes 0: the --policies' rollouts alone
        raise ValueError(f"--episodes {cfg.episodes}: at least 2 rollouts per task are needed (0 only with "
                         "--rollouts-only and --ranking-episodes, to save scripted policies' rollouts alone)")
    check_reading(cfg.reading)  # before any rollout
    tasks = [t.name for t in resolve_tasks(cfg.tasks)]
    policies = cfg.policies if cfg.ranking_episodes > 0 else []
    for p in policies:
        parse_policy(p)
    if cfg.reuse and not (Path(cfg.reuse) / "rollouts").is_dir():
        raise FileNotFoundError(f"--reuse {cfg.reuse}: no rollouts/ folder there; give a folder written by "
                                "`vlac critic fidelity --out`")
    # the rollouts' own settings: a reused folder made with another actor or episode length would
    # mix episodes under this run's labels
    settings = {"actor": cfg.actor, "max_steps": cfg.max_steps, "seed": cfg.seed}
    saved = Path(cfg.reuse) / "rollouts" / "settings.json" if cfg.reuse else None
    if saved is not None and saved.is_file():
        theirs = json.loads(saved.read_text())
        theirs["actor"] = theirs.get("actor") or "builtin"  # folders written before "builtin" was spelled out
        differ = {k: (theirs.get(k), v) for k, v in settings.items() if theirs.get(k) != v}
        if differ:
            raise ValueError(f"--reuse {cfg.reuse}: its rollouts were made with other settings "
                             + ", ".join(f"{k} {a!r} (here {b!r})" for k, (a, b) in differ.items())
                             + "; pass the same --actor, --max-steps and --seed, or drop --reuse")
    set_threads(cfg.threads)
    out = Path(cfg.out)
    (out / "rollouts").mkdir(parents=True, exist_ok=True)
    (out / "rollouts" / "settings.json").write_text(json.dumps(settings))
    actor = Actor.load(cfg.actor)
    main_policy = f"actor@{cfg.temperature:g}"
    plan = [(main_policy, t, cfg.episodes, 0) for t in tasks if cfg.episodes]
    # ranking episodes use their own seeds (offset 1), so no policy shares a start with the main rollouts
    plan += [(p, t, cfg.ranking_episodes, 1) for t in tasks for p in policies]
    episodes = collect(cfg, actor, plan)
    if cfg.rollouts_only:
        ok = sum(e.success for e in episodes)
        print(f"{len(episodes)} rollouts ({ok} successful) saved under {out / 'rollouts'}")
        return {"rollouts": len(episodes), "successful": ok, "out": str(out / "rollouts")}
    if cfg.codec:
        from dataclasses import replace

        from vlac.data.video import roundtrip

        episodes = [replace(e, frames=roundtrip(e.frames)) for e in tqdm(episodes, desc="codec", unit="ep")]
    critic = Critic.load(cfg.critic, symmetric=cfg.symmetric)
    n_main = len(tasks) * cfg.episodes  # collect() keeps the plan's order: the actor's rollouts first
    main_eps = episodes[:n_main]
    rows = score(critic, episodes, cfg)
    with open(out / "episodes.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}) + "\n")
    return write_report(out, cfg, rows, identical_frames(critic, main_eps), latency(critic, main_eps[0]))


def rebuild(folder: str) -> dict:
    """A fidelity folder's report made again from its ``episodes.jsonl`` (no model runs): after a
    change to the measures."""
    out = Path(folder)
    if not (out / "episodes.jsonl").is_file() or not (out / "fidelity.json").is_file():
        raise FileNotFoundError(f"{folder}: no episodes.jsonl and fidelity.json; give a folder written by "
                                "`vlac critic fidelity --out`")
    old = json.loads((out / "fidelity.json").read_text())
    # folders written before lists were lists hold "a,b" strings
    cfg = FidelityConfig(**{k: v.split(",") if k in ("tasks", "policies") and isinstance(v, str) else v
                            for k, v in old["config"].items()})
    rows = [{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in json.loads(line).items()}
            for line in (out / "episodes.jsonl").read_text().splitlines()]
    return write_report(out, cfg, rows, old["identical_frames"], old["latency_batch1_s"])


def write_report(out: Path, cfg: FidelityConfig, rows: list[dict], identical: float, seconds: float) -> dict:
    from vlac.data.tasks import resolve_tasks

    tasks = [t.name for t in resolve_tasks(cfg.tasks)]
    policies = cfg.policies if cfg.ranking_episodes > 0 else []
    main_policy = f"actor@{cfg.temperature:g}"
    n_main = len(tasks) * cfg.episodes
    main_rows = rows[:n_main]
    assert all(r["policy"] == main_policy for r in main_rows)
    report = {"config": asdict(cfg), "tasks": {t: task_measures([r for r in main_rows if r["task"] == t]) for t in tasks},
              "done_rule_chosen": choose_done_rule(main_rows), "identical_frames": identical,
              "latency_batch1_s": seconds}
    if policies:
        report["ranking"] = ranking(rows[n_main:], policies)
        report["ranking_mean_tau"] = _nanmean([v["kendall_tau"] for v in report["ranking"].values()])
    (out / "fidelity.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    plot_curves(main_rows, out / "fidelity.png")
    if policies:
        plot_ranking(report["ranking"], out / "ranking.png")
    print(markdown(report))
    print(f"wrote {out / 'report.md'}, fidelity.json, episodes.jsonl, fidelity.png")
    return report


def markdown(report: dict) -> str:
    c = report["config"]
    lines = ["# Reward fidelity on policy rollouts\n",
             f"Actor {c['actor'] or 'built-in'} at temperature {c['temperature']:g}, {c['episodes']} episodes per task of "
             f"{c['max_steps']} steps (no cut at success), seeds from {c['seed']}; critic {c['critic'] or 'built-in'}, "
             f"{'symmetric' if c['symmetric'] else 'plain'} reading, "
             f"{'every frame against the first' if c.get('reading') == 'anchored' else 'every step pair'}"
             f"{', frames through the dataset video codec' if c.get('codec') else ''}; done rule: p(done) >= "
             f"{c['done_threshold']:g} on {c['done_patience']} transitions in a row, value gate {c['done_min_value']:g}. "
             "True progress and success come from the simulator, for measurement only.\n"]
    header = ["task", "episodes (successes)", "Spearman(value, progress)", "Spearman(value, time)",
              "time alone vs progress", "AUC return", "AUC final value", "step corr: progress", "step corr: hand speed",
              "done precision", "done on-time recall", "done median delay (steps)"]
    body = [[t, f"{m['episodes']} ({m['successes']})", fmt(m["spearman_progress"]), fmt(m["spearman_time"]),
             fmt(m["time_vs_progress"]), fmt(m["auc_return"]), fmt(m["auc_final_value"]), fmt(m["step_corr_progress"]),
             fmt(m["step_corr_speed"]), fmt(m["done_precision"]), fmt(m["done_recall"]), fmt(m["done_median_delay"], 1)]
            for t, m in report["tasks"].items()]
    lines += [markdown_table(header, body), "",
              f"Reward for two identical frames (should be 0): {fmt(report['identical_frames'], 3)}. "
              f"Reward latency at batch 1 (progress + done of one transition): {report['latency_batch1_s'] * 1000:.0f} ms.\n"]
    d = report.get("done_rule_chosen")
    if d:
        lines.append(f"Done rule chosen on half of the rollouts (best F1 of precision and on-time recall): p(done) >= "
                     f"{d['threshold']:g} on {d['patience']} transitions, value gate {d['min_value']:g}: precision "
                     f"{fmt(d['precision_fit'])} / recall {fmt(d['recall_fit'])} there, {fmt(d['precision_held_out'])} / "
                     f"{fmt(d['recall_held_out'])} on the other half ({d['episodes_held_out']} episodes).\n")
    if "ranking" in report:
        lines.append(f"## Policy ranking (Kendall tau of mean critic return against true success rate; "
                     f"mean over tasks {fmt(report['ranking_mean_tau'])})\n")
        for task, v in report["ranking"].items():
            rows = [[p, fmt(x["success_rate"]), fmt(x["mean_return"]), x["episodes"]] for p, x in v["policies"].items()]
            lines += [f"**{task}**: tau {fmt(v['kendall_tau'])}\n",
                      markdown_table(["policy", "true success rate", "mean critic return", "episodes"], rows), ""]
    return "\n".join(lines) + "\n"


def plot_curves(rows: list[dict], path: Path, per_outcome: int = 3) -> None:
    """Per task: the critic's value curve (solid) beside true progress (dashed) for a few
    successful (green) and failed (red) episodes."""
    plt = pyplot()
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for outcome, colour in ((True, "tab:green"), (False, "tab:red")):
            for r in [r for r in rows if r["task"] == task and r["success"] == outcome][:per_outcome]:
                ax.plot(r["values"], color=colour, lw=1.2)
                ax.plot(r["progress"], color=colour, lw=0.9, ls="--", alpha=0.7)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{task}: value (solid) vs true progress (dashed)", fontsize=8)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("green: success, red: failure")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ranking(rank: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rank), figsize=(4.2 * len(rank), 3.4), squeeze=False)
    for ax, (task, v) in zip(axes[0], rank.items()):
        for p, x in v["policies"].items():
            ax.scatter(x["success_rate"], x["mean_return"], s=18)
            ax.annotate(p, (x["success_rate"], x["mean_return"]), fontsize=7)
        ax.set_title(f"{task}: Kendall tau {fmt(v['kendall_tau'])}", fontsize=9)
        ax.set_xlabel("true success rate")
        ax.set_ylabel("mean critic return")
        ax.set_xlim(-0.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The RL run's final report: success on evaluation episodes and return per robot (PNG), and a
summary table (report.md) from the logs the loop wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vlac.utils.report import decoding_label, fmt, markdown_table, mean_of_known, pyplot


# loop_stats.json figures shown in report.md (and collected by benchmarks/bench_rl.py)
SPEED_KEYS = ("episodes_per_hour", "obs_to_action_median", "obs_to_action_p99", "capture_to_action_median",
              "capture_to_action_p99", "assign_median", "assign_p99", "critic_seconds_per_pair",
              "reward_latency_median", "reward_latency_p99", "update_seconds_median", "learner_hold_s")
COUNTER_KEYS = ("robot_restarts", "worker_restarts", "learner_restarts", "data_service_restarts", "requeued",
                "unsaved_episodes", "unexecuted_actions", "late_answers", "episodes_capped", "request_errors",
                "scoring_errors", "learner_errors", "eval_errors", "no_oracle_episodes", "refused_handshakes")
REWARD_LABELS = {"dense": "critic, dense", "sparse": "critic, sparse (critic's done)",
                 "final": "critic, final (done of the last frames)",
                 "oracle-dense": "ORACLE dense: simulator's shaped reward (reference arm)",
                 "oracle-sparse": "ORACLE sparse: simulator's success flag (reference arm)",
                 "oracle-final": "ORACLE final: simulator's flag at the episode's end (reference arm)"}


def reward_label(run: str | Path) -> str:
    """How a run was rewarded, as every report and plot names it (oracle arms are marked)."""
    path = Path(run) / "rl_config.json"
    reward = json.loads(path.read_text()).get("learner", {}).get("reward", "dense") if path.is_file() else "dense"
    return REWARD_LABELS.get(reward, reward)


def read_log(path: Path) -> list[dict]:
    """The records of one of a run's JSON-lines logs (episodes, eval, learner); none if it is not
    there. A line cut by a kill mid-write is left out: the records before it hold."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _returns(episodes: list[dict], key: str) -> np.ndarray:
    """Each episode's ``key`` as floats: NaN where it has none (an episode cut by a stop has no
    success flag, ``None``; the oracle-sparse arm's return is that flag)."""
    return np.array([np.nan if e.get(key) is None else float(e[key]) for e in episodes], dtype=float)


def _smooth(y: np.ndarray, k: int = 10) -> np.ndarray:
    if len(y) < 2:
        return y
    k = max(1, min(k, len(y)))
    return np.convolve(y, np.ones(k) / k, mode="valid")


def _eval_tasks(evals: list[dict]) -> list[str]:
    return [t for t in evals[0] if t not in ("episodes", "version", "success", "seconds", "temperature", "mean") and isinstance(evals[0][t], float)]


def _split_final(evals: list[dict]) -> tuple[list[dict], dict | None]:
    """The evaluation curve and, apart, the evaluation made after the updates that drained the
    last episodes (it shares the previous one's episode count: drawn as a star, not a vertical
    jump of the curve), or None when there is none."""
    if len(evals) > 1 and evals[-1]["episodes"] == evals[-2]["episodes"]:
        return evals[:-1], evals[-1]
    return evals, None


def standard_errors(run: str | Path, evals: list[dict]) -> np.ndarray | None:
    """Binomial standard error of each evaluation's mean success, sqrt(p (1 - p) / n), n being the
    evaluation episodes behind it (all tasks together); None when the run does not say how many.
    20 episodes at p = 0.3 give 0.10: differences between two evaluations smaller than about twice
    that are noise, which the plots show as a band."""
    if not evals:
        return None
    path = Path(run) / "rl_config.json"
    per_task = json.loads(path.read_text()).get("eval_episodes") if path.is_file() else None
    n = [e.get("eval_episodes") or (per_task or 0) * len(_eval_tasks([e])) for e in evals]
    if not all(n):
        return None
    p = np.clip([e["success"] for e in evals], 0.0, 1.0)
    return np.sqrt(p * (1 - p) / np.asarray(n, dtype=float))


def reward_fidelity(episodes: list[dict]) -> list[dict]:
    """How well the critic's verdicts on training episodes agree with the simulator's success flag,
    per task and over all: done precision (simulator success among episodes the critic ended as
    done), done recall (successful episodes the critic ended as done), and mean critic return of
    successful against failed episodes. Measurement only: robots without a success flag (real
    ones) are left out, and nothing here reaches the learner."""
    known = [e for e in episodes if e.get("success") is not None]
    out = []
    for task in sorted({e["task"] for e in known}) + ["all"]:
        mine = [e for e in known if task in ("all", e["task"])]
        if not mine:
            continue
        ok = [e for e in mine if e["success"]]
        bad = [e for e in mine if not e["success"]]
        done = [e for e in mine if e["reason"] == "done"]
        out.append({"task": task, "episodes": len(mine), "successes": len(ok),
                    "ended_by_done": len(done),
                    "done_precision": float(np.mean([bool(e["success"]) for e in done])) if done else float("nan"),
                    "done_recall": float(np.mean([e["reason"] == "done" for e in ok])) if ok else float("nan"),
                    "return_successful": float(np.mean([e["return"] for e in ok])) if ok else float("nan"),
                    "return_failed": float(np.mean([e["return"] for e in bad])) if bad else float("nan")})
    return out


def _robot_label(robot: str, episodes: list[dict]) -> str:
    """A robot and the task(s) it ran, by their Meta-World names where known."""
    from vlac.data.tasks import TASKS

    names = {t.instruction: name for name, t in TASKS.items()}
    tasks = sorted({names.get(e["task"], e["task"][:30]) for e in episodes})
    return f"{robot}: {', '.join(tasks)}"


ENDED_BY = {"oracle-sparse": "episodes ended at the simulator's success flag"}
"""What ends an episode early (its reason "done") in an arm, where it is not the critic's done."""


HELD_STILL_WARN = 0.1
"""The share of robot steps held still (their action came after the control period) above which a run says so."""


def held_still_warning(stats: dict) -> str:
    """A sentence for a run whose robots often held still for want of an action in time ("" otherwise)."""
    held, steps = stats.get("held_still", 0), stats.get("transitions", 0)
    if not steps or held / steps < HELD_STILL_WARN:
        return ""
    p99 = stats.get("obs_to_action_p99", float("nan"))
    return (f"In {held} of {steps} steps ({held / steps:.0%}) no action reached the robot within its control "
            f"period, so it held still and the step was not trained on (observation to action: p99 {p99:.3f} s). "
            "Give the loop more compute (a GPU, `--inference-workers N`), fewer robots, or a longer `--period`.")


def _reward(run: Path) -> str:
    """The run's learner.reward (dense for a run folder without its config)."""
    path = run / "rl_config.json"
    return json.loads(path.read_text()).get("learner", {}).get("reward", "dense") if path.is_file() else "dense"


def _return_rows(episodes: list[dict], key: str = "return", name: str = "critic return") -> list[list]:
    """Mean return of the first and last episodes: 20 each, fewer for a short run (the two
    halves), none for a run of one episode."""
    n = min(20, len(episodes) // 2)
    if n < 1:
        return []
    ret = _returns(episodes, key)
    return [[f"mean {name}, first {n} episodes", fmt(mean_of_known(ret[:n]))],
            [f"mean {name}, last {n} episodes", fmt(mean_of_known(ret[-n:]))]]



def write_report(run: str | Path) -> Path:
    run = Path(run)
    episodes, evals, learner = read_log(run / "episodes.jsonl"), read_log(run / "eval.jsonl"), read_log(run / "learner.jsonl")
    stats = json.loads((run / "loop_stats.json").read_text()) if (run / "loop_stats.json").is_file() else {}
    plt = pyplot()
    label = reward_label(run)
    from vlac.rl.episodes import trained_return

    reward = _reward(run)
    key, name = trained_return(reward)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    fig.suptitle(f"{run.name}: rewards from {label}", fontsize=10)
    if evals:
        curve, final = _split_final(evals)
        x = [e["episodes"] for e in curve]
        y = np.array([e["success"] for e in curve])
        axes[0].plot(x, y, "o-", color="k", label="mean")
        se = standard_errors(run, curve)
        if se is not None:
            axes[0].fill_between(x, y - se, y + se, color="k", alpha=0.12, lw=0, label="mean +- 1 standard error")
        for task in _eval_tasks(evals):
            axes[0].plot(x, [e.get(task, float("nan")) for e in curve], ".--", alpha=0.7, label=task)
        if final:
            axes[0].plot(final["episodes"], final["success"], "*", ms=11, color="k",
                         label="mean, after the last updates")
        axes[0].legend(fontsize=8)
    axes[0].set(xlabel="training episodes", ylabel="success (evaluation episodes)", ylim=(-0.03, 1.03),
                title="success (simulator flag)")
    for robot in sorted({e["robot"] for e in episodes}):
        mine = [e for e in episodes if e["robot"] == robot]
        x, raw = [e["n"] for e in mine], _returns(mine, key)
        line = axes[1].plot(x, raw, ".", alpha=0.35)[0]
        y = _smooth(raw, max(1, len(raw) // 4))
        axes[1].plot(x[len(x) - len(y):], y, "-", color=line.get_color(), label=_robot_label(robot, mine))
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set(xlabel="training episodes", ylabel=f"{name} (smoothed)", title="reward per robot")
    for robot in sorted({e["robot"] for e in episodes if e.get("success") is not None}):
        mine = [e for e in episodes if e["robot"] == robot and e.get("success") is not None]
        y = _smooth(np.array([float(e["success"]) for e in mine]), max(1, len(mine) // 4))
        axes[2].plot([e["n"] for e in mine][len(mine) - len(y):], y, "-", label=_robot_label(robot, mine))
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # episodes are whole
    axes[2].set(xlabel="training episodes", ylabel="success (rolling mean)", ylim=(-0.03, 1.03),
                title="training episodes per robot (simulator flag)")
    if episodes:
        axes[1].legend(fontsize=8)
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=120)
    plt.close(fig)
    rows = [["reward source", label], ["episodes", len(episodes)], ["policy updates", len(learner)],
            ["evaluation success, first", fmt(evals[0]["success"]) if evals else "-"],
            ["evaluation success, last", fmt(evals[-1]["success"]) if evals else "-"],
            *_return_rows(episodes, key, name),
            [ENDED_BY.get(reward, "episodes ended by the critic's done"), sum(e["reason"] == "done" for e in episodes)],
            ["simulator success among training episodes", fmt(mean_of_known(_returns(episodes, "success"))) if episodes else "-"]]
    for k in SPEED_KEYS:
        if k in stats:
            unit = "episodes/h" if k == "episodes_per_hour" else "s"
            name = k.replace("_", " ").removesuffix(" s")  # learner_hold_s: "learner hold (s)"
            rows.append([f"{name} ({unit})", fmt(stats[k], 1 if unit == "episodes/h" else 3)])
    for stage, sec in stats.get("seconds_per_episode", {}).items():  # each stage's busy time per episode
        rows.append([f"seconds per episode: {stage}" + (" (busy)" if stage != "wall" else ""), fmt(sec, 2)])
    for k in COUNTER_KEYS:
        if k in stats:
            rows.append([k.replace("_", " "), stats[k]])
    if stats.get("transitions"):
        rows.append(["steps the robots held still (no action within their control period)",
                     f"{stats.get('held_still', 0)} of {stats['transitions']}"])
    if stats.get("gateway_errors"):
        rows.append(["gateway errors", ", ".join(f"{c}: {n}" for c, n in sorted(stats["gateway_errors"].items()))])
    if learner:
        last = learner[-1]
        for k in ("clip_fraction", "approx_kl", "gradient_steps", "entropy", "explained_variance", "return_scale",
                  "inference_ratio_drift", "policy_lag"):
            if k in last:
                rows.append([f"last update: {k.replace('_', ' ')}", fmt(last[k], 3)])
        lags = [u["policy_lag"] for u in learner if np.isfinite(u.get("policy_lag", float("nan")))]
        if lags:  # how far the robots' policy trailed the learner: large means off-policy updates
            rows.append(["policy lag, mean over updates (updates)", fmt(float(np.mean(lags)), 2)])
    md = ("# RL run\n\n![curves](curves.png)\n\n" + markdown_table(["", "value"], rows) + "\n\n"
          + ("Success is measured on separate evaluation episodes with the simulator's flag, which the learner never "
             "sees; rewards and done come from the critic only.\n" if not label.startswith("ORACLE") else
             "**A reference arm:** the learner was rewarded by the simulator itself (" + label + "), which no "
             "real robot has; it measures what the learner can do with a perfect reward, the ceiling and baseline "
             "for the critic's arms. Success is measured on separate evaluation episodes.\n"))
    behind = held_still_warning(stats)
    if behind:
        md += "\n**The loop did not keep up with the robots.** " + behind + "\n"
    if evals:
        tasks = _eval_tasks(evals)
        temp = evals[0].get("temperature", 0.0)
        mixed = len({decoding_label(e) for e in evals}) > 1
        how = ("The evaluations of this run read the actions in different ways (column `decoding`): success "
               "figures of two decodings are not comparable." if mixed else
               f"Each number nearest its expected value under the policy at temperature {temp or 1:g}." if evals[0].get("mean")
               else f"Actions sampled at temperature {temp:g} (the policy the robots run)." if temp > 0 else
               "Greedy actions (the most likely value of each number).")
        md += ("\n## Evaluation success per task\n\n" + how + "\n\n"
               + markdown_table(["training episodes", "policy update", *tasks, "mean", *(["decoding"] if mixed else []),
                                 "actor kept in"],
                                [[e["episodes"], e.get("version", "-"), *[fmt(e.get(t, float("nan"))) for t in tasks],
                                  fmt(e["success"]), *([decoding_label(e)] if mixed else []), e.get("model", "-")]
                                 for e in evals]) + "\n")
    fid = reward_fidelity([e for e in episodes if np.isfinite(e["return"])])  # none without a critic
    if fid:
        md += ("\n## The critic against the simulator's flag on training episodes\n\n"
               + markdown_table(["task", "episodes", "successes", "ended by done", "done precision", "done recall",
                                 "return, successful", "return, failed"],
                                [[f["task"], f["episodes"], f["successes"], f["ended_by_done"], fmt(f["done_precision"]),
                                  fmt(f["done_recall"]), fmt(f["return_successful"]), fmt(f["return_failed"])]
                                 for f in fid])
               + "\n\nA critic worth learning from ends successful episodes (recall) and only those (precision), "
               "and gives successful episodes the higher return. Measurement only: the learner never sees the flag.\n")
    (run / "report.md").write_text(md)
    return run / "report.md"


def training_success(episodes: list[dict], block: int) -> tuple[np.ndarray, np.ndarray]:
    """The share of a run's training episodes that succeeded, per ``block`` episodes in the order they
    ended (x: episodes at each block's end; a last block shorter than half of ``block`` is left out).
    ``success`` is the simulator's flag in simulation, read for measurement only; an episode without
    one (cut by a stop, or a real robot's unlabelled episode) is left out of its block."""
    flags = _returns(episodes, "success")
    x, y = [], []
    for end in range(block, len(flags) + block, block):
        part = flags[end - block:min(end, len(flags))]
        known = part[~np.isnan(part)]
        if len(part) * 2 < block or not len(known):
            continue
        x.append(min(end, len(flags)))
        y.append(float(known.mean()))
    return np.array(x), np.array(y)


def compare(runs: list[str], names: list[str] | None, out: str | Path, block: int = 25) -> None:
    """Evaluation success against training episodes for several runs on one plot (e.g. dense
    critic rewards against the oracle-sparse baseline); each run is labelled with its reward
    source (oracle arms marked as references) after its name (default: the run folder's). Beside
    it, the training episodes' own success per ``block`` episodes (sampled actions; the simulator's
    flag, for measurement), which also draws runs that were not evaluated (``--eval-episodes 0``)."""
    plt = pyplot()
    names = names or [Path(r).name for r in runs]
    logs = [read_log(Path(run) / "eval.jsonl") for run in runs]
    if any(logs):
        fig, (ax, tx) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    else:  # nothing evaluated: the training episodes alone
        fig, tx = plt.subplots(figsize=(7, 3.8))
        ax = tx
    banded = starred = False
    decodings = [", ".join(dict.fromkeys(decoding_label(e) for e in evals)) or "not evaluated" for evals in logs]
    rated = [how for how, evals in zip(decodings, logs) if evals]
    alike = len(set(rated)) <= 1
    if not alike:  # one button actor: 0.275 greedy, 0.875 by the mean (BENCHMARKS.md)
        print("warning: these runs were evaluated with different decodings ("
              + "; ".join(f"{n}: {d}" for n, d, e in zip(names, decodings, logs) if e) + "), so their success "
              "figures are not comparable; evaluate them alike (`vlac rl ... --eval-mean` / `--eval-temperature`, "
              "the same for every run)")
    for run, name, evals, how in zip(runs, names, logs, decodings):
        oracle = reward_label(run).startswith("ORACLE")
        label = f"{name} ({reward_label(run)}" + ("" if alike or not evals else f"; {how}") + ")"
        if evals:
            curve, final = _split_final(evals)
            x, y = [e["episodes"] for e in curve], np.array([e["success"] for e in curve])
            line = ax.plot(x, y, "s--" if oracle else "o-", label=label)[0]
            color = line.get_color()
            se = standard_errors(run, curve)
            if se is not None:
                ax.fill_between(x, y - se, y + se, color=color, alpha=0.12, lw=0)
                banded = True
            if final:
                ax.plot(final["episodes"], final["success"], "*", ms=11, color=color)
                starred = True
        else:
            color = ax.plot([], [], "s--" if oracle else "o-", label=f"{label}: not evaluated")[0].get_color()
        tx_x, tx_y = training_success(read_log(Path(run) / "episodes.jsonl"), block)
        tx.plot(tx_x, tx_y, "s--" if oracle else "o-", color=color, ms=4)
    if starred:
        ax.plot([], [], "*", color="gray", label="after the last updates (same episodes, more training)")
    if banded:
        ax.fill_between([], [], [], color="gray", alpha=0.2, label="+- 1 standard error (evaluation episodes)")
    if ax is not tx:
        ax.set(xlabel="training episodes", ylabel="success (evaluation episodes)", ylim=(-0.02, 1.02),
               title=f"evaluation actions: {rated[0]}" if alike else "evaluation actions: DIFFERENT decodings (see legend)")
    tx.set(xlabel="training episodes", ylabel=f"success per {block} training episodes", ylim=(-0.02, 1.02),
           title="training episodes (sampled; simulator's flag)")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=2, frameon=False)  # under both panels, never over the curves
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)

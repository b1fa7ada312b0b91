"""A critic's done detector on saved policy rollouts, without scoring progress (a few times faster
than `vlac critic fidelity`, which scores both): for comparing done detectors on the same episodes.

    python benchmarks/done_detector.py --critic runs/critic-b/model --rollouts runs/fid-val-lever \
        --threads 2 --out runs/fid-val-lever/done-critic-b.json

The rollouts are a `vlac critic fidelity --out DIR` folder's `rollouts/POLICY/TASK/SEED.npz`; only
the actor's own (`--policy`, default `actor@1`, the loop's sampling) are read. Every frame after the
first gets p(done), as the loop's critic worker asks it after every step. Per task and over all:
- the loop's done rule (`--threshold`, `--patience`, no value gate): precision (episodes it ends at
  or after the first successful frame, among those it ends) and on-time recall (among successes);
- frame AUC: p(done) on frames where the task is done (the simulator's flag) against frames of the
  failed episodes' second halves (the arm up beside a missed lever, the hand hovering off the goal);
- episode AUC: the mean p(done) of the last 10 frames, successes against failures;
- the rule (threshold x patience) chosen on half of all episodes by the F1 of precision and on-time
  recall, and its figures on the other half (as `vlac critic fidelity` chooses it).
Success and the flag come from the simulator and are used only to measure.

With ``--run RUN`` it reads an RL run's own episodes instead (``RUN/episodes``, the policy as it
moved during the run) and gives the AUC of the `final` verdict (mean p(done) of the last 10
frames, the loop's `final` reward) in windows of ``--window`` episodes, beside the verdict the
loop itself logged, if any: does a done detector still tell the policy's failures from its
successes after the learner has trained on it?

    python benchmarks/done_detector.py --critic runs/button-critic-done/model --run runs/button-final \
        --threads 2 --out runs/button-final/done-drift.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def measures(rows: list[dict], threshold: float, patience: int) -> dict:
    from vlac.critic.metrics import DoneRule
    from vlac.eval.fidelity import auc, done_outcomes

    good = [r for r in rows if r["success"]]
    bad = [r for r in rows if not r["success"]]
    done = [r["p_done"][r["flags"][1:]] for r in good]
    late = [r["p_done"][len(r["p_done"]) // 2:] for r in bad]
    precision, recall = done_outcomes(rows, DoneRule(threshold, patience, 0.0))
    return {"episodes": len(rows), "successes": len(good), "precision": precision, "recall": recall,
            "frame_auc": auc(np.concatenate(done) if done else [], np.concatenate(late) if late else []),
            "episode_auc": auc([r["p_done"][-10:].mean() for r in good], [r["p_done"][-10:].mean() for r in bad]),
            "mean_p_done_frames": float(np.mean(np.concatenate(done))) if done else float("nan"),
            "mean_p_failed_late": float(np.mean(np.concatenate(late))) if late else float("nan")}


def run_drift(critic, run: Path, window: int) -> dict:
    """The `final` verdict's AUC on an RL run's own episodes, per window of ``window`` episodes."""
    from vlac.data.dataset import LeRobotDataset
    from vlac.eval.fidelity import auc
    from vlac.rl.episodes import FINAL_FRAMES

    lines = [json.loads(x) for x in (run / "episodes.jsonl").read_text().splitlines() if x.strip()]
    data = LeRobotDataset(run / "episodes")
    # a line's `n` is its episode's place in the dataset, counted from 1
    if any(not 1 <= line["n"] <= data.num_episodes for line in lines):
        raise SystemExit(f"error: {run}/episodes.jsonl names episodes beyond the {data.num_episodes} of {run}/episodes; "
                         "give a finished run (or repair it with `vlac data repair`)")
    if len(lines) < data.num_episodes:
        print(f"note: {data.num_episodes - len(lines)} of the {data.num_episodes} episodes have no line in episodes.jsonl "
              "(open when an older vlac stopped the run) and are left out")
    rows = []
    for line in tqdm(lines, desc="final verdicts", unit="ep"):
        ep = data.episode(line["n"] - 1)
        frames = ep.images[data.camera_keys[0]][-FINAL_FRAMES:]
        p = np.asarray(critic.done(list(frames), ep.task), np.float64)
        rows.append({"n": line["n"], "success": bool(line["success"]), "final": float(p.mean()),
                     "logged": line.get("final_return")})
    out = []
    for lo in range(0, len(rows), window):
        w = rows[lo:lo + window]
        good, bad = [r for r in w if r["success"]], [r for r in w if not r["success"]]
        logged = all(r["logged"] is not None and np.isfinite(r["logged"]) for r in w)  # NaN: a run without a critic
        out.append({"episodes": f"{lo + 1}-{lo + len(w)}", "successes": len(good), "failures": len(bad),
                    "auc": auc([r["final"] for r in good], [r["final"] for r in bad]),
                    "mean_final_failed": float(np.mean([r["final"] for r in bad])) if bad else float("nan"),
                    "mean_final_successful": float(np.mean([r["final"] for r in good])) if good else float("nan"),
                    "auc_logged": auc([r["logged"] for r in good], [r["logged"] for r in bad]) if logged else None})
    return {"windows": out, "episodes": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--critic", default="builtin", help="builtin or a checkpoint folder")
    ap.add_argument("--rollouts", default="", help="a `vlac critic fidelity --out` folder with rollouts/")
    ap.add_argument("--run", default="", help="or an RL run folder: the `final` verdict on its own episodes")
    ap.add_argument("--window", type=int, default=50, help="--run: episodes per AUC window")
    ap.add_argument("--policy", default="actor@1", help="whose rollouts (a folder under rollouts/)")
    ap.add_argument("--threshold", type=float, default=0.9, help="the loop's done rule: p(done) at least this ...")
    ap.add_argument("--patience", type=int, default=4, help="... on this many transitions in a row")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default="", help="write the figures here as JSON")
    args = ap.parse_args()

    from vlac.critic.critic import Critic
    from vlac.data.tasks import TASKS
    from vlac.eval.fidelity import Episode, choose_done_rule
    from vlac.utils.imports import set_threads

    if bool(args.rollouts) == bool(args.run):
        raise SystemExit("error: give --rollouts DIR (saved rollouts) or --run RUN (an RL run's episodes), one of them")
    set_threads(args.threads)
    critic = Critic.load(args.critic)
    if args.run:
        start = time.perf_counter()
        report = {"critic": args.critic, "run": args.run, **run_drift(critic, Path(args.run), args.window)}
        print(f"{'episodes':>9s} {'succ':>4s} {'fail':>4s} {'AUC':>5s} {'logged':>6s} {'final|fail':>10s} {'final|succ':>10s}")
        for w in report["windows"]:
            logged = "" if w["auc_logged"] is None else f"{w['auc_logged']:.2f}"
            print(f"{w['episodes']:>9s} {w['successes']:4d} {w['failures']:4d} {w['auc']:5.2f} {logged:>6s} "
                  f"{w['mean_final_failed']:10.2f} {w['mean_final_successful']:10.2f}")
        print(f"{time.perf_counter() - start:.0f} s")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1))
        return
    paths = sorted((Path(args.rollouts) / "rollouts" / args.policy).glob("*/*.npz"))
    if not paths:
        raise SystemExit(f"error: no {args.rollouts}/rollouts/{args.policy}/TASK/SEED.npz; write rollouts with "
                         "`vlac critic fidelity --rollouts-only --out DIR`")
    rows, start = [], time.perf_counter()
    for path in tqdm(paths, desc="done", unit="ep"):
        e = Episode.load(path, args.policy, path.parent.name, int(path.stem))
        flags = np.asarray(e.flags, bool)
        p = np.asarray(critic.done(list(e.frames[1:]), TASKS[e.task].instruction), np.float64)
        rows.append({"task": e.task, "success": e.success, "first_success": int(np.argmax(flags)) if e.success else None,
                     "p_done": p, "values": np.ones(len(e.frames)), "flags": flags})
    seconds = time.perf_counter() - start
    report = {"critic": args.critic, "rollouts": args.rollouts, "policy": args.policy,
              "rule": {"threshold": args.threshold, "patience": args.patience}, "seconds": round(seconds, 1),
              "tasks": {t: measures([r for r in rows if r["task"] == t], args.threshold, args.patience)
                        for t in sorted({r["task"] for r in rows})},
              "all": measures(rows, args.threshold, args.patience),
              "chosen_rule": choose_done_rule(rows, gates=(0.0,))}
    print(f"{'task':15s} {'eps':>4s} {'succ':>4s} {'P':>5s} {'R':>5s} {'frameAUC':>8s} {'epAUC':>6s}")
    for name, m in [*report["tasks"].items(), ("all", report["all"])]:
        print(f"{name:15s} {m['episodes']:4d} {m['successes']:4d} {m['precision']:5.2f} {m['recall']:5.2f} "
              f"{m['frame_auc']:8.2f} {m['episode_auc']:6.2f}")
    c = report["chosen_rule"]
    print(f"rule chosen on half: p(done) >= {c['threshold']} on {c['patience']} transitions: precision / recall "
          f"{c['precision_fit']:.2f} / {c['recall_fit']:.2f} there, {c['precision_held_out']:.2f} / "
          f"{c['recall_held_out']:.2f} on the other half ({c['episodes_held_out']} episodes); {seconds:.0f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

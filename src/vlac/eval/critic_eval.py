"""``vlac critic eval`` and ``vlac critic filter``.

eval scores every episode of one or more datasets forward (VOC, NR) and reversed (VROC),
zero-shot and one-shot (reference: another successful episode of the same task), next to
simple baselines on the same episodes, and checks done predictions against the simulator's
per-frame success flag. Rows follow the paper's Table 1: one per split (seen / held-out task),
scene variant, and successful vs failed episodes.

    vlac critic eval --dataset runs/eval-seen runs/eval-heldout --out runs/report
    vlac critic filter --dataset runs/new-demos --out runs/filter      # flags low-VOC episodes
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlac.critic import metrics as M
from vlac.utils.report import fmt, markdown_table, mean_of_known, plot_value_curves
from vlac.data.lerobot_format import DatasetError
from vlac.data.tasks import TASKS
from vlac.utils.imports import set_threads

BASELINES = {
    "frame-index": "value = time (t / T); knows nothing about the task",
    "pixel-to-own-end": "value = -pixel distance to the episode's own last frame (sees the outcome)",
    "pixel-to-ref-end": "value = -pixel distance to the reference episode's last frame",
}


@dataclass
class EvalConfig:
    dataset: list[str]
    """Dataset folders; every episode is evaluated."""
    out: str
    """Report folder: report.md, report.json, episodes.jsonl and value-curve PNGs."""
    critic: str = "builtin"
    """Critic: builtin (the built-in tiny critic) or a checkpoint folder."""
    skip: int = 3
    """Frame step between the two images of each scored pair."""
    camera: str = ""
    """Camera key (default: each dataset's first)."""
    one_shot: bool = True
    """Also score one-shot, with another successful episode of the same task as reference."""
    reference_dataset: list[str] = field(default_factory=list)
    """Where references come from (default: the evaluated dataset itself)."""
    decoding: str = "rich"
    """rich or greedy."""
    max_episodes: int = 0
    """Evaluate at most this many episodes per dataset (0: all)."""
    done_threshold: float = 0.5
    """p(done) above which a frame counts as done."""
    done_min_value: float = 0.0
    """Progress-gated done: a frame counts as done only where the critic's own zero-shot value
    curve has reached this (0: off). Choose it with ``vlac critic calibrate-done`` on a validation
    collection."""
    symmetric: bool = False
    """Score each pair both ways and average (forward minus reverse reading, halved)."""
    threads: int = 0
    """torch threads (0: torch's default; set it to the cores this command may use, e.g. 1 beside a
    running `vlac rl`, or the model runs many times slower)."""


def _split_of(meta: dict) -> str:
    spec = TASKS.get(meta.get("env_task", ""))
    return {"train": "seen", "heldout": "held-out"}.get(spec.split, spec.split) if spec else "all"


def _pixel_values(frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    d = np.abs(frames.astype(np.float32) - goal.astype(np.float32)[None]).mean(axis=(1, 2, 3))
    return -d


def _baselines(frames: np.ndarray, idx: list[int], ref_end: np.ndarray | None) -> dict:
    """VOC/VROC/NR of value curves that need no model, on the same scored frames."""
    f = frames[idx]
    rev = f[::-1]
    out = {}
    curves = {"frame-index": (np.arange(len(f), dtype=float), np.arange(len(f), dtype=float)),
              "pixel-to-own-end": (_pixel_values(f, f[-1]), _pixel_values(rev, rev[-1]))}
    if ref_end is not None:
        curves["pixel-to-ref-end"] = (_pixel_values(f, ref_end), _pixel_values(rev, ref_end))
    for name, (fwd, bwd) in curves.items():
        out[name] = {"voc": M.voc(fwd), "vroc": M.vroc(bwd), "nr": M.negative_rate(np.diff(fwd))}
    return out


def _critic_metrics(critic, frames, task, skip, reference, decoding) -> dict:
    fwd = critic.score_trajectory(frames, task, skip=skip, reference=reference, decoding=decoding, with_done=False)
    bwd = critic.score_trajectory(frames[::-1], task, skip=skip, reference=reference, decoding=decoding,
                                  with_done=False)
    return {"voc": M.voc(M.value_curve(fwd.deltas, clamp=False)),
            "vroc": M.vroc(M.value_curve(bwd.deltas, clamp=False)),
            "nr": M.negative_rate(fwd.deltas), "final_value": float(fwd.values[-1]),
            "indices": fwd.indices, "values": fwd.values.tolist()}


def _references(datasets, cam: str | None, limit_per_task: int = 2) -> dict[str, list]:
    """A few successful episodes per task: (source id, frames)."""
    refs: dict[str, list] = {}
    for ds in datasets:
        key = cam or ds.camera_keys[0]
        for i in range(ds.num_episodes):
            m = ds.meta(i)
            if m.get("success") and len(refs.get(m["task"], [])) < limit_per_task:
                ep = _readable(ds, i, [])
                if ep is not None:
                    refs.setdefault(m["task"], []).append((f"{ds.root}#{i}", ep.images[key]))
    return refs


def evaluate(cfg: EvalConfig) -> dict:
    from vlac.critic.critic import Critic, Reference
    from vlac.data.dataset import LeRobotDataset

    datasets = [LeRobotDataset(p) for p in cfg.dataset]
    ref_sets = [LeRobotDataset(p) for p in cfg.reference_dataset] or datasets
    refs = _references(ref_sets, cfg.camera or None) if cfg.one_shot else {}
    set_threads(cfg.threads)
    critic = Critic.load(cfg.critic, symmetric=cfg.symmetric)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    total = sum(min(ds.num_episodes, cfg.max_episodes or ds.num_episodes) for ds in datasets)
    bar = tqdm(total=total, desc="eval", unit="ep")
    skipped: list[str] = []
    for ds in datasets:
        key = cfg.camera or ds.camera_keys[0]
        for i in range(min(ds.num_episodes, cfg.max_episodes or ds.num_episodes)):
            m, ep = ds.meta(i), _readable(ds, i, skipped)
            if ep is None:  # named, skipped; the episodes scored so far are kept
                bar.update(1)
                continue
            frames, task = ep.images[key], ep.task
            rec = {"dataset": str(ds.root), "episode": i, "task": task, "env_task": m.get("env_task", ""),
                   "split": _split_of(m), "variant": m.get("scene_variant", "default"),
                   "behaviour": m.get("behaviour", ""),
                   # None where the episode carries no flag (a real robot's, an episode cut by a stop):
                   # neither a success nor a failure in the tables below
                   "success": ep.is_success,
                   "length": int(len(frames))}
            rec["zero_shot"] = _critic_metrics(critic, frames, task, cfg.skip, None, cfg.decoding)
            ref = next((fr for src, fr in refs.get(task, []) if src != f"{ds.root}#{i}"), None)
            if ref is not None:
                rec["one_shot"] = _critic_metrics(critic, frames, task, cfg.skip, Reference.from_episode(ref),
                                                  cfg.decoding)
            idx = rec["zero_shot"]["indices"]
            rec["baselines"] = _baselines(frames, idx, ref[-1] if ref is not None else None)
            if ep.success is not None:
                p = critic.done([frames[t] for t in idx], task)
                gated = M.gate_done(p, rec["zero_shot"]["values"], cfg.done_min_value)
                rec["done"] = {"pred": M.done_frames(gated, cfg.done_threshold).tolist(),
                               "truth": ep.success[idx].astype(bool).tolist(), "p": [round(float(x), 4) for x in p]}
                if ref is not None:  # in-context done: the reference episode's last frame shown first
                    p = critic.done([frames[t] for t in idx], task, goal=ref[-1])
                    rec["done_goal"] = {"truth": rec["done"]["truth"], "p": [round(float(x), 4) for x in p]}
            if rec["success"]:
                said = critic.describe(frames[0], frames[-1])
                rec["describe"] = {"text": said, "exact": said == " ".join(task.lower().split())}
            records.append(rec)
            bar.update(1)
            bar.set_postfix(voc=f"{rec['zero_shot']['voc']:.2f}")
    bar.close()
    with open(out / "episodes.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return _write_report(records, {**asdict(cfg), "skipped": skipped}, out)


def _readable(ds, index: int, skipped: list[str]):
    """Episode ``index``, or None after one line naming why it cannot be read (added to ``skipped``)."""
    try:
        return ds.episode(index)
    except DatasetError as e:
        skipped.append(f"{ds.root} episode {index}: {str(e).splitlines()[0]}")
        tqdm.write(f"skipping {skipped[-1]}")
        return None


def _write_report(records: list[dict], cfg: dict, out: Path) -> dict:
    if not records:
        raise DatasetError(f"no episode could be scored ({len(cfg.get('skipped', []))} unreadable); see "
                           f"`vlac data info DATASET --check`")
    report = summarise(records, cfg.get("done_threshold", 0.5), cfg.get("done_min_value", 0.0))
    report["config"] = cfg
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(render_markdown(report))
    _plots(records, out)
    print(render_markdown(report))
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and value-curve plots")
    return report


def read_episodes(path: Path) -> list[dict]:
    """The per-episode records of an ``episodes.jsonl`` that ``vlac critic eval`` wrote."""
    records = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n} is not a JSON record ({e}); re-run vlac critic eval") from None
    return records


def rebuild_report(folder: str) -> dict:
    """Summarise a ``vlac critic eval`` folder again from its episodes.jsonl, with the settings
    stored in its report.json (no model is run): rewrites report.json, report.md and the plots,
    e.g. after a change to how the table is grouped."""
    out = Path(folder)
    if not (out / "episodes.jsonl").is_file() or not (out / "report.json").is_file():
        raise FileNotFoundError(f"{folder}: needs episodes.jsonl and report.json; give a folder written by "
                                "`vlac critic eval --out`")
    records = read_episodes(out / "episodes.jsonl")
    if not records:
        raise ValueError(f"{out / 'episodes.jsonl'} has no episodes; re-run vlac critic eval")
    return _write_report(records, json.loads((out / "report.json").read_text()).get("config", {}), out)


def _group_key(r: dict) -> str:
    """Table row of an episode. Successful episodes of a non-expert behaviour (a regression
    episode that reaches the goal and then undoes it) get a row of their own: their true progress
    is not monotone in time, so they would blur the expert-episode row the paper's VOC targets."""
    outcome = {True: "successful", False: "failed"}.get(r["success"], "no success flag")
    behaviour = r.get("behaviour", "")
    if r["success"] and behaviour not in ("", "expert"):
        outcome += f" ({behaviour})"
    return f"{r['split']} / {r['variant']} / {outcome}"


def _row(rs: list[dict], getter) -> dict:
    got = [getter(r) for r in rs]
    got = [g for g in got if g is not None]
    voc, vroc = mean_of_known(g["voc"] for g in got), mean_of_known(g["vroc"] for g in got)
    return {"voc": voc, "vroc": vroc, "voc_f1": M.voc_f1(voc, vroc), "nr": mean_of_known(g["nr"] for g in got),
            "final_value": mean_of_known(g.get("final_value") for g in got), "n": len(got)}


def _gated_p(r: dict, min_value: float, key: str = "done") -> np.ndarray:
    return M.gate_done(r[key]["p"], r["zero_shot"]["values"], min_value)


def _terminations(gated: list[np.ndarray], truths: list[list[bool]], threshold: float) -> dict:
    """Episode-level view of done (what the RL loop experiences): with patience 1 and 2 scored
    frames, the share of episodes ended early, on time, never (successful) or correctly never
    (failed). ``gated``: each episode's (value-gated) p(done)."""
    out = {}
    for patience in (1, 2):
        kinds = [M.termination(p, t, threshold, patience) for p, t in zip(gated, truths)]
        out[f"patience {patience}"] = {k: (kinds.count(k) / len(kinds) if kinds else float("nan"))
                                       for k in ("early", "on-time", "missed", "correct-none")}
        out[f"patience {patience}"]["n"] = len(kinds)
    return out


def done_scores(records: list[dict], threshold: float = 0.5, min_value: float = 0.0, key: str = "done") -> dict:
    """Per split: frame-level accuracy / precision / recall / F1 of ``p(done) >= threshold`` (gated
    by the zero-shot value curve at ``min_value``) against the simulator's flag, and the
    episode-level terminations. ``key``: ``done`` (the done prompt) or ``done_goal`` (in-context
    done with the reference's goal image; episodes that had a reference)."""
    done = {}
    for split in sorted({r["split"] for r in records}):
        rs = [r for r in records if r["split"] == split and "p" in r.get(key, {})]
        if not rs:
            continue
        gated = [_gated_p(r, min_value, key) for r in rs]
        truths = [r[key]["truth"] for r in rs]
        done[split] = M.binary_scores(M.done_frames(np.concatenate(gated), threshold), [t for ts in truths for t in ts])
        done[split]["episodes"] = _terminations(gated, truths, threshold)
    return done


def summarise(records: list[dict], threshold: float = 0.5, min_value: float = 0.0) -> dict:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_group_key(r), []).append(r)
    methods = {"zero-shot": lambda r: r["zero_shot"], "one-shot": lambda r: r.get("one_shot")}
    methods.update({b: (lambda r, b=b: r["baselines"].get(b)) for b in BASELINES})
    table = {g: {name: _row(rs, get) for name, get in methods.items()} for g, rs in sorted(groups.items())}
    done = done_scores(records, threshold, min_value)
    # In-context done next to the plain done prompt on the same episodes (those with a reference).
    with_goal = [r for r in records if "done_goal" in r]
    plain = done_scores(with_goal, threshold, min_value)
    done_goal = {split: {"in-context": d, "plain": plain[split]}
                 for split, d in done_scores(with_goal, threshold, min_value, "done_goal").items()}
    # Failed vs successful episodes of the same tasks: the critic should rank failures lower.
    separation = {}
    for split in sorted({r["split"] for r in records}):
        rs = [r for r in records if r["split"] == split]
        tasks = {r["task"] for r in rs if r["success"] is False} & {r["task"] for r in rs if r["success"]}
        for mode in ("zero_shot", "one_shot"):
            ok = [r[mode]["voc"] for r in rs if r["task"] in tasks and r["success"] and mode in r]
            bad = [r[mode]["voc"] for r in rs if r["task"] in tasks and r["success"] is False and mode in r]
            okv = [r[mode]["final_value"] for r in rs if r["task"] in tasks and r["success"] and mode in r]
            badv = [r[mode]["final_value"] for r in rs if r["task"] in tasks and r["success"] is False and mode in r]
            separation[f"{split} / {mode}"] = {"voc_successful": mean_of_known(ok), "voc_failed": mean_of_known(bad),
                                               "voc_gap": mean_of_known(ok) - mean_of_known(bad), "final_value_successful": mean_of_known(okv),
                                               "final_value_failed": mean_of_known(badv), "tasks": len(tasks)}
    describe = {}
    for split in sorted({r["split"] for r in records}):
        hits = [r["describe"]["exact"] for r in records if r["split"] == split and "describe" in r]
        describe[split] = {"exact_match": mean_of_known(hits), "n": len(hits)}
    return {"table": table, "done": done, "done_goal": done_goal, "separation": separation, "describe": describe,
            "baselines": BASELINES, "episodes": len(records)}


def _method_table(report: dict, methods: list[str]) -> str:
    header = ["episodes (split / variant / outcome)", "n"]
    for m in methods:
        header += [f"{m} VOC", "VROC", "VOC-F1", "NR"]
    rows = []
    for g, by in report["table"].items():
        row = [g, by["zero-shot"]["n"]]
        for m in methods:
            c = by[m]
            row += [c["voc"], c["vroc"], c["voc_f1"], c["nr"]] if c["n"] else ["-"] * 4
        rows.append(row)
    return markdown_table(header, rows)


def _done_rule(cfg: dict) -> str:
    rule = f"A frame is done where p(done) >= {cfg.get('done_threshold', 0.5)}"
    if cfg.get("done_min_value", 0.0) > 0:
        rule += f" and the critic's zero-shot value is at least {cfg['done_min_value']} (progress-gated)"
    return rule + "."


def _how_made(cfg: dict) -> str:
    """The settings behind a report, so a number can be traced to the run that made it."""
    if not cfg:
        return ""
    def names(v) -> str:  # a list, or a comma string in reports of earlier releases
        return ", ".join(v) if isinstance(v, list) else str(v)

    refs = ("off" if not cfg.get("one_shot", True) else
            f"another successful episode of the task from {names(cfg.get('reference_dataset') or 'the evaluated data')}")
    return (f"Made by `vlac critic eval` on {names(cfg.get('dataset', '?'))}: critic {cfg.get('critic') or cfg.get('checkpoint') or 'builtin'}, "
            f"{'symmetric' if cfg.get('symmetric') else 'plain'} reading, frame skip {cfg.get('skip', '?')}, "
            f"{cfg.get('decoding', 'rich')} decoding, one-shot reference: {refs}.")


def render_markdown(report: dict) -> str:
    parts = ["# Critic evaluation", "", _how_made(report.get("config", {})), "", "Progress understanding (paper Table 1 layout; means over episodes, "
             "VOC-F1 from the row's VOC and VROC):", "", _method_table(report, ["zero-shot", "one-shot"]), "",
             "Baselines on the same episodes and frames:", "", _method_table(report, list(BASELINES)), "",
             "; ".join(f"**{k}**: {v}" for k, v in report["baselines"].items()), "",
             "## Done detection against the simulator's success flag (scored frames)", "",
             _done_rule(report.get("config", {})), ""]
    parts.append(markdown_table(["split", "frames", "accuracy", "precision", "recall", "F1"],
                                [[s, d["n"], d["accuracy"], d["precision"], d["recall"], d["f1"]]
                                 for s, d in report["done"].items()]))
    if report.get("done_goal"):
        parts += ["", "In-context done (the reference episode's last frame shown first), against the plain done "
                  "prompt on the same frames (episodes with a reference):", ""]
        parts.append(markdown_table(["split", "frames", "in-context precision", "recall", "F1", "plain precision",
                                     "recall", "F1"],
                                    [[s, d["in-context"]["n"], d["in-context"]["precision"], d["in-context"]["recall"],
                                      d["in-context"]["f1"], d["plain"]["precision"], d["plain"]["recall"],
                                      d["plain"]["f1"]] for s, d in report["done_goal"].items()]))
    parts += ["", "Episode level (the RL loop's rule: the first run of `patience` scored frames over the "
              "threshold ends the episode): share of episodes ended *early* (before the simulator's first "
              "success, or at all when the episode failed), *on time*, *missed* (successful, never ended) "
              "and *correct-none* (failed, never ended).", ""]
    parts.append(markdown_table(["split", "patience", "episodes", "early", "on time", "missed", "correct-none"],
                                [[s, k.split()[-1], e["n"], e["early"], e["on-time"], e["missed"], e["correct-none"]]
                                 for s, d in report["done"].items() for k, e in d.get("episodes", {}).items()]))
    parts += ["", "## Successful vs failed episodes of the same tasks", ""]
    parts.append(markdown_table(["split / mode", "tasks", "VOC successful", "VOC failed", "gap",
                                 "final value successful", "final value failed"],
                                [[k, s["tasks"], s["voc_successful"], s["voc_failed"], s["voc_gap"],
                                  s["final_value_successful"], s["final_value_failed"]]
                                 for k, s in report["separation"].items()]))
    parts += ["", "## Task description from the first and last frame (successful episodes)", ""]
    parts.append(markdown_table(["split", "episodes", "exact match"],
                                [[k, d["n"], d["exact_match"]] for k, d in report.get("describe", {}).items()]))
    skipped = report.get("config", {}).get("skipped", [])
    if skipped:
        parts += ["", f"Skipped {len(skipped)} unreadable episode(s): " + "; ".join(skipped)]
    return "\n".join(parts) + "\n"


def _plots(records: list[dict], out: Path) -> None:
    for split in sorted({r["split"] for r in records}):
        for mode in ("zero_shot", "one_shot"):
            curves: dict[str, list] = {}
            for r in records:
                if r["split"] == split and r["variant"] == "default" and mode in r:
                    curves.setdefault(r["env_task"] or r["task"], []).append(
                        (r[mode]["indices"], r[mode]["values"], r["success"]))
            if curves:
                plot_value_curves(curves, out / f"value_curves_{split}_{mode}.png", title=f"{split}, {mode}")


@dataclass
class FilterConfig:
    dataset: str
    """Dataset folder whose episodes are checked."""
    out: str
    """Output folder: filter.json (every episode's VOC, NR and flag)."""
    critic: str = "builtin"
    """Critic: builtin (the built-in tiny critic) or a checkpoint folder."""
    skip: int = 3
    """Frame step between the two images of each scored pair."""
    camera: str = ""
    """Camera key (default: the dataset's first)."""
    min_voc: float = 0.5
    """Flag episodes whose VOC is below this."""
    max_negative_rate: float = 0.3
    """Flag episodes whose negative rate is above this."""
    threads: int = 0
    """torch threads (0: torch's default; set it to the cores this command may use, e.g. 1 beside a
    running `vlac rl`, or the model runs many times slower)."""


def filter_dataset(cfg: FilterConfig) -> dict:
    """Score every episode zero-shot and flag those with low VOC or many negative deltas: the
    release's data-refinement use (drop or inspect them before training)."""
    from vlac.critic.critic import Critic
    from vlac.data.dataset import LeRobotDataset

    ds = LeRobotDataset(cfg.dataset)
    key = cfg.camera or ds.camera_keys[0]
    set_threads(cfg.threads)
    critic = Critic.load(cfg.critic)
    rows = []
    for i in tqdm(range(ds.num_episodes), desc="filter", unit="ep"):
        ep = ds.episode(i)
        s = critic.score_trajectory(ep.images[key], ep.task, skip=cfg.skip, with_done=False)
        v, nr = M.voc(M.value_curve(s.deltas, clamp=False)), M.negative_rate(s.deltas)
        reasons = ([f"VOC {fmt(v)} < {cfg.min_voc}"] if not (np.isfinite(v) and v >= cfg.min_voc) else []) + \
                  ([f"NR {fmt(nr)} > {cfg.max_negative_rate}"] if nr > cfg.max_negative_rate else [])
        rows.append({"episode": i, "task": ep.task, "voc": v, "negative_rate": nr,
                     "final_value": float(s.values[-1]), "flagged": bool(reasons), "reasons": reasons,
                     "success": ds.meta(i).get("success")})
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": cfg.dataset, "flagged": [r["episode"] for r in rows if r["flagged"]], "episodes": rows,
              "config": asdict(cfg)}
    (out / "filter.json").write_text(json.dumps(result, indent=1))
    print(f"{len(result['flagged'])} of {len(rows)} episodes flagged: {result['flagged']}; wrote {out / 'filter.json'}")
    return result

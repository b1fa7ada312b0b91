"""``vlac critic train``: multitask supervised fine-tuning of the critic (paper 3.1.1).

Each step draws one objective by its mixture weight and a batch of it (progress joint groups,
one-shot progress, balanced done pairs, task description), with the loss on answer tokens only.
AdamW with linear warm-up and cosine decay; periodic validation (loss per objective and VOC on
held-back episodes); checkpoints with optimizer, scheduler and RNG state for exact resume;
TensorBoard logs in ``OUT/tb``.

    vlac critic train --data runs/train --out runs/critic --steps 3000
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlac.train.config import ActorTrainConfig, TrainConfig
from vlac.utils.files import atomic_dir
from vlac.utils.imports import require, set_threads


def _rng_state(rng: np.random.Generator) -> dict:
    torch = require("torch", extra="model")
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def _save_checkpoint(path: Path, net, opt, sched, step: int, rng, cfg: TrainConfig) -> None:
    torch = require("torch", extra="model")
    with atomic_dir(path) as tmp:  # a kill mid-save keeps the previous checkpoint
        net.save(tmp / "model")
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                    "rng": _rng_state(rng), "config": asdict(cfg)}, tmp / "trainer.pt")


def _validation_set(source, seed: int, batch_size: int, mixture: dict) -> dict:
    """Fixed validation batches per objective (drawn once with their own seed); in-context done
    only when it is trained (drawn last, so the other batches stay those of earlier runs)."""
    rng = np.random.default_rng(seed + 7919)
    out = {}
    for name in ("progress", "one_shot", "done", "describe") + (("done_goal",) if "done_goal" in mixture else ()):
        if source is None:
            break
        try:
            out[name] = source.draw(name, rng, batch_size)
        except ValueError:
            continue  # e.g. one-shot with a single episode per task
    return out


def train(cfg: TrainConfig) -> dict:
    torch = require("torch", extra="model")
    transformers = require("transformers", extra="model")
    from torch.utils.tensorboard import SummaryWriter

    from vlac.critic.critic import Critic
    from vlac.critic.metrics import value_curve, voc, vroc
    from vlac.actor.actor import Actor
    from vlac.train.actions import ActionSource, load_demos
    from vlac.train.objectives import ActionObjective, PromptObjective
    from vlac.train.samples import (Rollouts, SampleSource, Trajectory, load_failed_late_frames, load_labelled,
                                    load_rollouts, load_trajectories, read_labels)
    from vlac.data.dataset import LeRobotDataset
    from vlac.model import model_path
    from vlac.model.tokenizer import train_tokenizer
    from vlac.model.vlm import VLM

    set_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = [LeRobotDataset(p) for p in cfg.data]
    mix = cfg.mixture()
    acting = "action" in mix
    critic_objectives = [k for k in mix if k != "action"]
    if acting:
        demos = load_demos(datasets, cfg.camera or None)
        trajs = [Trajectory(d.task, d.frames, d.source) for d in demos]
    else:
        trajs = load_trajectories(datasets, cfg.camera or None)
    if cfg.rollouts and acting:  # refused before any rollout is read
        raise ValueError("--rollouts trains the critic's objectives; the actor's action objective does not use them")
    rollouts = load_rollouts(cfg.rollouts) if cfg.rollouts else Rollouts([], [], [])
    if cfg.rollouts:
        print(f"rollouts: {rollouts.summary()}", flush=True)
        trajs = trajs + rollouts.successes
    elif cfg.still_share > 0 or cfg.done_rollouts > 0:
        flag = f"--still-share {cfg.still_share}" if cfg.still_share > 0 else f"--done-rollouts {cfg.done_rollouts}"
        raise ValueError(f"{flag} needs --rollouts (folders of policy rollouts)")
    labelled = None
    if cfg.labelled:
        if acting:
            raise ValueError("--labelled trains the critic's done objective; the actor's action objective does not use it")
        runs = [LeRobotDataset(p) for p in cfg.labelled]
        given = [read_labels(f, ds.num_episodes) for f, ds in zip(cfg.labels, runs)] if cfg.labels else None
        labelled = load_labelled(runs, cfg.camera or None, cfg.labelled_first, labels=given)
        print(f"labelled: {labelled.summary()}, {len(labelled.failed_late)} failed", flush=True)
    # Hold back whole episodes (every n-th) for validation.
    n_val = min(cfg.val_episodes, len(trajs) // 5)
    stride = max(1, len(trajs) // max(n_val, 1))
    val_ids = set(range(0, len(trajs), stride)[:n_val]) if n_val else set()
    train_trajs = [t for k, t in enumerate(trajs) if k not in val_ids]
    val_trajs = [t for k, t in enumerate(trajs) if k in val_ids]
    if not val_trajs and cfg.val_episodes > 0:
        print(f"note: {len(trajs)} episodes are too few to hold any back for validation (one in five at most), "
              "so this training has no validation score; collect at least 5 episodes for one", flush=True)
    kw = dict(fine_step=cfg.fine_step, mismatch_prob=cfg.mismatch_prob, diff_threshold=cfg.diff_threshold,
              reference_frames=cfg.reference_frames, done_labels=cfg.done_labels, done_near=cfg.done_near)
    failed = []
    if cfg.done_failed > 0 and {"done", "done_goal"} & set(critic_objectives):
        extra = [LeRobotDataset(p) for p in cfg.failed_data]
        failed = load_failed_late_frames(datasets, cfg.camera or None)
        failed += load_failed_late_frames(extra, cfg.camera or None, first=cfg.failed_first)
        failed += rollouts.failed_late
        print(f"done: {len(failed)} failed episodes give hard not-done frames "
              f"({sum(len(t.frames) for t in failed)} frames, share {cfg.done_failed})", flush=True)
    source = SampleSource(train_trajs, failed=failed, done_failed=cfg.done_failed, still_share=cfg.still_share,
                          still=rollouts.still, done_rollouts=cfg.done_rollouts, done_segments=rollouts.done_segments,
                          rollout_failed=rollouts.failed_late, done_labelled=cfg.done_labelled, labelled=labelled,
                          **kw) if critic_objectives else None
    val_batches = _validation_set(SampleSource(val_trajs, **kw) if critic_objectives else None, cfg.seed,
                                  cfg.batch_size, mix) if val_trajs else {}

    ckpt = out / "checkpoint"
    resume = (ckpt / "trainer.pt").is_file()
    templates = dict(action_template=cfg.action_template, state_template=cfg.state_template, history=cfg.history)

    def load(path):
        if acting:
            return Actor.load(path, device=cfg.device, dtype=cfg.dtype, **templates)
        return VLM.load(path, device=cfg.device, dtype=cfg.dtype)

    if resume:
        net = load(ckpt / "model")
    elif cfg.init != "scratch":
        net = load(model_path("builtin", cfg.init) if cfg.init in ("critic", "actor") else cfg.init)
        if cfg.lora_r:
            (net.vlm if acting else net).add_lora(cfg.lora_r)
    else:
        net = VLM.tiny(train_tokenizer(sorted({t.task for t in trajs})), seed=cfg.seed)
        net.model.to(cfg.device)
        if acting:
            net = Actor(net, **templates)
    vlm = net.vlm if acting else net
    actions = val_actions = None
    if acting:
        train_demos = [d for k, d in enumerate(demos) if k not in val_ids]
        actions = ActionSource(train_demos, net.action_template, net.state_template, cfg.history, cfg.gamma)
        print(f"actions: {actions.clip_report()}")
        val_demos = [d for k, d in enumerate(demos) if k in val_ids]
        if val_demos:
            val_src = ActionSource(val_demos, net.action_template, net.state_template, cfg.history, cfg.gamma)
            val_actions = val_src.draw(np.random.default_rng(cfg.seed + 7919), cfg.batch_size)
    # the camera it learns from is part of its observation pipeline: the RL loop feeds it that one
    vlm.preprocess.camera = cfg.camera or datasets[0].camera_keys[0]
    vlm.preprocess.extra.update({"objectives": cfg.mixture(), "fine_step": cfg.fine_step,
                               "reference_frames": cfg.reference_frames, "train_data": cfg.data,
                               "done_labels": cfg.done_labels, "done_failed": cfg.done_failed,
                               "done_near": cfg.done_near, "rollouts": cfg.rollouts,
                               "still_share": cfg.still_share, "labelled": cfg.labelled,
                               "labelled_first": cfg.labelled_first, "labels": cfg.labels, "done_labelled": cfg.done_labelled})
    params = net.parameters() if acting else [p for p in vlm.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = transformers.get_cosine_schedule_with_warmup(opt, cfg.warmup, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    start = 0
    if resume:
        state = torch.load(ckpt / "trainer.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        start = int(state["step"])
        print(f"resuming {out} at step {start}")
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    if {"one_shot", "done_goal"} & set(mix) and not source.one_shot_ids:
        print("warning: no task has two successful episodes, so there are no one-shot references; "
              "training without the one_shot and done_goal objectives")
        mix = {k: v for k, v in mix.items() if k not in ("one_shot", "done_goal")}
        mix = {k: round(v / sum(mix.values()), 6) for k, v in mix.items()}
    names, probs = list(mix), np.array(list(mix.values()))
    objectives = {name: ActionObjective(actions, cfg.value_weight) if name == "action" else PromptObjective(name, source)
                  for name in names}
    writer = SummaryWriter(str(out / "tb"))
    n_tasks = len({t.task for t in train_trajs})
    print(f"{'actor' if acting else 'critic'}: {vlm.num_parameters() / 1e6:.1f}M parameters; {len(train_trajs)} "
          f"training / {len(val_trajs)} validation episodes; {n_tasks} tasks; objectives {mix}")

    history = []
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train", unit="step")
    ema = None
    for step in bar:
        net.train()
        t0 = time.perf_counter()
        name = names[int(rng.choice(len(names), p=probs))]
        loss, parts = objectives[name].loss(net, rng, cfg.batch_size)
        for part, value in parts.items():
            if part != name:
                writer.add_scalar(f"train/loss_{part}", value, step + 1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step} (objective {name}); "
                                     f"lower --lr (now {cfg.lr}) or resume from {ckpt}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        writer.add_scalar(f"train/loss_{name}", loss.item(), step + 1)
        writer.add_scalar("train/lr", sched.get_last_lr()[0], step + 1)
        writer.add_scalar("train/step_seconds", time.perf_counter() - t0, step + 1)
        bar.set_postfix(loss=f"{ema:.3f}", obj=name)
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            row = {"step": step + 1}
            net.train(False)
            with torch.no_grad():
                for vname, (vp, va) in val_batches.items():
                    if vname in mix:
                        row[f"val_loss_{vname}"] = float(vlm.loss(vlm.encode(vp, va)))
                if val_actions is not None:
                    _, parts = net.bc_loss(*val_actions, value_weight=max(cfg.value_weight, 1e-9))
                    row["val_loss_action"], row["val_loss_value"] = parts["action"], parts["value"]
                if val_trajs and "progress" in mix:
                    critic = Critic(vlm)
                    fwd, rev = [], []
                    for t in val_trajs[:6]:
                        # Unclamped Eq. 7, as in `vlac critic eval` (a clamped curve stuck at 0 has no order).
                        d = critic.score_trajectory(t.frames, t.task, skip=cfg.fine_step, with_done=False).deltas
                        fwd.append(voc(value_curve(d, clamp=False)))
                        d = critic.score_trajectory(t.frames[::-1], t.task, skip=cfg.fine_step, with_done=False).deltas
                        rev.append(vroc(value_curve(d, clamp=False)))
                    row["val_voc"], row["val_vroc"] = float(np.nanmean(fwd)), float(np.nanmean(rev))
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(f"val/{k.removeprefix('val_')}", v, step + 1)
            history.append(row)
            with open(out / "history.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                      + ("" if len(row) > 1 else " (no validation data)"))
            _save_checkpoint(ckpt, net, opt, sched, step + 1, rng, cfg)
        if cfg.stop_after and step + 1 >= cfg.stop_after and step + 1 < cfg.steps:
            _save_checkpoint(ckpt, net, opt, sched, step + 1, rng, cfg)
            writer.close()
            print(f"stopped after step {step + 1}; run the same command again to resume")
            return {"model": None, "history": history}
    writer.close()
    net.save(out / "model", dtype=cfg.save_dtype or None)
    print(f"model written to {out / 'model'}")
    return {"model": str(out / "model"), "history": history}


def train_actor(cfg: ActorTrainConfig) -> dict:
    if "action" not in cfg.mixture():
        raise ValueError(f"--weights {' '.join(cfg.weights)} has no action objective; add e.g. action:1")
    return train(cfg)

"""Training configurations: one trainer (``vlac.train.trainer``) for both roles. ``TrainConfig``
is the critic's (``vlac critic train``); ``ActorTrainConfig`` changes only the defaults an actor
needs (``vlac actor train``: the action objective, a start from the built-in critic).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    data: list[str]
    """LeRobot-layout dataset folders to train on."""
    out: str
    """Run folder: checkpoints (checkpoint/), the final model (model/), TensorBoard logs (tb/)."""
    init: str = "scratch"
    """Start from: scratch (the tiny preset, with a tokenizer trained on the data's tasks), critic or
    actor (the built-in one), or a checkpoint folder (a vlac checkpoint or a transformers InternVL one)."""
    camera: str = ""
    """Camera key to train on (default: each dataset's first camera)."""
    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 32
    """Samples per step (progress groups of 4 and done pairs stay whole)."""
    lr: float = 8e-4
    """Peak learning rate (AdamW)."""
    warmup: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient norm clip."""
    weights: list[str] = field(default_factory=lambda: ["progress:0.5", "one_shot:0.2", "done:0.2", "describe:0.1"])
    """Mixture weight of each objective (progress, one_shot, done, done_goal: done with a reference
    episode's goal image shown first, describe, and the actor's action: behaviour cloning of the
    datasets' actions)."""
    fine_step: int = 3
    """Frames between i and i+1 in the fine pairs of a joint group (the paper's ~0.2 s)."""
    mismatch_prob: float = 0.05
    """Probability that a progress sample gets another task's description and label 0."""
    diff_threshold: float = 0.01
    """Pairs whose mean pixel difference is below this fraction get label 0."""
    reference_frames: int = 3
    """Frames of the reference episode in one-shot prompts."""
    done_failed: float = 0.0
    """Share of done pairs whose not-done frame is a late frame of a failed episode (simulator flag
    off): hard negatives against calling failures done. 0 is the paper's recipe."""
    done_labels: str = "position"
    """Where done labels come from: position (the paper: 0 before 0.8 T, 1 after 0.95 T) or flag
    (the dataset's per-frame success flag: 1 where on, 0 before the first success; not in the
    paper, needs sim.success)."""
    done_near: float = 0.0
    """Share of done pairs whose not-done frame is one of the last 20% of the episode's not-done
    frames, just short of the goal (hard negatives; most useful with --done-labels flag); in the
    pairs --done-rollouts draws, a frame of the success's own approach to its success moment."""
    failed_data: list[str] = field(default_factory=list)
    """More datasets used only for those hard negatives, e.g. an RL run's
    `episodes/` (the policy's own failures); their successful episodes are not used."""
    failed_first: int = 0
    """Read only the first this many episodes of each --failed-data dataset (0: all): the episodes of
    a run labelled so far, to retrain the done detector while the run goes on."""
    rollouts: list[str] = field(default_factory=list)
    """Folders of policy rollouts (`vlac critic fidelity --rollouts-only --out DIR`) labelled only by
    episode: successes up to their success moment join the training episodes; failures and what
    follows a success become pairs labelled 0 (see --still-share); failures' late frames become
    hard not-done frames when --done-failed > 0."""
    labelled: list[str] = field(default_factory=list)
    """Datasets of policy episodes labelled by episode, in the LeRobot layout with a per-frame
    success flag: an RL run's `episodes/` (the policy's own episodes, as an operator labelled them).
    They give their own share of the done pairs (--done-labelled)."""
    labels: list[str] = field(default_factory=list)
    """Labels of the --labelled datasets, one JSON-lines file each (`{"index": N, "success": true}`
    per line: what `vlac rl` writes to RUN/labels.jsonl as an operator labels episodes); only the
    labelled episodes are read, a success done at its last frame. Without it, the datasets' own flags."""
    labelled_first: int = 0
    """Read only the first this many episodes of each --labelled dataset (0: all): the episodes of a
    run labelled so far."""
    done_labelled: float = 0.0
    """Share of done pairs drawn from the --labelled episodes, matched by task: a frame of a
    success's first done segment (1) against a late frame of a failure (0), or with --done-near a
    frame of the success's own approach. Its own share, apart from --done-rollouts."""
    still_share: float = 0.0
    """Share of progress and one-shot groups drawn from still trajectories (failed rollouts, frames
    after a success) with every pair labelled 0: motion without progress. Needs --rollouts."""
    done_rollouts: float = 0.0
    """Share of done pairs drawn from the rollouts, matched by task: a frame of a success's first
    done segment (1) against a late frame of a failed rollout of the same task (0). Needs --rollouts."""
    val_every: int = 250
    """Validate (and checkpoint) every this many steps."""
    val_episodes: int = 12
    """Successful episodes held back from training for validation."""
    seed: int = 0
    """Seed of the model initialisation and of the sample stream."""
    device: str = "cpu"
    """cpu or cuda."""
    dtype: str = "float32"
    """Training dtype: float32 on CPU; bfloat16 for large checkpoints on a GPU."""
    lora_r: int = 0
    """LoRA rank for large checkpoints (0 trains every weight)."""
    save_dtype: str = "float16"
    """dtype of the final model's weights (float16 halves the size of a release)."""
    threads: int = 0
    """torch threads (0: torch's default)."""
    stop_after: int = 0
    """Stop (with a checkpoint) after this many steps, e.g. on a pre-emptible machine; running the
    same command again resumes exactly. 0: run to --steps."""
    action_template: str = "sim-arm"
    """With the action objective: the action template (a built-in name or a $name[lo:hi] spec)."""
    state_template: str = "sim-arm-state"
    """With the action objective: the template the end-effector state is written in."""
    history: int = 0
    """With the action objective: previous actions shown in the actor prompt."""
    value_weight: float = 0.0
    """With the action objective: weight of the value head's loss against the demonstrations'
    discounted remaining progress (0: the value head is left for RL)."""
    gamma: float = 0.99
    """Discount of the value head's targets."""

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps ({self.steps}) must be >= 1 and batch_size ({self.batch_size}) >= 2")
        if self.failed_first < 0 or (self.failed_first and not self.failed_data):
            raise ValueError(f"--failed-first {self.failed_first} reads the first episodes of --failed-data datasets: "
                             "give a number >= 0 and at least one --failed-data folder")
        if self.labelled_first < 0 or (self.labelled_first and not self.labelled):
            raise ValueError(f"--labelled-first {self.labelled_first} reads the first episodes of --labelled datasets: "
                             "give a number >= 0 and at least one --labelled folder")
        if self.labels and len(self.labels) != len(self.labelled):
            raise ValueError(f"--labels gives {len(self.labels)} files for {len(self.labelled)} --labelled datasets: "
                             "give one labels file per --labelled dataset, in the same order")
        if self.done_labelled > 0 and not self.labelled:
            raise ValueError(f"--done-labelled {self.done_labelled} draws done pairs from labelled episodes: "
                             "give --labelled folders (e.g. an RL run's episodes/)")
        self.mixture()  # validates the weights

    def mixture(self) -> dict[str, float]:
        from vlac.train.objectives import OBJECTIVES as valid

        out = {}
        for item in self.weights:
            name, _, w = item.partition(":")
            if name.strip() not in valid:
                raise ValueError(f"unknown objective {name!r} in weights {self.weights!r}; valid: {valid}")
            try:
                out[name.strip()] = float(w)
            except ValueError:
                raise ValueError(f"weight of {name!r} in {self.weights!r} is not a number") from None
        if sum(out.values()) <= 0 or min(out.values()) < 0:
            raise ValueError(f"weights {self.weights!r} must be >= 0 with a positive sum")
        total = sum(out.values())
        return {k: round(v / total, 6) for k, v in out.items() if v > 0}  # 0.5, not 0.5000000000000001



@dataclass
class ActorTrainConfig(TrainConfig):
    init: str = "critic"
    """Start from: critic (the built-in critic: progress pre-training), scratch (the tiny preset:
    the paper's "without progress pre-training" ablation), actor (the built-in actor), or a
    checkpoint folder."""
    weights: list[str] = field(default_factory=lambda: ["action:1"])
    """Mixture weights: action (behaviour cloning) and optionally the critic objectives (progress,
    one_shot, done, describe) to keep one model in both roles."""
    steps: int = 2000
    lr: float = 5e-4
    value_weight: float = 0.5
    """Weight of the value head's loss against the demonstrations' discounted remaining progress."""

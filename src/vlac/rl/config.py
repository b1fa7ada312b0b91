"""The configuration of a `vlac rl` run (flags, config files) and its checks, which run before Ray
starts, so a bad flag is one line and never a half-started cluster."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlac.rl.episodes import ORACLE_REWARDS, REWARDS
from vlac.rl.learner import LearnerConfig
from vlac.rl.returns import ReturnRules


@dataclass
class RLConfig:
    out: str = "runs/rl"
    """Run folder: episodes/ (LeRobot), rl_steps/, learner/ (checkpoint), tb/, report.md, *.png."""
    tasks: list[str] = field(default_factory=lambda: ["reach-v3"])
    """Tasks of the simulated robots, assigned round-robin (also the evaluation tasks). Real robots
    bring their own task text in their hello; a run with only real robots (``--robots 0
    --eval-episodes 0``) needs no simulator and does not read this."""
    robots: int = 2
    """Simulated robots started by the loop (0: only robots started separately with `vlac robot sim`)."""
    episodes: int = 200
    """Stop after this many finished episodes in the run folder (counting earlier runs: resume)."""
    bind: str = "tcp://127.0.0.1:0"
    """Gateway address; port 0 picks a free port (printed, and written to OUT/gateway.txt)."""
    keys: str = ""
    """Gateway CURVE key file (required when --bind is not loopback)."""
    robot_keys: list[str] = field(default_factory=list)
    """Public keys of the robots the gateway admits (CURVE authentication; required
    with --keys when --bind is not loopback; empty with --keys: any robot that knows the gateway's
    public key). Each is ID=FILE or a FILE from `vlac robot keys --name ID`: a key admits only the
    robot id it was made for."""
    ray_address: str = ""
    """Join this Ray cluster instead of starting a local one on 127.0.0.1."""
    num_cpus: float = 2.0
    """CPUs of the local Ray cluster."""
    inference_workers: int = 1
    """Actor replicas."""
    max_batch: int = 8
    """Most observations one replica decodes at once."""
    actor: str = "builtin"
    """Actor: builtin (the built-in behaviour-cloned tiny actor) or a checkpoint folder."""
    critic: str = "builtin"
    """Critic for rewards and done: builtin (the built-in tiny critic), a checkpoint folder, or none
    (only with an oracle reward, a reference arm: no critic runs, its CPU goes to the rest)."""
    critic_symmetric: bool = False
    """Score each step pair both ways and average the readings (less noisy rewards, two forward
    passes per step; see `vlac critic eval --symmetric`)."""
    critic_refresh_every: int = 0
    """Keep the done probe up with the policy: every this many episodes, train the critic again by its
    own recipe (its train_config.json) on the run's labelled episodes so far, in the background on
    one thread, and swap it in once written (0: off; see ``vlac.rl.refresh``)."""
    critic_labels: str = "operator"
    """Who labels the run's episodes for --critic-refresh-every: operator (episodes ended with a
    verdict at the --console) or simulated-operator (every episode, by the simulator's success flag:
    a reference arm, what labelling every episode would give; simulated robots only)."""
    critic_refresh_share: float = 0.25
    """Share of the refreshed critic's done pairs drawn from the labelled episodes."""
    critic_refresh_steps: int = 0
    """Training steps of each refresh (0: the critic's recipe's)."""
    critic_refresh_from: str = "recipe"
    """Where each refresh starts: recipe (the recipe's own start, its --init: a full retraining) or
    current (fine-tune the critic the run scores with now; with fewer --critic-refresh-steps a
    refresh lags the policy by fewer episodes)."""
    critic_label_fraction: float = 1.0
    """Share of the episodes the simulated operator labels, evenly spread by the episode's index
    (0.25: one episode in four): how few verdicts a refresh needs (1: every episode)."""
    done_threshold: float = 0.9
    """The critic's done probability that counts as done (high: the built-in critic calls frames
    done early; see its episode-level done table in BENCHMARKS.md). Above 1 the critic's done is
    off and episodes run to max_steps."""
    done_patience: int = 4
    """Consecutive steps over the threshold before the episode is ended as done."""
    done_min_value: float = 0.0
    """Progress-gated done: a step counts towards done only once the episode's running value (the
    critic's progress deltas so far, through Eq. 7) has reached this (0: off; choose it with
    `vlac critic calibrate-done`)."""
    guided_explore: str = "off"
    """Human-guided exploration (paper 3.2.3): simulated hands a robot to its operator (a simulated
    robot's is its task's scripted expert) when the critic's value stalls, by the rule of
    ``--takeover-after`` (20 steps unless set); off: only an operator at the console takes over."""
    takeover_after: int = 0
    """The guided-exploration trigger: hand a robot to an operator once the critic's value has
    risen less than ``takeover_gain`` over this many of the policy's scored steps (0: off; set alone it
    turns guided exploration on). The operator's steps are stored flagged, join the demonstration
    replay (``--learner.operator-weight``) and never enter the PPO ratio."""
    takeover_gain: float = 0.02
    takeover_steps: int = 20
    """Steps an operator drives per takeover before handing back to the policy."""
    takeovers_per_episode: int = 1
    return_explore: str = "off"
    """Return-and-explore (paper 3.2.3): auto sends robots back to states where the policy's
    episodes stalled, picked from the critic's readings by the rule of ``vlac.rl.returns`` (needs a
    critic and robots that can return, e.g. `vlac robot sim`); off: every episode starts afresh."""
    returns: ReturnRules = field(default_factory=ReturnRules)
    console: str = ""
    """Serve the operator console on HOST:PORT (e.g. 127.0.0.1:8080; port 0 picks one, written to
    OUT/console.txt): watch every robot, pause it, drive it with the keyboard, mark and send return
    points, end and label episodes. Off by default."""
    console_token: str = ""
    """The console's token (default: $VLAC_CONSOLE_TOKEN); required when --console is not loopback."""
    console_step: float = 5.0
    """Millimetres one key press moves the robot at the console."""
    max_steps: int = 100
    """Robots' episode limit in steps."""
    max_episode_steps: int = 0
    """The loop's own cap on an open episode's steps, whatever a robot does: past it the episode is
    ended (reset, reason "limit") and kept (0: ten times max_steps, room for robots with their own
    longer limit)."""
    max_episode_mb: float = 512.0
    """The loop's cap on an open episode's frames in memory (MB): past it the episode is ended
    (reset, reason "limit") and kept, so a robot sending huge frames cannot exhaust memory."""
    data_timeout: float = 300.0
    """Seconds the loop waits for the data service to store one episode (normally about a second)
    before it restarts the service and offers the episode again: a stalled video encoder once held a
    run for good."""
    period: float = 0.0
    """Robots' control period in seconds (0: lock-step, simulation only)."""
    episodes_per_update: int = 4
    """Finished episodes that start a PPO update."""
    max_episodes_per_update: int = 16
    """Most episodes one update takes when more piled up while the previous one ran (robots never
    wait for the learner); the rest wait for the next update, none is dropped."""
    wait_for_learner: bool = False
    """Hold each robot at the start of its next episode while a PPO update is due, running, or
    its weights are on their way, so every episode is collected by the newest policy (on-policy,
    at the cost of robot time; for a learner slower than the robots, as on CPU). Off by default:
    robots never wait for the learner (paper 3.2.1). Time held is reported as learner_hold_s."""
    start_repeats: int = 1
    """Episodes each simulated robot runs from one start (object and goal positions) before drawing the
    next; above 1 the robots of a task share their starts (with 2 robots and 2: four episodes from each
    start), so ``--learner.outcome-groups scene`` can compare episodes that began alike. A real robot's
    driver names its starts itself (the ``scene`` of episode_start)."""
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    eval_every: int = 40
    """Evaluate the current policy every this many finished episodes (and at the start and end)."""
    eval_episodes: int = 20
    """Evaluation episodes per task (fixed seeds, simulator success flag; never used for learning);
    0 turns evaluation off."""
    eval_seed: int = 20_000
    eval_temperature: float = 0.0
    """Sampling temperature of the evaluation episodes: 0 (greedy) measures the policy one would
    deploy; the learner's temperature (1) measures the policy the robots run, the one PPO
    optimises."""
    eval_mean: bool = False
    """Evaluate with each number taken nearest its expected value under the policy (at
    ``eval_temperature``, 1 when it is 0; `vlac actor eval --mean`) instead of greedy or sampled."""
    keep_evaluated: bool = True
    """Keep the actor of every evaluation (``OUT/evaluated/episodes-N/``, about 30 MB each): the
    policy to roll back to when a later one scores worse (the run itself keeps only its last)."""
    lost_after: float = 10.0
    """Seconds without any message before a robot counts as lost (its open episode is truncated)."""
    seed: int = 0

    def __post_init__(self):
        if self.simulated:
            from vlac.data.tasks import resolve_tasks

            resolve_tasks(self.tasks)
        if self.episodes < 1 or self.episodes_per_update < 1 or self.inference_workers < 1:
            raise ValueError("episodes, episodes_per_update and inference_workers must be >= 1")
        if self.start_repeats < 1:
            raise ValueError(f"start_repeats {self.start_repeats} must be >= 1 (episodes from one start)")
        if self.learner.outcome_groups == "scene" and self.simulated and self.start_repeats < 2:
            raise ValueError("--learner.outcome-groups scene compares episodes that began from one start, and with "
                             "--start-repeats 1 every simulated episode has a start of its own (no advantages at "
                             "all): give --start-repeats 2 or more")
        if not 0.0 <= self.done_min_value <= 1.0:
            raise ValueError(f"done_min_value {self.done_min_value} must be in [0, 1] (a progress value; 0 turns "
                             "the gate off)")
        if self.critic == "none" and self.learner.reward not in ORACLE_REWARDS:
            raise ValueError(f"--critic none leaves learner.reward {self.learner.reward!r} without its source: the "
                             "critic gives the dense, sparse and final rewards; only the reference arms (--learner.reward "
                             "oracle-dense | oracle-sparse | oracle-final) run without one")
        if self.learner.reward not in REWARDS:
            raise ValueError(f"learner.reward {self.learner.reward!r} must be one of {', '.join(REWARDS)} "
                             "(oracle-*: the simulator's reward, reference arms for simulated robots only)")
        from vlac.transport.link import CurveKeys, is_loopback, load_robot_keys

        if not is_loopback(self.bind) and not (self.keys and self.robot_keys):
            raise ValueError(f"--bind {self.bind} is not loopback: robot links off this machine need CURVE "
                             "encryption and authentication, so pass --keys FILE (the gateway's key pair) and "
                             "--robot-keys A.pub,B.pub (the robots to admit); create them with `vlac robot keys`")
        if self.robot_keys and not self.keys:
            raise ValueError("--robot-keys admits robots by their CURVE keys, which needs the gateway's own key "
                             "pair too: pass --keys FILE (create it with `vlac robot keys`)")
        if self.keys:
            CurveKeys.load(self.keys)  # unreadable or malformed key files are named now, before Ray starts
        load_robot_keys(self.robot_keys)
        if self.done_patience < 1:
            raise ValueError(f"done_patience {self.done_patience} must be >= 1 (transitions in a row over the threshold)")
        if self.guided_explore not in ("off", "simulated"):
            raise ValueError(f"--guided-explore {self.guided_explore!r} must be off or simulated")
        if self.guided_explore == "simulated" and not self.takeover_after:
            self.takeover_after = 20
        if self.takeover_after and self.guided_explore == "off":
            self.guided_explore = "simulated"
        if self.takeover_after < 0 or self.takeover_steps < 1 or self.takeovers_per_episode < 0:
            raise ValueError("takeover_after must be >= 0 (0: off), takeover_steps >= 1 and takeovers_per_episode >= 0")
        if self.takeover_after and self.critic == "none":
            raise ValueError("--takeover-after reads the critic's value: it needs a critic (drop --critic none)")
        if self.return_explore not in ("off", "auto"):
            raise ValueError(f"--return-explore {self.return_explore!r} must be off or auto")
        if self.return_explore == "auto" and (self.critic == "none" or self.learner.reward == "oracle-sparse"):
            raise ValueError("--return-explore auto picks and judges return points by the critic's value and done: it "
                             "needs a critic, and an arm whose episodes the critic ends (not --critic none, not "
                             "--learner.reward oracle-sparse, where the simulator's flag ends them)")
        if not 0.0 <= self.returns.prob <= 1.0:
            raise ValueError(f"--returns.prob {self.returns.prob} must be in [0, 1]")
        if self.console:
            import os

            from vlac.rl.console import console_is_loopback

            self.console_token = self.console_token or os.environ.get("VLAC_CONSOLE_TOKEN", "")
            if not console_is_loopback(self.console) and not self.console_token:
                raise ValueError(f"--console {self.console} is not loopback: pass --console-token TOKEN (or set "
                                 "VLAC_CONSOLE_TOKEN); the page and every request must carry it")
            if self.console_step <= 0:
                raise ValueError(f"--console-step {self.console_step} must be > 0 (millimetres a key press moves)")
        if self.critic_refresh_every:
            from vlac.rl.refresh import LABELLERS, STARTS, recipe_of

            if self.critic_refresh_every < 0 or self.critic_refresh_steps < 0:
                raise ValueError("--critic-refresh-every and --critic-refresh-steps must be >= 0 (0: off / the recipe's)")
            if self.critic_labels not in LABELLERS:
                raise ValueError(f"--critic-labels {self.critic_labels!r} must be one of {', '.join(LABELLERS)}")
            if self.critic_refresh_from not in STARTS:
                raise ValueError(f"--critic-refresh-from {self.critic_refresh_from!r} must be one of {', '.join(STARTS)}")
            if not 0.0 < self.critic_label_fraction <= 1.0:
                raise ValueError(f"--critic-label-fraction {self.critic_label_fraction} must be in (0, 1] "
                                 "(0.25: the simulated operator labels one episode in four)")
            if not 0.0 < self.critic_refresh_share <= 1.0:
                raise ValueError(f"--critic-refresh-share {self.critic_refresh_share} must be in (0, 1]")
            if self.critic_labels == "operator" and not self.console:
                raise ValueError("--critic-labels operator takes the verdicts an operator gives at the console: pass "
                                 "--console HOST:PORT (or --critic-labels simulated-operator, a reference arm)")
            recipe_of(self.critic)  # a critic without its recipe is named now, before Ray starts
        if self.max_episode_mb <= 0 or self.max_episode_steps < 0:
            raise ValueError("max_episode_mb must be > 0 and max_episode_steps >= 0")

    @property
    def simulated(self) -> bool:
        """Whether the loop itself runs the simulator: its own robots or evaluation episodes."""
        return self.robots > 0 or self.eval_episodes > 0

    @property
    def task_list(self) -> list[str]:
        from vlac.data.tasks import resolve_tasks

        return [t.name for t in resolve_tasks(self.tasks)]

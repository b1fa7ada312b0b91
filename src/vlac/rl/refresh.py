"""Keeping the critic's done probe up with the policy (not in the paper): every few episodes, the
critic is trained again, by its own recipe, on the run's episodes labelled so far, and swapped in.

A probe trained once, before a run, is right on the start policy's episodes and wrong on the
states the policy later walks into (BENCHMARKS.md, "Why the button done probe was exploited"). The
run's own episodes, labelled success or failure, are the pairs it must tell apart. Labels come
from an operator (an episode ended at the console with a verdict) or, as a clearly named reference
arm, from a *simulated operator* that labels every episode by the simulator's flag, as a person
watching every episode would (or, with ``--critic-label-fraction``, an even share of them).

    RUN/labels.jsonl              {"index": dataset index, "success": bool, "by": who} per label
    RUN/critic-refresh/rN/        the critic trained after N episodes (rN.log: its output)
    RUN/critic_refresh.jsonl      one line per refresh: when, on how many labels, its model, or why not

A refresh runs `vlac critic train` as its own process with the critic's recipe
(``train_config.json`` beside its model folder), plus ``--labelled RUN/episodes --labels
RUN/labels.jsonl --done-labelled SHARE`` (the share taken from ``--done-rollouts`` where the recipe
has one), on one thread; the run goes on with the old critic until the new one is written. With
``--critic-refresh-from current`` it starts from the critic the run scores with instead of the
recipe's start (a fine-tune; with fewer steps it lags the policy by fewer episodes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vlac.train.samples import read_labels

LABELLERS = ("operator", "simulated-operator")
STARTS = ("recipe", "current")  # a refresh retrains from the recipe's start, or fine-tunes the current critic


@dataclass
class RefreshRules:
    every: int
    """Episodes between refreshes."""
    labels: str
    """operator or simulated-operator (the simulator's flag: a reference arm)."""
    share: float
    """Share of the done pairs the labelled episodes get."""
    steps: int
    """Training steps of each refresh (0: the recipe's)."""
    start: str = "recipe"
    """recipe (the recipe's --init) or current (fine-tune the critic the run scores with)."""
    fraction: float = 1.0
    """Share of the episodes the simulated operator labels, evenly spread by index."""

    def simulated_labels(self, index: int) -> bool:
        """Whether the simulated operator labels episode ``index``: with ``fraction`` f it labels the
        episodes where the count ``floor(i * f)`` steps up (f = 0.25: indices 3, 7, 11, ...), so a
        resumed run labels the same ones (millionths, so no float rounding skips one)."""
        f = round(self.fraction * 1_000_000)
        return (index + 1) * f // 1_000_000 > index * f // 1_000_000


def recipe_of(critic: str) -> dict:
    """The `vlac critic train` configuration that made ``critic`` (its ``train_config.json``)."""
    path = Path(critic).parent / "train_config.json"
    if critic in ("builtin", "none") or not path.is_file():
        raise ValueError(f"--critic-refresh-every retrains the critic by its own recipe, but --critic {critic} has no "
                         f"{path.name} beside it; give a critic trained with `vlac critic train --out DIR` "
                         "(--critic DIR/model)")
    return json.loads(path.read_text())


class CriticRefresh:
    """Labels as episodes finish, a background retrain every ``rules.every`` episodes, and the new
    model's path once it is written (``poll``)."""

    def __init__(self, out: Path, critic: str, rules: RefreshRules):
        self.out, self.rules = out, rules
        self.recipe = recipe_of(critic)
        self.labels_path = out / "labels.jsonl"
        self.log_path = out / "critic_refresh.jsonl"
        # a resumed run keeps its labels
        self.labels: dict[int, bool] = read_labels(self.labels_path) if self.labels_path.is_file() else {}
        self.proc: subprocess.Popen | None = None
        self.started_at = 0
        self.t_started = 0.0
        self.trained_on = (0, 0)
        self.next_at = rules.every
        self.current = critic
        if self.log_path.is_file():  # a resumed run goes on with its newest critic
            done = [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]
            if done:
                self.next_at = int(done[-1]["episodes"]) + rules.every
            models = [d["model"] for d in done if d.get("model")]
            if models:
                self.current = models[-1]

    # ------------------------------------------------------------------ labels
    def label(self, index: int, operator: bool | None, simulator: bool | None) -> None:
        """Record episode ``index``'s label: the operator's verdict, or with the simulated operator
        the simulator's flag on its share of the episodes (a reference arm); unlabelled episodes are not
        trained on."""
        if operator is not None:
            ok, by = operator, "operator"
        elif self.rules.labels == "simulated-operator" and simulator is not None and self.rules.simulated_labels(index):
            ok, by = bool(simulator), "simulated-operator"
        else:
            return
        self.labels[index] = ok
        with open(self.labels_path, "a") as f:
            f.write(json.dumps({"index": index, "success": ok, "by": by}) + "\n")

    # ------------------------------------------------------------------ retraining
    def _config(self, episodes: int, folder: Path) -> Path:
        """The refresh's `vlac critic train --config` file: the critic's recipe, the labelled episodes
        added, one thread, a seed of its own, started from the recipe's --init or (``start`` current)
        from the critic the run scores with now."""
        r = dict(self.recipe)
        share = self.rules.share
        r["done_rollouts"] = max(0.0, float(r.get("done_rollouts", 0.0)) - share) if r.get("rollouts") else 0.0
        r.update(out=str(folder), threads=1, seed=int(r.get("seed", 0)) + episodes, stop_after=0,
                 labelled=[str(self.out / "episodes")], labels=[str(self.labels_path)], labelled_first=0,
                 done_labelled=share)
        if self.rules.steps:
            r["steps"] = self.rules.steps
        if self.rules.start == "current":
            r["init"] = self.current
        from vlac.train.config import TrainConfig

        fields = {f.name for f in dataclasses.fields(TrainConfig)}  # an older recipe's retired keys go
        path = folder.parent / f"{folder.name}.json"
        path.write_text(json.dumps({k: v for k, v in r.items() if k in fields and v not in ("", [])}, indent=1))
        return path

    def _ready(self) -> str:
        """Why a refresh cannot train yet ("" when it can): the labelled pool needs a success and a
        failure."""
        wins = sum(self.labels.values())
        if not wins or wins == len(self.labels):
            return (f"{len(self.labels)} labelled episodes, {wins} successful: the labelled done pairs need both a "
                    "success and a failure")
        return ""

    def poll(self, episodes: int, final: bool = False) -> str | None:
        """Start a refresh when ``episodes`` reached the next multiple (none running); return the new
        critic's model folder once a refresh has written it (None otherwise). ``final``: the run is
        ending, so wait for a running refresh and start no new one."""
        if self.proc is not None:
            if final:
                print("waiting for the critic refresh to finish", flush=True)
                self.proc.wait()
            code = self.proc.poll()
            if code is None:
                return None
            self.proc = None
            folder = self.out / "critic-refresh" / f"r{self.started_at}"
            model = folder / "model"
            ok = code == 0 and (model / "config.json").is_file()
            self._record(self.started_at, model=str(model) if ok else None,
                         note="" if ok else f"exited with code {code}; see {folder}.log")
            if ok:
                self.current = str(model)
                return self.current
            print(f"critic refresh after {self.started_at} episodes failed (code {code}; see {folder}.log); "
                  f"the run goes on with {self.current}", flush=True)
            return None
        if final or episodes < self.next_at:
            return None
        self.next_at = (episodes // self.rules.every + 1) * self.rules.every
        why = self._ready()
        if why:
            print(f"critic refresh after {episodes} episodes skipped: {why}", flush=True)
            self._record(episodes, model=None, note=why, trained=False)
            return None
        folder = self.out / "critic-refresh" / f"r{episodes}"
        folder.parent.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "vlac.scripts.cli", "critic", "train", "--config", str(self._config(episodes, folder))]
        log = open(f"{folder}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        log.close()
        self.started_at, self.t_started = episodes, time.monotonic()
        self.trained_on = (len(self.labels), sum(self.labels.values()))  # what the training reads
        print(f"critic refresh after {episodes} episodes: training on {len(self.labels)} labelled episodes "
              f"({sum(self.labels.values())} successful) in {folder}", flush=True)
        return None

    def _record(self, episodes: int, model: str | None, note: str = "", trained: bool = True) -> None:
        """One line of critic_refresh.jsonl: a refresh that ran (its model, or None if it failed, and
        its seconds) or one skipped (``trained`` off)."""
        labelled, wins = self.trained_on if trained else (len(self.labels), sum(self.labels.values()))
        row = {"episodes": episodes, "labelled": labelled, "successes": wins, "model": model}
        if trained:
            row["seconds"] = round(time.monotonic() - self.t_started, 1)
        if note:
            row["note"] = note
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def stop(self) -> None:
        """End a running refresh (the run stopped abnormally); its folder stays, unfinished."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

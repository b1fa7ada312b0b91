#!/usr/bin/env bash
# Issue 19's experiment on one task: RL from an actor (the built-in one unless START says) with expert demonstrations
# replayed at a behaviour-cloning rate (paper 3.2.3), the critic arm against the oracle-sparse
# reference arm (1 at the simulator's success flag: a perfect success detector) on the same budget;
# then every final actor and the built-in one on 40 fresh seeds no run used.
#   bash recipes/rl-replay.sh TASK [EPISODES] [NAME] [more `vlac rl` flags, given to both runs]
# e.g. bash recipes/rl-replay.sh dial-turn-v3 40 dial --seed 1 --learner.seed 1
# The critic arm's reward is the built-in critic's dense reward over a fixed horizon (its done off);
# set CRITIC_ARM to change it, e.g. CRITIC_ARM="--learner.reward sparse --critic runs/critic-probe-near/model".
# DEMOS sets the number of expert demonstrations (default 40); START the actor both runs start from
# (default: builtin; e.g. an actor from `python benchmarks/demo_scaling.py ... --save`). CLONE=STEPS first
# clones the demonstrations into START offline (`vlac actor train --init START --steps STEPS`, lr 1e-4
# decaying to 0; two threads, nothing else running) and starts both runs from that actor
# (runs/NAME-clone/model). The fresh evaluation includes the built-in actor (and START) too.
# DEMO_DATA replays an existing dataset instead of collecting DEMOS new ones (e.g. the demonstrations
# START was cloned from); REPLAY_LR sets the replay's learning rate (default 1e-4).
# Writes runs/NAME-demos (the demonstrations, unless DEMO_DATA), runs/NAME-critic and runs/NAME-oracle-sparse (each
# with report.md and curves.png), runs/NAME-fresh (report.md: success of each actor on the fresh
# seeds) and runs/NAME-compare.png. Both runs side by side on 2 CPU cores, one learner thread each:
# about 41 minutes in all for 40 episodes on this project's 2-core machine (dial-turn-v3: 2,437 s).
set -euo pipefail
TASK=${1:?usage: bash recipes/rl-replay.sh TASK [EPISODES] [NAME] [vlac rl flags]}
N=${2:-40}
NAME=${3:-${TASK%-v3}}
shift $(( $# < 3 ? $# : 3 ))
CRITIC_ARM=${CRITIC_ARM:---learner.reward dense --done-threshold 1.5}
DEMOS=${DEMOS:-40}
START=${START:-builtin}
CLONE=${CLONE:-0}
DEMO_DATA=${DEMO_DATA:-}
REPLAY_LR=${REPLAY_LR:-1e-4}
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p runs
if [ -n "$DEMO_DATA" ]; then
  [ -d "$DEMO_DATA/meta" ] || { echo "DEMO_DATA=$DEMO_DATA is not a dataset folder (no meta/ in it); give the folder \`vlac data collect --out\` wrote" >&2; exit 2; }
  DEMOS_DIR=$DEMO_DATA
else
  DEMOS_DIR=runs/$NAME-demos
  vlac data collect --out $DEMOS_DIR --tasks $TASK --episodes-per-task $DEMOS --behaviours expert:1 \
    --seed 7000 --workers 2 --max-steps 100
fi
if [ "$CLONE" -gt 0 ]; then
  INIT=$START; [ "$START" = builtin ] && INIT=actor  # `vlac actor train` names the built-in actor "actor"
  vlac actor train --data $DEMOS_DIR --init $INIT --out runs/$NAME-clone --steps $CLONE --lr 1e-4 \
    --warmup 0 --val-every $CLONE --val-episodes 4 --threads 2
  PRIOR=$START
  START=runs/$NAME-clone/model
fi
REPLAY="--learner.demo-data $DEMOS_DIR --learner.demo-weight 1.0 --learner.replay-steps 40 --learner.replay-lr $REPLAY_LR"
COMMON="--config configs/rl/reach-v3.yaml --tasks $TASK --episodes $N --eval-every 20 --eval-episodes 20
  --wait-for-learner --max-episodes-per-update 4 --learner.threads 1 --actor $START $REPLAY"
# shellcheck disable=SC2086
vlac rl $COMMON $CRITIC_ARM --out runs/$NAME-critic "$@" > runs/$NAME-critic.log 2>&1 &
# shellcheck disable=SC2086
vlac rl $COMMON --learner.reward oracle-sparse --critic none --out runs/$NAME-oracle-sparse "$@" \
  > runs/$NAME-oracle-sparse.log 2>&1 &
wait
# the built-in actor and the actor cloning started from are evaluated beside the runs' start
BEFORE=() BEFORE_NAMES=()
if [ "$START" != builtin ]; then BEFORE=(builtin) BEFORE_NAMES=(built-in); fi
if [ -n "${PRIOR:-}" ] && [ "$PRIOR" != builtin ]; then BEFORE+=("$PRIOR") BEFORE_NAMES+=("prior ($PRIOR)"); fi
vlac actor eval --actor "${BEFORE[@]}" $START runs/$NAME-critic/learner/model runs/$NAME-oracle-sparse/learner/model \
  --names "${BEFORE_NAMES[@]}" "start ($START)" critic "oracle-sparse (reference)" --tasks $TASK --episodes 40 --max-steps 100 \
  --critic none --threads 2 --seed 30000 --out runs/$NAME-fresh
vlac rl compare --runs runs/$NAME-critic runs/$NAME-oracle-sparse --names "critic + replay" \
  "oracle-sparse + replay (reference)" --out runs/$NAME-compare.png

#!/usr/bin/env bash
# The headline experiment in simulation: RL from the built-in actor on reach-v3 and push-v3 with
# two simulated robots, rewards and done from the built-in critic only, against the sparse
# baseline (reward 1 at the critic's done) on the same budget; success on 20 evaluation episodes
# (10 per task, simulator flag) every 50 episodes. Both runs side by side on 2 CPU cores.
#   bash recipes/rl-experiment.sh [EPISODES] [NAME] [more `vlac rl` flags, given to both runs]
# e.g. bash recipes/rl-experiment.sh 100 rl-p12 --done-patience 12
# writes runs/NAME-dense, runs/NAME-sparse (each with report.md) and runs/NAME-compare.png.
set -euo pipefail
N=${1:-200}
NAME=${2:-rl}
shift $(( $# < 2 ? $# : 2 ))
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p runs
vlac rl --config configs/rl/reach-push.yaml --episodes $N --out runs/$NAME-dense "$@" > runs/$NAME-dense.log 2>&1 &
vlac rl --config configs/rl/reach-push-sparse.yaml --episodes $N --out runs/$NAME-sparse "$@" > runs/$NAME-sparse.log 2>&1 &
wait
vlac rl compare --runs runs/$NAME-dense runs/$NAME-sparse --names dense sparse --out runs/$NAME-compare.png

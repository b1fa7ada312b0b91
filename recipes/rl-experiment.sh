#!/usr/bin/env bash
# The headline experiment in simulation: RL from the built-in actor on reach-v3 and push-v3 with
# two simulated robots, rewards and done from the built-in critic only, against the sparse
# baseline (reward 1 at the critic's done) on the same budget; success on 20 evaluation episodes
# (10 per task, simulator flag) every 50 episodes. Both runs side by side on 2 CPU cores.
#   bash recipes/rl-experiment.sh [EPISODES]
set -euo pipefail
N=${1:-200}
export MUJOCO_GL=${MUJOCO_GL:-egl}
vlac rl --config configs/rl/reach-push.yaml --episodes $N --out runs/rl-dense > runs/rl-dense.log 2>&1 &
vlac rl --config configs/rl/reach-push-sparse.yaml --episodes $N --out runs/rl-sparse > runs/rl-sparse.log 2>&1 &
wait
python -m vlac.rl.report --runs runs/rl-dense,runs/rl-sparse --names dense,sparse --out runs/rl-compare.png

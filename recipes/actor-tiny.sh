#!/usr/bin/env bash
# Reproduces the built-in default actor (src/vlac/checkpoints/actor-tiny), the ablation without
# progress pre-training, and their evaluation. 2 CPU cores: ~12 min of data collection, ~60 min of
# training (both runs side by side, one thread each), ~20 min of evaluation.
#   bash recipes/actor-tiny.sh [DATA_DIR] [RUN_PREFIX]
set -euo pipefail
D=${1:-runs/actor-data}
R=${2:-runs/actor}
export MUJOCO_GL=${MUJOCO_GL:-egl}
# Six tasks that a tiny behaviour-cloned policy does not solve outright (small objects, precise
# positioning). The first default used four easy tasks (drawer-open, button-press-topdown,
# door-open, plate-slide) that BC solved at 95-100 %, leaving nothing for RL to improve.
TASKS=reach-v3,push-v3,pick-place-v3,sweep-into-v3,dial-turn-v3,lever-pull-v3

# 100 scripted-expert demonstrations per task (only successful ones are cloned).
vlac data collect --out $D/train --tasks $TASKS --episodes-per-task 100 --behaviours expert:1 --seed 5000 --workers 2

# Behaviour cloning from the built-in critic (progress pre-training) and from scratch (ablation).
vlac actor train --data $D/train --out $R-tiny --init critic --steps 1500 --val-every 500 --threads 1 &
vlac actor train --data $D/train --out $R-scratch --init scratch --steps 1500 --val-every 500 --threads 1 &
wait

# Table 2: both checkpoints on the six tasks (20 new episodes each, seeds never trained on), task
# progress from the built-in critic; then the default under scene variants.
vlac actor eval --actor $R-tiny/model,$R-scratch/model --names progress-pretrained no-pretraining \
  --tasks $TASKS --episodes 20 --threads 2 --out $R-eval
# 20 more episodes per task for the shipped checkpoint (other seeds), pooled with the above.
vlac actor eval --actor $R-scratch/model --names no-pretraining --tasks $TASKS --episodes 20 --seed 11000 \
  --critic none --threads 2 --out $R-eval-b
vlac actor eval --actor $R-scratch/model --names default --tasks reach-v3 sweep-into-v3 dial-turn-v3 lever-pull-v3 \
  --variants dim table-dark cam-shift --episodes 10 --critic none --threads 2 --out $R-eval-variants

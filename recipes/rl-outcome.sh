#!/usr/bin/env bash
# Issue 19's experiment on one task with the recipe that first raised a clone through RL (session 29,
# dial-turn-v3 0.65 -> 0.80): outcome advantages (one per episode, against the other episodes of its
# task in the update) and the critic's verdict on how each fixed-horizon episode ended (the `final`
# reward), given by a done detector trained on the start actor's own labelled rollouts.
#   bash recipes/rl-outcome.sh TASK START DEMO_DATA [EPISODES] [NAME] [more `vlac rl` flags, given to both runs]
# e.g. bash recipes/rl-outcome.sh sweep-into-v3 runs/sweep-clone1500/model runs/sweep-demos160 200 sweep
# START is the actor to improve (a clone from `vlac actor train`), DEMO_DATA the demonstrations it was
# cloned from (the done probe trains on them beside the rollouts).
# Steps, each skipped when its output already exists (so a stopped recipe resumes; `vlac rl` resumes its run):
#  1. ROLLOUTS (default 120) episodes of START at temperature 1 (the loop's sampling), labelled by the
#     simulator's flag (seed 70000), and 40 more for validation (seed 45000): runs/NAME-rollouts, runs/NAME-rollouts-val;
#  2. the done probe: the built-in critic trained on p(done) alone for 300 steps (runs/NAME-critic-done),
#     and its figures on the validation rollouts beside the built-in critic's (runs/NAME-done-*.json);
#  3. the critic arm (`--learner.reward final`, the probe, its done off: a fixed horizon) against the
#     oracle-sparse reference arm (1 at the simulator's flag), both with outcome advantages, side by side
#     (runs/NAME-final, runs/NAME-oracle-sparse);
#  4. START and the final actors on 40 fresh seeds no step used (runs/NAME-fresh), the finals on 40 more per
#     seed of MORE_SEEDS (default 41000: runs/NAME-fresh41000), and runs/NAME-compare.png.
# The runs take configs/rl/outcome.yaml (the settings of session 29's runs). ORACLE_DENSE=1 adds a third
# arm beside the two, oracle-dense (Meta-World's shaped reward summed over the episode; a reference).
# ROLLOUTS sets the number of labelled training rollouts (default 120), EVAL_EVERY the loop's evaluation
# interval in episodes (default 50; 20 fixed seeds each time). NEGATIVES=1 gives the done probe more failures
# to learn from before the run (step 1b): 40 rollouts each of the scripted stop-short, miss@6 and miss@8
# (runs/NAME-negatives) and 40 of START at temperature 1.5 (runs/NAME-hot), all labelled by the flag; on
# button-press-topdown a mix like it (80 stop-short, 30 each of miss@1.5/2.5/4/6/8, the same 40 hot rollouts)
# lifted the probe's AUC on a moved policy's episodes from 0.46 to 0.76 and the critic arm from 0.41 to 0.625,
# which still fell from 0.95 at 150 episodes (BENCHMARKS.md, "Why the button done probe was exploited").
# Give such a run a NAME of its own. DECODE (greedy, the default; mean; or sampled) is how the loop's evaluations
# and step 4 read the actors' numbers (`vlac rl --eval-mean` / `--eval-temperature 1`, `vlac actor eval --mean` /
# `--temperature 1`): which deploys best depends on the actor (README, "Three ways to read the numbers"). The
# fresh-seed folders are runs/NAME-fresh-mean* / -fresh-sampled* then, so a finished recipe run again with another
# DECODE adds its actors' figures in that decoding (the arms' own evaluations stay as they were run).
# The simulator's flag labels the probe's training rollouts offline (as an operator labels a real robot's
# episodes); it never reaches the loop's critic arm at run time.
# About 90 min for 200 episodes on a 2-core machine (sweep-into-v3: rollouts 9 min, probe 4 min, arms 63 min, evaluation 10 min).
set -euo pipefail
TASK=${1:?usage: bash recipes/rl-outcome.sh TASK START DEMO_DATA [EPISODES] [NAME] [vlac rl flags]}
START=${2:?give the actor to improve, e.g. runs/sweep-clone1500/model}
DEMO_DATA=${3:?give the demonstrations START was cloned from, e.g. runs/sweep-demos160}
N=${4:-200}
NAME=${5:-${TASK%-v3}}
shift $(( $# < 5 ? $# : 5 ))
ROLLOUTS=${ROLLOUTS:-120}
EVAL_EVERY=${EVAL_EVERY:-50}
MORE_SEEDS=${MORE_SEEDS-41000}
case ${DECODE:=greedy} in
  greedy) RL_DECODE=(); EVAL_DECODE=(); FRESH=fresh ;;
  mean) RL_DECODE=(--eval-mean); EVAL_DECODE=(--mean); FRESH=fresh-mean ;;
  sampled) RL_DECODE=(--eval-temperature 1); EVAL_DECODE=(--temperature 1); FRESH=fresh-sampled ;;
  *) echo "DECODE=$DECODE: give greedy, mean or sampled" >&2; exit 2 ;;
esac
export MUJOCO_GL=${MUJOCO_GL:-egl}
[ -d "$DEMO_DATA/meta" ] || { echo "DEMO_DATA=$DEMO_DATA is not a dataset folder (no meta/ in it); give the folder \`vlac data collect --out\` wrote" >&2; exit 2; }
mkdir -p runs
if [ ! -d runs/$NAME-rollouts/rollouts ]; then
  vlac critic fidelity --tasks $TASK --episodes $ROLLOUTS --seed 70000 --threads 1 --ranking-episodes 0 \
    --rollouts-only --actor $START --out runs/$NAME-rollouts &
  vlac critic fidelity --tasks $TASK --episodes 40 --seed 45000 --threads 1 --ranking-episodes 0 \
    --rollouts-only --actor $START --out runs/$NAME-rollouts-val &
  wait
fi
PROBE_ROLLOUTS=(runs/$NAME-rollouts)
if [ -n "${NEGATIVES:-}" ]; then
  if [ ! -d runs/$NAME-negatives/rollouts ] || [ ! -d runs/$NAME-hot/rollouts ]; then
    vlac critic fidelity --tasks $TASK --episodes 0 --ranking-episodes 40 --policies stop-short miss@6 miss@8 \
      --rollouts-only --seed 46000 --threads 1 --out runs/$NAME-negatives &
    vlac critic fidelity --tasks $TASK --episodes 0 --ranking-episodes 40 --policies actor@1.5 --actor $START \
      --rollouts-only --seed 49000 --threads 1 --out runs/$NAME-hot &
    wait
  fi
  PROBE_ROLLOUTS+=(runs/$NAME-negatives runs/$NAME-hot)
fi
if [ ! -f runs/$NAME-critic-done/model/config.json ]; then
  vlac critic train --data $DEMO_DATA --rollouts "${PROBE_ROLLOUTS[@]}" --init critic --out runs/$NAME-critic-done \
    --steps 300 --warmup 20 --lr 2e-4 --val-every 300 --threads 2 --weights done:1.0 --done-labels flag \
    --done-rollouts 1.0 --done-near 0.5
  python benchmarks/done_detector.py --critic builtin --rollouts runs/$NAME-rollouts-val --threads 2 \
    --out runs/$NAME-done-builtin.json
  python benchmarks/done_detector.py --critic runs/$NAME-critic-done/model --rollouts runs/$NAME-rollouts-val \
    --threads 2 --out runs/$NAME-done-probe.json
fi
COMMON="--config configs/rl/outcome.yaml --tasks $TASK --episodes $N --eval-every $EVAL_EVERY --actor $START ${RL_DECODE[*]}"
# shellcheck disable=SC2086
vlac rl $COMMON --critic runs/$NAME-critic-done/model --out runs/$NAME-final "$@" > runs/$NAME-final.log 2>&1 &
# shellcheck disable=SC2086
vlac rl $COMMON --learner.reward oracle-sparse --critic none --out runs/$NAME-oracle-sparse "$@" \
  > runs/$NAME-oracle-sparse.log 2>&1 &
ARMS=("runs/$NAME-final" "runs/$NAME-oracle-sparse")
NAMES=("critic final + outcome" "oracle-sparse + outcome (reference)")
if [ -n "${ORACLE_DENSE:-}" ]; then  # the third reference arm: Meta-World's shaped reward summed over the episode
  # shellcheck disable=SC2086
  vlac rl $COMMON --learner.reward oracle-dense --critic none --out runs/$NAME-oracle-dense "$@" \
    > runs/$NAME-oracle-dense.log 2>&1 &
  ARMS+=("runs/$NAME-oracle-dense"); NAMES+=("oracle-dense + outcome (reference)")
fi
wait
FINALS=("${ARMS[@]/%//learner/model}")
if [ ! -f runs/$NAME-$FRESH/report.json ]; then
  vlac actor eval --actor $START "${FINALS[@]}" --names "start ($START)" "${NAMES[@]}" --tasks $TASK --episodes 40 \
    --max-steps 100 --critic none --threads 2 --seed 30000 "${EVAL_DECODE[@]}" --out runs/$NAME-$FRESH
fi
for seed in $MORE_SEEDS; do  # the final actors on 40 more fresh seeds each
  [ -f runs/$NAME-$FRESH$seed/report.json ] && continue
  vlac actor eval --actor "${FINALS[@]}" --names "${NAMES[@]}" --tasks $TASK --episodes 40 --max-steps 100 \
    --critic none --threads 2 --seed $seed "${EVAL_DECODE[@]}" --out runs/$NAME-$FRESH$seed
done
vlac rl compare --runs "${ARMS[@]}" --names "${NAMES[@]}" --out runs/$NAME-compare.png

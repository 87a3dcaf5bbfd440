#!/usr/bin/env bash
# Table I of the GCWD paper at CPU scale, end to end: data set + metric precompute, the training sweep, the report.
#
#   bash scripts/gcwd_table1_mini.sh                    # from the repository root; outputs in outputs/gcwd_table1_mini
#   EPOCHS=4 bash scripts/gcwd_table1_mini.sh           # fewer epochs (the preset's default: trainer.max_epochs=10)
#
# 1. psmexp.precompute: generates the stratified FTM grid (2048 sounds, 2048 samples each) and M = J^T J of the small
#    JTFS (J=5, Q=(8,1)) for every split (resumable: rerun after an interruption).
# 2. psmexp-train paper=gcwd_table1_mini: {adam, gcwd} x efficientnet_b0 x 3 seeds, PNP loss with LM damping.
# 3. psmexp-report: our table beside the paper's Table I, and the val/loss curves (Fig. 2 style).
# Steps 1 and 2 run as two single-threaded processes (precompute: train split | test then val split; training: adam |
# gcwd), one per core of a 2-core machine: 31 min in all here (docs/results/gcwd.md).
# The data and precompute overrides below are the preset's (psmexp/conf/paper/gcwd_table1_mini.yaml): keep them in sync.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT   # a failing step stops its twin
# One torch thread per process: on a shared, loaded 2-core machine two intra-op threads were 5-8x slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
SWEEP_DIR=${SWEEP_DIR:-outputs/gcwd_table1_mini}
DATA="data.data_dir=${PSMEXP_DATA:-data}/ftm_drums_mini data.total_size=2048 data.test_size=192 data.bins=8 data.interior_bins=6"
SOUND="synth.n_samples=2048 perceptual=jtfs perceptual.J=5 perceptual.Q=[8,1]"
precompute() { python -m psmexp.precompute $DATA $SOUND shard_size=64 batch_size=16 num_threads=1 "splits=[$1]" ${PRECOMPUTE_ARGS:-}; }
train() { python -m psmexp.train paper=gcwd_table1_mini hydra.sweeper.params.optim=$1 hydra.sweep.dir="$SWEEP_DIR/$1" \
            ${EPOCHS:+trainer.max_epochs=$EPOCHS} ${TRAIN_ARGS:-}; }

precompute test                      # the smallest split first: it also writes the data set both processes read
precompute train & pid=$!
precompute val
wait $pid
train adam & pid=$!
train gcwd
wait $pid
python -m psmexp.report "$SWEEP_DIR" --plot val/loss pnp/lambda | tee "$SWEEP_DIR/report.md"

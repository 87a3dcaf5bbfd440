#!/usr/bin/env bash
# Table I of the GCWD paper at CPU scale, end to end: data set + metric precompute, the training sweep, the report.
#
#   bash scripts/gcwd_table1_mini.sh                    # from the repository root; outputs in outputs/gcwd_table1_mini
#   EPOCHS=4 bash scripts/gcwd_table1_mini.sh           # fewer epochs (the preset's default: trainer.max_epochs=10)
#
# 1. psmexp.precompute: generates the stratified FTM grid (512 sounds, 2048 samples each) and M = J^T J of the small
#    JTFS (J=5, Q=(8,1)) for every split (resumable: rerun after an interruption).
# 2. psmexp-train paper=gcwd_table1_mini: {adam, gcwd} x efficientnet_b0 x 3 seeds, PNP loss with LM damping.
# 3. psmexp-report: our table beside the paper's Table I, and the val/loss curves (Fig. 2 style).
# The data and precompute overrides below are the preset's (conf/paper/gcwd_table1_mini.yaml): keep them in sync.
set -euo pipefail
cd "$(dirname "$0")/.."
# One torch thread per process: on a shared, loaded 2-core machine two intra-op threads were 5-8x slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
SWEEP_DIR=${SWEEP_DIR:-outputs/gcwd_table1_mini}
DATA="data.data_dir=${PSMEXP_DATA:-data}/ftm_drums_mini data.total_size=512 data.test_size=48 data.bins=8 data.interior_bins=6"
SOUND="synth.n_samples=2048 perceptual=jtfs perceptual.J=5 perceptual.Q=[8,1]"

python -m psmexp.precompute $DATA $SOUND shard_size=64 batch_size=16 num_threads=1 ${PRECOMPUTE_ARGS:-}
python -m psmexp.train paper=gcwd_table1_mini hydra.sweep.dir="$SWEEP_DIR" ${EPOCHS:+trainer.max_epochs=$EPOCHS} ${TRAIN_ARGS:-}
python -m psmexp.report "$SWEEP_DIR" --plot val/loss pnp/lambda | tee "$SWEEP_DIR/report.md"

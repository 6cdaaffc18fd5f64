#!/usr/bin/env bash
# One call on a lent GPU host (launch/burst.py), for issue 23: realsrgan_x4's last stage (v6's:
# a fresh U-Net SN D, every sample a web image, 192-px crops, EnhanceNet's texture term x 20, G's
# average 0.99) run for minutes of a GPU instead of hours of two CPU cores. From the shipped
# realsrgan_x4 (GEN_INIT), D first learns alone (G's rate 0) for W seconds, then G and D for R
# seconds; every kept checkpoint's G average is exported to $OUT, to be scored and souped here:
#   python -m benchmarks.realworld_eval --models realsrgan_x4 OUT/realsrgan_*.msgpack
#   python -m srgan_jax.soup --out soup.msgpack OUT/realsrgan_A.msgpack OUT/realsrgan_B.msgpack ...
#
#   here:  python launch/burst.py pack .burst --data ../shared/datasets/extra242 --vgg-through conv3_1
#   there: bash launch/burst_realsrgan.sh        (device run: carry .burst, timeout_s 590)
#
# The texture term reads relu3_1, so the pack must keep conv3_1 (--vgg-through conv3_1); without
# it the loss is NaN at the first step and the trainer stops (srgan_jax/training/nonfinite.py).
# Environment: W, R (seconds), BATCH (default 16 of 192x192: 4x the CPU runs' batch), LR (G's and
# D's rate, 2e-5 as v6), EVERY (steps between checkpoints), KEEP (checkpoints kept and exported).
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the exported generators and logs}"
W=${W:-60}
R=${R:-360}
BATCH=${BATCH:-16}
LR=${LR:-2e-5}
EVERY=${EVERY:-500}
KEEP=${KEEP:-8}
GEN_INIT=${GEN_INIT:-realsrgan_x4}
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
"$py" launch/burst.py setup .burst
export PYTHONPATH=/tmp/burst_site${PYTHONPATH:+:$PYTHONPATH}
src="folder:$(find .burst/data -mindepth 1 -maxdepth 1 -type d | sort | paste -sd, -)"
wd=/tmp/burst_realsrgan
common=(--config=configs/realsrgan_x4.py:v2 --config.data.source="$src" --config.eval.lpips=
  --config.generator_init="$GEN_INIT" --config.loss.vgg_weights=/tmp/burst_site/vgg16_22.msgpack
  --config.model.compute_dtype=bfloat16 --config.data.hr_crop=192 --config.data.batch_size="$BATCH"
  --config.data.realesrgan.light_prob=1.0 --config.ema_decay=0.99
  --config.num_train_steps=1000000 --config.eval.every="$EVERY" --config.checkpoint_every="$EVERY"
  --config.keep_checkpoints="$KEEP" --config.sample_every=0)
nvidia-smi -L || true
"$py" launch/burst.py train "$W" "$wd" /tmp/burst_warmup.msgpack -- "${common[@]}" \
  --config.optim.learning_rate=0.0 --config.optim.d_learning_rate="$LR" 2>&1 | tee "$OUT/warmup.log"
"$py" launch/burst.py train "$R" "$wd" /tmp/burst_last.msgpack -- "${common[@]}" \
  --config.optim.learning_rate="$LR" --config.loss.texture_weight=20.0 2>&1 | tee "$OUT/run.log"
for ck in "$wd"/checkpoints/*/; do
  step=$(basename "$ck")
  "$py" -m srgan_jax.model_zoo export "$ck" "$OUT/realsrgan_$step.msgpack"
done
ls -l "$OUT"

#!/usr/bin/env bash
# One call on a lent GPU host (launch/burst.py): from the shipped srresnet_x4, SRResNet at 1e-4,
# then 1e-5, then SRGAN with srgan_x4 v3's recipe (configs/x4.py:v3), each under a wall-clock
# budget, on the photographs packed in .burst/; each phase's G exported to $OUT, to be scored
# here with LPIPS (python -m benchmarks.compare_models --models srresnet_x4 FILE ...).
#
#   here:  python launch/burst.py pack .burst --data ../shared/datasets/extra242
#   there: bash launch/burst_plan.sh        (device run: carry .burst, timeout_s 590)
#
# Budgets in seconds (environment): G1 (SRResNet, lr 1e-4), G2 (the same run at 1e-5),
# D1 (SRGAN). HR crops: CROP (default 192: on a GPU 16 x 192^2 costs about what 16 x 96^2
# does, and a 48x48 LR patch lets SRResNet's ~77-pixel receptive field see image, not padding).
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the exported generators and logs}"
G1=${G1:-170}
G2=${G2:-50}
D1=${D1:-250}
CROP=${CROP:-192}
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
"$py" launch/burst.py setup .burst
export PYTHONPATH=/tmp/burst_site${PYTHONPATH:+:$PYTHONPATH}
src="folder:$(find .burst/data -mindepth 1 -maxdepth 1 -type d | sort | paste -sd, -)"
common=(--config.data.source="$src" --config.eval.lpips= --config.model.compute_dtype=bfloat16
  --config.data.hr_crop="$CROP" --config.num_train_steps=1000000 --config.optim.decay_steps='()'
  --config.eval.every=2000 --config.checkpoint_every=2000 --config.keep_checkpoints=1
  --config.sample_every=0)
nvidia-smi -L || true
"$py" launch/burst.py train "$G1" /tmp/burst_g "$OUT/srresnet_lr1e-4.msgpack" -- \
  --config=configs/srresnet_x4.py:train533 "${common[@]}" 2>&1 | tee "$OUT/srresnet_lr1e-4.log"
"$py" launch/burst.py train "$G2" /tmp/burst_g "$OUT/srresnet.msgpack" -- \
  --config=configs/srresnet_x4.py:train533 "${common[@]}" --config.optim.learning_rate=1e-5 \
  2>&1 | tee "$OUT/srresnet.log"
"$py" launch/burst.py train "$D1" /tmp/burst_d "$OUT/srgan.msgpack" -- \
  --config=configs/x4.py:v3 "${common[@]}" --config.generator_init=/tmp/burst_g \
  --config.loss.vgg_weights=/tmp/burst_site/vgg16_22.msgpack 2>&1 | tee "$OUT/srgan.log"

#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice, spot/preemptible or not, until the run is done.
#
#   launch/tpu_vm.sh --name srgan-v4 --zone us-central2-b --accelerator-type v4-32 \
#       --workdir gs://BUCKET/srgan_x4 --spot --queued -- \
#       --config=configs/x4.py --config.loss.vgg_weights=gs://BUCKET/vgg19.msgpack
#
# Each attempt: create the TPU (a queued resource with --queued, waiting until it
# is ACTIVE), copy this checkout to every worker and pip-install it, then run
# `python3 -m srgan_jax.main` on all workers at once (--worker=all; JAX finds the
# other hosts itself). A preemption sends SIGTERM: every host saves a checkpoint
# at the same step in the gs:// workdir. The script then deletes the dead TPU and
# queues a new one; the same command resumes from the newest checkpoint. It stops
# when the trainer has written WORKDIR/DONE (at the final step), or after
# --max-attempts attempts.
#
# Options:
#   --name NAME               TPU (and queued resource) name          (required)
#   --zone ZONE               e.g. us-central2-b                      (required)
#   --accelerator-type TYPE   e.g. v4-32, v5litepod-16                (required)
#   --workdir gs://...        checkpoints, metrics, samples           (required)
#   --project PROJECT         default: gcloud's configured project
#   --runtime-version V       default: tpu-ubuntu2204-base
#   --spot                    spot capacity (preemptible)
#   --queued                  create through a queued resource (waits for capacity)
#   --max-attempts N          default 50
#   --keep                    keep the TPU after the run is done (default: delete)
#   --dry-run                 print the commands, run nothing
set -euo pipefail

name="" zone="" accelerator="" workdir="" project=""
runtime="tpu-ubuntu2204-base"
spot=0 queued=0 keep=0 dry_run=0 max_attempts=50

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --accelerator-type) accelerator="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --runtime-version) runtime="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --queued) queued=1; shift ;;
    --max-attempts) max_attempts="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (main's flags go after --)" >&2; usage 2 ;;
  esac
done
main_args=("$@")

for required in name zone accelerator workdir; do
  if [[ -z "${!required}" ]]; then
    echo "error: --${required/accelerator/accelerator-type} is required (see --help)" >&2
    exit 2
  fi
done
if [[ "$workdir" != gs://* ]]; then
  echo "error: --workdir=$workdir must be a gs:// path: every TPU host writes its part of each checkpoint there" >&2
  exit 2
fi
for a in "${main_args[@]}"; do
  if [[ "$a" == --workdir* ]]; then
    echo "error: pass the workdir as --workdir before --, not to main" >&2
    exit 2
  fi
done

gcloud_common=(--zone="$zone")
if [[ -n "$project" ]]; then gcloud_common+=(--project="$project"); fi

run() {  # prints a command; runs it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $dry_run -eq 0 ]]; then "$@"; fi
}

is_done() {  # the trainer writes WORKDIR/DONE at its final step
  printf '+ gcloud storage ls %q\n' "$workdir/DONE"
  [[ $dry_run -eq 0 ]] && gcloud storage ls "$workdir/DONE" >/dev/null 2>&1
}

tpu_state() {  # READY, PREEMPTED, ... or NONE
  if [[ $dry_run -eq 1 ]]; then echo NONE; return; fi
  gcloud compute tpus tpu-vm describe "$name" "${gcloud_common[@]}" --format='value(state)' \
    2>/dev/null || echo NONE
}

delete_tpu() {
  if [[ $queued -eq 1 ]]; then
    run gcloud compute tpus queued-resources delete "$name" "${gcloud_common[@]}" --force --quiet || true
  else
    run gcloud compute tpus tpu-vm delete "$name" "${gcloud_common[@]}" --quiet || true
  fi
}

create_tpu() {
  local capacity=()
  if [[ $spot -eq 1 ]]; then capacity=(--spot); fi
  if [[ $queued -eq 1 ]]; then
    run gcloud compute tpus queued-resources create "$name" "${gcloud_common[@]}" \
      --node-id="$name" --accelerator-type="$accelerator" --runtime-version="$runtime" \
      "${capacity[@]}"
    printf '+ # wait until: gcloud compute tpus queued-resources describe %q --format=value(state.state) = ACTIVE\n' "$name"
    while [[ $dry_run -eq 0 ]]; do
      state="$(gcloud compute tpus queued-resources describe "$name" "${gcloud_common[@]}" \
        --format='value(state.state)' 2>/dev/null || echo UNKNOWN)"
      case "$state" in
        ACTIVE) break ;;
        FAILED|SUSPENDED) echo "queued resource $name is $state; re-queueing" >&2; delete_tpu
          run gcloud compute tpus queued-resources create "$name" "${gcloud_common[@]}" \
            --node-id="$name" --accelerator-type="$accelerator" --runtime-version="$runtime" \
            "${capacity[@]}" ;;
        *) sleep 60 ;;
      esac
    done
  else
    run gcloud compute tpus tpu-vm create "$name" "${gcloud_common[@]}" \
      --accelerator-type="$accelerator" --version="$runtime" "${capacity[@]}"
  fi
}

install_package() {  # this checkout (committed state), on every worker
  local repo tarball
  repo="$(cd "$(dirname "$0")/.." && pwd)"
  tarball="${TMPDIR:-/tmp}/srgan_jax_$name.tar.gz"
  run git -C "$repo" archive --format=tar.gz -o "$tarball" HEAD
  run gcloud compute tpus tpu-vm scp "$tarball" "$name:srgan_jax.tar.gz" "${gcloud_common[@]}" --worker=all
  run gcloud compute tpus tpu-vm ssh "$name" "${gcloud_common[@]}" --worker=all --command \
    "rm -rf ~/srgan_jax && mkdir -p ~/srgan_jax && tar xzf ~/srgan_jax.tar.gz -C ~/srgan_jax && pip install -q 'jax[tpu]' -e ~/srgan_jax"
}

train() {  # every worker runs the same command; exits non-zero if a host was lost
  local remote
  remote="cd ~/srgan_jax && python3 -m srgan_jax.main $(printf '%q ' "--workdir=$workdir" "${main_args[@]}")"
  run gcloud compute tpus tpu-vm ssh "$name" "${gcloud_common[@]}" --worker=all --command "$remote"
}

for ((attempt = 1; attempt <= max_attempts; attempt++)); do
  if is_done; then
    echo "done: $workdir/DONE exists"
    if [[ $keep -eq 0 ]]; then delete_tpu; fi
    exit 0
  fi
  echo "# attempt $attempt of $max_attempts"
  state="$(tpu_state)"
  if [[ "$state" != READY ]]; then
    if [[ "$state" != NONE ]]; then delete_tpu; fi  # PREEMPTED, TERMINATED, ...
    create_tpu
    install_package
  elif [[ $attempt -eq 1 ]]; then
    install_package  # an existing TPU gets this checkout too
  fi
  if ! train; then
    echo "# the run stopped before its final step" >&2
    if [[ $dry_run -eq 0 && "$(tpu_state)" == READY ]] && ! is_done; then
      echo "error: the run failed on a healthy TPU (not a preemption); see the log above" >&2
      exit 1
    fi
  fi
  if [[ $dry_run -eq 1 ]]; then
    echo "# dry run: the above repeats until $workdir/DONE exists (at most $max_attempts attempts)"
    exit 0
  fi
done
echo "error: $workdir/DONE still missing after $max_attempts attempts" >&2
exit 1

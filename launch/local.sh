#!/usr/bin/env bash
# Runs srgan_jax.main as N processes on this machine, each with M CPU devices,
# joined by jax.distributed (coordinator on 127.0.0.1) and JAX's gloo CPU collectives.
# The same code then runs on N hosts of a TPU slice or a GPU cluster.
#
#   launch/local.sh --processes 2 --devices-per-process 2 -- \
#       --config=configs/x4.py:demo --workdir=runs/demo2
#
# Options:
#   --processes N            processes to start (default 1)
#   --devices-per-process M  CPU devices per process (default 1)
#   --port P                 coordinator port (default: a free one)
#   --timeout S              seconds for all processes to join (default 60)
#   --dry-run                print the commands, run nothing
# SIGTERM or Ctrl-C is forwarded to every process: each saves a checkpoint at
# the same step and exits. Exit status: the first non-zero one of the processes.
set -euo pipefail

processes=1
devices=1
port=""
timeout=60
dry_run=0
python="${PYTHON:-python}"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) processes="$2"; shift 2 ;;
    --devices-per-process) devices="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (main's flags go after --)" >&2; usage 2 ;;
  esac
done
main_args=("$@")

if ! [[ "$processes" =~ ^[1-9][0-9]*$ && "$devices" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: --processes and --devices-per-process take positive integers" >&2
  exit 2
fi
if [[ -z "$port" ]]; then
  if [[ $dry_run -eq 1 ]]; then
    port=12355
  else
    port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  fi
fi

xla_flags="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices"

cmd=()
command_for() {  # sets cmd to the argv of process $1
  cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=$xla_flags" "$python" -m srgan_jax.main)
  if [[ "$processes" -gt 1 ]]; then
    cmd+=("--coordinator_address=127.0.0.1:$port" "--num_processes=$processes"
          "--process_id=$1" "--initialization_timeout=$timeout")
  fi
  cmd+=("${main_args[@]}")
}

if [[ $dry_run -eq 1 ]]; then
  for ((i = 0; i < processes; i++)); do
    command_for "$i"
    printf '%q ' "${cmd[@]}"
    echo "&"
  done
  echo "wait"
  exit 0
fi

pids=()
# shellcheck disable=SC2317,SC2329  # invoked by the trap below (2317: shellcheck < 0.11, 2329: >= 0.11)
forward() {  # preemption or Ctrl-C: every process saves at the same step and exits
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap forward TERM INT

for ((i = 0; i < processes; i++)); do
  command_for "$i"
  "${cmd[@]}" &
  pids+=("$!")
done

status=0
for pid in "${pids[@]}"; do
  # `wait` returns early (status > 128) when a trapped signal arrives: wait again.
  while true; do
    rc=0
    wait "$pid" || rc=$?
    if [[ $rc -gt 128 ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  if [[ $rc -ne 0 && $status -eq 0 ]]; then status=$rc; fi
done
exit "$status"

"""Seconds from SIGTERM to a committed checkpoint and to exit, for a training run.

Starts `python -m srgan_jax.main` on the paper's SRResNet (configs/srresnet_x4.py:
B = 16, batch 16, 96x96 HR crops) on the bundled demo photographs, with
`log_every` steps between log lines and no periodic checkpoints, waits for the
second log line plus `--delay` seconds (a signal early in a log interval: the
worst case when a stop is only seen at log steps), sends SIGTERM, and prints:

  - the step time (from the run's own steps/s),
  - signal -> the `Preempted:` line (written once the checkpoint is committed),
  - signal -> process exit,
  - the step the checkpoint was saved at, and the run's own account of the latency.

  python -m benchmarks.preemption_latency [--log_every 50] [--delay 2] [-- main flags...]

Nothing is downloaded. A few minutes on 2 CPU cores (compile, 2 x `log_every`
steps, then the stop). Spot and preemptible VMs allow about 30 s.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--log_every', type=int, default=50)
  parser.add_argument('--delay', type=float, default=2.0, help='seconds after the second log line')
  parser.add_argument('extra', nargs='*', help='more flags for srgan_jax.main')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [
      sys.executable,
      '-u',
      '-m',
      'srgan_jax.main',
      '--config=configs/srresnet_x4.py',
      f'--workdir={workdir}',
      '--config.data.source=demo',
      '--config.data.val_source=demo',
      '--config.sample_every=0',
      f'--config.log_every={args.log_every}',
      '--config.checkpoint_every=1000000',
      '--config.num_train_steps=1000000',
      *args.extra,
    ]
    proc = subprocess.Popen(
      cmd,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu'),
    )
    lines, logged = [], 0
    for line in proc.stderr:
      lines.append(line)
      logged += bool(re.search(r'step \d+ \|', line))
      if logged == 2:  # the first interval's steps/s includes the compile
        break
    else:
      sys.exit('the run ended before its second log line:\n' + ''.join(lines[-20:]))
    rate = float(re.search(r'steps_per_sec ([\d.e+-]+)', lines[-1]).group(1))
    time.sleep(args.delay)
    t_signal = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    t_line = None
    for line in proc.stderr:
      lines.append(line)
      if 'Preempted:' in line:
        t_line = time.monotonic()
    proc.wait()
    t_exit = time.monotonic()
  preempted = next((l for l in lines if 'Preempted:' in l), '')
  step = re.search(r'at step (\d+)', preempted)
  print(
    f'step time {1 / rate:.2f}s (log_every {args.log_every}); SIGTERM {args.delay:.1f}s after '
    'the second log line'
  )
  print(
    f'signal -> "Preempted" line (checkpoint committed): {t_line - t_signal:.1f}s'
    if t_line
    else 'no "Preempted" line'
  )
  print(f'signal -> exit: {t_exit - t_signal:.1f}s (exit status {proc.returncode})')
  print(
    f'saved at step {step.group(1) if step else "?"}; the run says: '
    f'{preempted.split("] ", 1)[-1].strip()}'
  )


if __name__ == '__main__':
  main()

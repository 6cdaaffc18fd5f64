"""ESRGAN's options in the paper's trainer: the loss terms, BN-free generators, the EMA of G."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import esrgan_x4
from configs import srresnet_x4
from configs import x4
from srgan_jax.weights import checkpoint_files
from srgan_jax.training import config_checks
from srgan_jax.training import losses
from srgan_jax.training import loop
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.training import writers
from tests.helpers import run_main, tiny_config

ESRGAN_LOSS = {
  'loss.content': 'mse',  # (a VGG loss needs weights; its own tests are in test_esrgan_losses)
  'loss.content_weight': 0.5,
  'loss.pixel': 'l1',
  'loss.pixel_weight': 1e-2,
  'loss.gan': 'ragan',
  'loss.adversarial_weight': 5e-3,
}


def _batch(config):
  from srgan_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  return {'hr': jnp.asarray(next(pipeline.create_train_iterator(config))['hr'])}


def _step(config, g, d, batch):
  fn = lambda g, d, b: update_step.train_step(
    g, d, b, None, config=config, content_loss=update_step.make_content_loss(config)
  )
  return jax.jit(fn)(g, d, batch)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize('module', [default, srresnet_x4, x4])
def test_the_papers_configs_leave_every_esrgan_option_off(module):
  c = module.get_config()
  assert (c.model.arch, c.model.output, c.ema_decay) == ('srresnet', 'tanh', 0.0)
  assert (c.loss.content_weight, c.loss.pixel, c.loss.gan) == (1.0, '', 'standard')
  assert (c.loss.vgg_before_activation, c.loss.vgg_criterion) == (False, 'mse')
  assert (c.pretrain.content, c.pretrain.learning_rate, tuple(c.pretrain.decay_steps)) == (
    'mse',
    0.0,
    (),
  )


@pytest.mark.slow
@pytest.mark.parametrize('phase', ['srresnet', 'srgan'])
def test_the_papers_step_is_content_plus_1e_3_adversarial_and_nothing_else(phase):
  config = tiny_config(phase)
  g, d = train_states.create_train_states(config, jax.random.key(0))
  assert g.ema_params is None
  _, _, m = _step(config, g, d, _batch(config))
  keys = {'g_loss', 'content_loss', 'learning_rate', 'g_grad_norm'}
  if phase == 'srgan':
    keys |= {'d_loss', 'adversarial_loss', 'd_real', 'd_fake'}
    np.testing.assert_allclose(
      m['g_loss'], m['content_loss'] + 1e-3 * m['adversarial_loss'], rtol=1e-6
    )
  else:
    assert float(m['g_loss']) == float(m['content_loss'])
  assert set(m) == keys


@pytest.mark.slow
def test_the_esrgan_generator_loss_is_weighted_content_plus_pixel_plus_ragan():
  config = tiny_config('srgan', **ESRGAN_LOSS)
  g, d = train_states.create_train_states(config, jax.random.key(0))
  batch = _batch(config)
  _, _, m = _step(config, g, d, batch)
  want = 0.5 * m['content_loss'] + 1e-2 * m['pixel_loss'] + 5e-3 * m['adversarial_loss']
  np.testing.assert_allclose(m['g_loss'], want, rtol=1e-6)
  # the terms are what their definitions give on this step's SR and logits
  from srgan_jax.data.imresize import degrade  # pylint: disable=g-import-not-at-top

  lr, hr = degrade(batch['hr'], 4, True)
  sr, _ = g.apply_fn(
    {'params': g.params, 'batch_stats': g.batch_stats}, lr, train=True, mutable=['batch_stats']
  )
  np.testing.assert_allclose(m['pixel_loss'], losses.pixel_loss('l1', sr, hr), rtol=1e-5)
  np.testing.assert_allclose(m['content_loss'], losses.pixel_mse(sr, hr), rtol=1e-5)
  pair = jnp.stack([hr, sr], axis=1).reshape((-1,) + hr.shape[1:])
  logits, _ = d.apply_fn(
    {'params': d.params, 'batch_stats': d.batch_stats}, pair, train=True, mutable=['batch_stats']
  )
  real, fake = logits.reshape(-1, 2).T
  np.testing.assert_allclose(m['adversarial_loss'], losses.ragan_generator(real, fake), rtol=1e-5)
  np.testing.assert_allclose(m['d_loss'], losses.ragan_discriminator(real, fake), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['rrdbnet', 'msrresnet'])
def test_bn_free_generators_train_with_l1(arch):
  config = tiny_config(
    'srresnet', **{'model.arch': arch, 'loss.content': 'l1', 'optim.learning_rate': 1e-3}
  )
  g, d = train_states.create_train_states(config, jax.random.key(0))
  assert g.batch_stats == {}
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  batch, first = _batch(config), None
  # (MSRResNet starts at its bilinear skip's loss, its residual branch initialised x0.1: slower)
  for _ in range(15 if arch == 'rrdbnet' else 60):
    g, d, m = step(g, d, batch, None)
    first = first or float(m['content_loss'])
  assert float(m['content_loss']) < (0.7 if arch == 'rrdbnet' else 0.95) * first


@pytest.mark.slow
def test_the_ema_follows_each_update_with_its_decay():
  config = tiny_config('srgan', ema_decay=0.9, **ESRGAN_LOSS)
  g0, d0 = train_states.create_train_states(config, jax.random.key(0))
  for a, b in zip(_leaves(g0.ema_params), _leaves(g0.params)):
    np.testing.assert_array_equal(a, b)  # the average starts at the weights
  g1, _, _ = _step(config, g0, d0, _batch(config))
  for e, p0, p1 in zip(_leaves(g1.ema_params), _leaves(g0.params), _leaves(g1.params)):
    np.testing.assert_allclose(e, 0.9 * p0 + 0.1 * p1, rtol=1e-6, atol=1e-7)
  assert any(not np.allclose(e, p) for e, p in zip(_leaves(g1.ema_params), _leaves(g1.params)))


def _metrics(workdir):
  return [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


@pytest.mark.slow
def test_the_ema_is_checkpointed_resumed_validated_and_exported(tmp_path, monkeypatch):
  shown = []
  real_grid = writers.write_sample_grid
  monkeypatch.setattr(
    writers,
    'write_sample_grid',
    lambda w, wd, step, val, cfg, g, p: (
      shown.append(_leaves(g.params)) or real_grid(w, wd, step, val, cfg, g, p)
    ),
  )
  config = tiny_config('srresnet', ema_decay=0.5, num_train_steps=2, checkpoint_every=2)
  g2, _ = loop.train_and_evaluate(config, str(tmp_path))
  for s, e in zip(shown[-1], _leaves(g2.ema_params)):  # the grid shows the average
    np.testing.assert_array_equal(s, e)
  assert (tmp_path / 'checkpoints' / '2' / 'generator_ema').is_dir()
  config.num_train_steps = 4
  g4, _ = loop.train_and_evaluate(config, str(tmp_path))  # resumes at 2
  assert int(g4.step) == 4 and [m['step'] for m in _metrics(tmp_path)][-1] == 4
  # a straight 4-step run gives the same average: the resumed one restored it
  straight, _ = loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  for a, b in zip(_leaves(g4.ema_params), _leaves(straight.ema_params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  exported, meta = checkpoint_files.load_generator_with_meta(tmp_path / 'export')
  for a, b in zip(_leaves(exported['params']), _leaves(g4.ema_params)):
    np.testing.assert_array_equal(a, b)
  assert meta['ema_decay'] == 0.5
  # the checkpoint, too, gives the average to inference and to generator_init
  from_ckpt = checkpoint_files.load_generator(tmp_path / 'checkpoints')
  for a, b in zip(_leaves(from_ckpt['params']), _leaves(g4.ema_params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_checkpoint_without_ema_restores_into_a_run_with_ema_and_back(tmp_path):
  config = tiny_config('srresnet', num_train_steps=2, checkpoint_every=2, sample_every=0)
  g2, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'checkpoints' / '2' / 'generator_ema').exists()
  config.ema_decay, config.num_train_steps = 0.9, 3
  g3, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert int(g3.step) == 3
  # the average started from the restored step-2 weights: one update later it is 0.9 / 0.1
  for e, p2, p3 in zip(_leaves(g3.ema_params), _leaves(g2.params), _leaves(g3.params)):
    np.testing.assert_allclose(e, 0.9 * p2 + 0.1 * p3, rtol=1e-5, atol=1e-6)
  config.ema_decay, config.num_train_steps = 0.0, 4
  g4, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert int(g4.step) == 4 and g4.ema_params is None


@pytest.mark.slow
def test_pretraining_uses_its_own_loss_and_learning_rate_schedule(tmp_path):
  config = tiny_config(
    'srgan',
    **{
      'pretrain_steps': 4,
      'pretrain.content': 'l1',
      'pretrain.learning_rate': 2e-4,
      'pretrain.decay_steps': (2,),
      'pretrain.decay_factor': 0.5,
      'num_train_steps': 2,
      'log_every': 1,
      'sample_every': 0,
      'ema_decay': 0.9,
      **ESRGAN_LOSS,
    },
  )
  loop.train_and_evaluate(config, str(tmp_path))
  pre = [m for m in _metrics(tmp_path / 'srresnet') if 'learning_rate' in m]
  assert [m['learning_rate'] for m in pre] == pytest.approx([2e-4, 2e-4, 1e-4, 1e-4])
  assert all('pixel_loss' not in m and 'd_loss' not in m for m in pre)  # L1 alone
  gan = [m for m in _metrics(tmp_path) if 'learning_rate' in m]
  assert [m['learning_rate'] for m in gan] == pytest.approx([1e-4, 1e-4])
  assert all('pixel_loss' in m and 'd_loss' in m for m in gan)


@pytest.mark.parametrize(
  'override,match',
  [
    ({'loss.gan': 'wgan'}, 'config.loss.gan'),
    ({'loss.pixel': 'l2'}, 'config.loss.pixel'),
    ({'loss.vgg_criterion': 'cosine'}, 'config.loss.vgg_criterion'),
    ({'loss.pixel_weight': -1.0}, 'config.loss.pixel_weight'),
    ({'ema_decay': 1.0}, 'config.ema_decay'),
    ({'model.arch': 'swinir'}, 'model.arch'),
    (
      {'model.arch': 'rrdbnet', 'model.scale': 2, 'data.hr_crop': 24},
      "rrdbnet's scale must be one of",
    ),
    ({'pretrain_steps': 2, 'pretrain.content': 'vgg54'}, 'config.pretrain.content'),
  ],
)
def test_bad_esrgan_options_are_one_line_config_errors(tmp_path, monkeypatch, override, match):
  monkeypatch.setattr(update_step, 'make_jitted_step', lambda *a: pytest.fail('compiled a step'))
  with pytest.raises(config_checks.ConfigError, match=match) as e:
    loop.train_and_evaluate(tiny_config('srresnet', **override), str(tmp_path))
  assert '\n' not in str(e.value)


def test_the_esrgan_config_variants_build_and_unknown_ones_are_refused():
  full, demo = esrgan_x4.get_config(), esrgan_x4.get_config('demo')
  for c in (full, demo):
    config_checks.validate_config(c)
  assert full.model.arch == demo.model.arch == 'rrdbnet'
  assert demo.ema_decay > 0 and demo.pretrain_steps > 0 and demo.data.source == 'demo'
  with pytest.raises(ValueError, match='unknown config variant'):
    esrgan_x4.get_config('x8')


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_esrgan_demo_runs_both_phases_with_ema(tmp_path):
  """configs/esrgan_x4.py:demo as documented, cut to a few steps of each phase and to one RRDB
  (its 4 cost ~17 s of compiling, and the block count is not what this checks)."""
  wd = tmp_path / 'demo'
  overrides = ['pretrain_steps=3', 'num_train_steps=2', 'sample_every=2', 'checkpoint_every=2']
  overrides.append('model.num_blocks=1')
  r = run_main(
    '--config=configs/esrgan_x4.py:demo', f'--workdir={wd}', *[f'--config.{o}' for o in overrides]
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Phase srresnet: content loss pixel L1' in r.stderr
  assert '+ 0.01 x pixel l1 + 0.005 x ragan adversarial' in r.stderr
  for phase_dir in (wd / 'srresnet', wd):
    assert (phase_dir / 'export').is_dir() and (phase_dir / 'DONE').exists()
    _, meta = checkpoint_files.load_generator_with_meta(phase_dir / 'export')
    assert meta['ema_decay'] == 0.9 and meta['model']['arch'] == 'rrdbnet'

"""Specification tests for the Flax towers, the CLIP module and build_model (CPU, small)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bdjax.models.build import build_model, example_inputs, model_config
from bdjax.models.clip import CLIP
from bdjax.models.cnn import ConvTower
from bdjax.models.text import TextTransformer
from bdjax.models.vit import VisionTransformer

SOT, EOT, VOCAB = 49406, 49407, 49408
D = 16


def _vit(**kw):
  args = dict(patch_size=8, width=32, depth=2, heads=2, output_dim=D, act='quick_gelu')
  return VisionTransformer(**{**args, **kw})


def _text(**kw):
  args = dict(
    width=32, depth=2, heads=2, output_dim=D, vocab_size=VOCAB, context_length=16, act='quick_gelu'
  )
  return TextTransformer(**{**args, **kw})


def _images(b=2, size=32, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, size, size, 3), jnp.float32)


def _tokens(rows, length=16):
  """Hand-made captions: [SOT, *ids, EOT, 0, ...] padded to ``length``."""
  out = np.zeros((len(rows), length), np.int32)
  for i, ids in enumerate(rows):
    seq = [SOT, *ids, EOT]
    out[i, : len(seq)] = seq
  return jnp.asarray(out)


def _norms(x):
  return np.linalg.norm(np.asarray(x, np.float64), axis=-1)


def _n_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope='module')
def text_setup():
  model = _text()
  tokens = _tokens([[320, 1125, 539], [320, 2368]])
  return model, model.init(jax.random.key(0), tokens), tokens


@pytest.fixture(scope='module')
def clip_setup():
  model = CLIP(_vit(), _text())
  images, tokens = _images(), _tokens([[320, 1125], [320, 2368, 539]])
  return model, model.init(jax.random.key(0), images, tokens), images, tokens


# ---------------------------------------------------------------- image towers


@pytest.fixture(scope='module')
def vit_setup():
  model = _vit()
  return model, model.init(jax.random.key(0), _images())


def test_vit_output_shape_and_openai_layout(vit_setup):
  model, variables = vit_setup
  params = variables['params']
  out = model.apply(variables, _images())
  chex.assert_shape(out, (2, D))
  chex.assert_tree_all_finite(out)
  assert set(params['conv1']) == {'kernel'}  # patch embedding has no bias
  chex.assert_shape(params['conv1']['kernel'], (8, 8, 3, 32))
  chex.assert_shape(params['class_embedding'], (32,))
  chex.assert_shape(params['positional_embedding'], (1 + 4 * 4, 32))
  assert set(params['proj']) == {'kernel'}
  assert {'ln_pre', 'ln_post', 'transformer'} <= set(params)
  assert set(params['transformer']) == {'resblocks_0', 'resblocks_1'}
  assert set(params['transformer']['resblocks_0']) == {'ln_1', 'attn', 'ln_2', 'mlp'}


def test_vit_works_at_two_resolutions(vit_setup):
  model, p32 = vit_setup
  p48 = model.init(jax.random.key(0), _images(size=48))
  chex.assert_shape(p32['params']['positional_embedding'], (1 + 16, 32))
  chex.assert_shape(p48['params']['positional_embedding'], (1 + 36, 32))
  chex.assert_shape(model.apply(p48, _images(size=48)), (2, D))
  # A table made at 32 px is resized to the 48 px grid (as open_clip does).
  out = model.apply(p32, _images(size=48))
  chex.assert_shape(out, (2, D))
  chex.assert_tree_all_finite(out)


def test_vit_rejects_size_not_divisible_by_patch():
  with pytest.raises(ValueError, match='not divisible by patch size 8'):
    _vit().init(jax.random.key(0), _images(size=36))


def test_cnn_output_shape_and_no_mutable_state():
  model = ConvTower(output_dim=D, widths=(8, 8, 8))
  images = _images()
  variables = model.init(jax.random.key(0), images)
  assert set(variables) == {'params'}  # no batch_stats: GroupNorm, not BatchNorm
  out = model.apply(variables, images)
  chex.assert_shape(out, (2, D))
  chex.assert_tree_all_finite(out)


def test_intermediates_are_sown_only_on_request(vit_setup):
  model, variables = vit_setup
  assert set(variables) == {'params'}
  _, state = model.apply(variables, _images(), mutable=['intermediates'])
  feats = state['intermediates']['transformer']['resblocks_1']['out'][0]
  chex.assert_shape(feats, (2, 1 + 16, 32))


# ---------------------------------------------------------------- text tower


def test_text_output_shape(text_setup):
  model, params, tokens = text_setup
  out = model.apply(params, tokens)
  chex.assert_shape(out, (2, D))
  chex.assert_tree_all_finite(out)
  chex.assert_shape(params['params']['positional_embedding'], (16, 32))
  chex.assert_shape(params['params']['token_embedding']['embedding'], (VOCAB, 32))


def test_text_pools_at_eot_tokens_after_it_do_not_matter(text_setup):
  model, params, tokens = text_setup
  base = np.asarray(model.apply(params, tokens))
  after = np.asarray(tokens).copy()
  after[:, 6:] = np.arange(100, 100 + after[:, 6:].size).reshape(2, -1)  # past EOT
  np.testing.assert_allclose(model.apply(params, jnp.asarray(after)), base, rtol=1e-5, atol=1e-6)
  before = np.asarray(tokens).copy()
  before[:, 2] = 7777  # a word before EOT
  changed = np.asarray(model.apply(params, jnp.asarray(before)))
  assert np.all(np.abs(changed - base).max(axis=-1) > 1e-3)


def test_text_shorter_padded_context_gives_same_embedding(text_setup):
  model, params, tokens = text_setup
  full = model.apply(params, tokens)  # padded to context_length = 16
  short = model.apply(params, tokens[:, :6])  # padded to 6 only
  np.testing.assert_allclose(short, full, rtol=1e-5, atol=1e-6)


def test_text_rejects_sequence_longer_than_context(text_setup):
  model, params, _ = text_setup
  with pytest.raises(ValueError, match='exceeds context_length 16'):
    model.apply(params, jnp.zeros((1, 17), jnp.int32))


# ---------------------------------------------------------------- CLIP


def test_clip_outputs_unit_norm_embeddings_and_initial_scale(clip_setup):
  model, params, images, tokens = clip_setup
  assert set(params['params']) == {'image_tower', 'text_tower', 'logit_scale'}
  out = model.apply(params, images, tokens)
  assert set(out) == {'image_emb', 'text_emb', 'scale'}
  chex.assert_shape([out['image_emb'], out['text_emb']], (2, D))
  np.testing.assert_allclose(_norms(out['image_emb']), 1.0, atol=1e-5)
  np.testing.assert_allclose(_norms(out['text_emb']), 1.0, atol=1e-5)
  chex.assert_shape(params['params']['logit_scale'], ())
  np.testing.assert_allclose(out['scale'], 1 / 0.07, rtol=1e-5)


def test_encode_methods_use_params_from_one_init(clip_setup):
  model, params, images, tokens = clip_setup
  out = model.apply(params, images, tokens)
  np.testing.assert_allclose(
    model.apply(params, images, method='encode_image'), out['image_emb'], atol=1e-6
  )
  np.testing.assert_allclose(
    model.apply(params, tokens, method='encode_text'), out['text_emb'], atol=1e-6
  )


def test_clip_checks_ranks_at_the_boundary(clip_setup):
  model, params, images, tokens = clip_setup
  with pytest.raises(AssertionError):
    model.apply(params, images[0], method='encode_image')
  with pytest.raises(AssertionError):
    model.apply(params, tokens[0], method='encode_text')


def test_scale_is_clamped_at_100_with_zero_gradient_above(clip_setup):
  model, params, images, tokens = clip_setup

  def scale(logit_scale):
    p = {'params': {**params['params'], 'logit_scale': logit_scale}}
    return model.apply(p, images, tokens)['scale']

  np.testing.assert_allclose(scale(jnp.float32(math.log(1000.0))), 100.0)
  assert float(jax.grad(scale)(jnp.float32(math.log(1000.0)))) == 0.0
  below = jnp.float32(math.log(50.0))
  np.testing.assert_allclose(jax.grad(scale)(below), 50.0, rtol=1e-5)


def test_siglip_bias_only_when_configured():
  model = CLIP(_vit(), _text(), logit_scale_init=math.log(10.0), logit_bias_init=-10.0)
  images, tokens = _images(), _tokens([[320], [321]])
  params = model.init(jax.random.key(0), images, tokens)
  np.testing.assert_allclose(params['params']['logit_bias'], -10.0)
  out = model.apply(params, images, tokens)
  np.testing.assert_allclose(out['bias'], -10.0)
  np.testing.assert_allclose(out['scale'], 10.0, rtol=1e-5)


def test_bfloat16_towers_return_float32_unit_embeddings():
  model = CLIP(
    ConvTower(output_dim=D, widths=(8, 8), dtype=jnp.bfloat16), _text(dtype=jnp.bfloat16, depth=1)
  )
  images, tokens = _images(), _tokens([[320, 1125], [320]])
  params = model.init(jax.random.key(0), images, tokens)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  out = model.apply(params, images, tokens)
  for key in ('image_emb', 'text_emb'):
    assert out[key].dtype == jnp.float32
    chex.assert_tree_all_finite(out[key])
    np.testing.assert_allclose(_norms(out[key]), 1.0, atol=1e-5)


# ---------------------------------------------------------------- build


@pytest.mark.parametrize(
  'name, expected',
  [
    ('vit-b-32', 151_277_313),
    ('vit-b-16', 149_620_737),
    ('vit-l-14', 427_616_513),
    ('rn50', 102_007_137),
    ('rn101', 119_688_033),
    ('rn50x4', 178_300_601),
  ],
)
def test_openai_presets_match_openai_parameter_counts(name, expected):
  # `sum(p.numel() for p in model.parameters())` of OpenAI's models: BatchNorm's running
  # statistics are buffers there and live in `batch_stats` here, outside the count.
  cfg = model_config(name)
  shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), *example_inputs(cfg))
  assert _n_params(shapes['params']) == expected


@pytest.mark.parametrize('name', ['tiny-cnn', 'tiny-vit', 'tiny-resnet'])
def test_tiny_presets_build_and_trace(name):
  cfg = model_config(name)
  model = build_model(cfg)
  images, tokens = example_inputs(cfg, batch=2)

  def forward(rng):
    return model.apply(model.init(rng, images, tokens), images, tokens)

  out = jax.eval_shape(forward, jax.random.key(0))  # traced, not compiled: fast
  chex.assert_shape([out['image_emb'], out['text_emb']], (2, cfg.embed_dim))
  assert out['image_emb'].dtype == jnp.float32


def test_build_bfloat16_config():
  cfg = model_config('tiny-cnn')
  cfg.dtype = 'bfloat16'
  cfg.embed_dim = D
  cfg.image.widths = (8, 8)
  cfg.text.update(width=32, heads=2, depth=1, context_length=16)
  model = build_model(cfg)
  images, tokens = example_inputs(cfg, batch=2)
  out = model.apply(model.init(jax.random.key(0), images, tokens), images, tokens)
  assert out['image_emb'].dtype == jnp.float32
  np.testing.assert_allclose(_norms(out['text_emb']), 1.0, atol=1e-5)


def test_build_siglip_config():
  cfg = model_config('tiny-cnn')
  cfg.logit_bias_init = -10.0
  cfg.logit_scale_init = math.log(10.0)
  model = build_model(cfg)
  assert model.logit_bias_init == -10.0
  assert model.logit_scale_init == pytest.approx(math.log(10.0))


@pytest.mark.parametrize(
  'key, value, message',
  [
    ('image.kind', 'mlp', r"unknown model.image.kind 'mlp'; allowed: \['cnn', 'resnet', 'vit'\]"),
    ('dtype', 'float16', r"unknown model.dtype 'float16'; allowed: \['bfloat16', 'float32'\]"),
    ('act', 'swish', r"unknown model.act 'swish'"),
  ],
)
def test_build_rejects_unknown_values_clearly(key, value, message):
  cfg = model_config('tiny-vit')
  section, _, name = key.rpartition('.')
  (cfg[section] if section else cfg)[name] = value
  with pytest.raises(ValueError, match=message):
    build_model(cfg)


def test_build_rejects_unknown_keys_and_presets():
  cfg = model_config('tiny-vit')
  cfg.image.patchsize = 4
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['patchsize'\] in model.image"):
    build_model(cfg)
  with pytest.raises(ValueError, match=r"unknown model preset 'vit-z'; allowed: .*'tiny-cnn'"):
    model_config('vit-z')


def test_presets_are_fresh_copies():
  cfg = model_config('tiny-cnn')
  cfg.text.width = 8
  assert model_config('tiny-cnn').text.width == 128

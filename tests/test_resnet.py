"""Specification tests for CLIP's ModifiedResNet tower (bdjax/models/resnet.py), CPU, tiny."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bdjax.models.resnet import AttentionPool2d, Bottleneck, ModifiedResNet

W, D = 8, 16  # width (C = 32 W = 256 channels into the attention pool), output_dim


def _net(**kw):
  return ModifiedResNet(**{**dict(layers=(1, 1, 1, 1), output_dim=D, width=W), **kw})


def _images(b=2, size=64, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, size, size, 3), jnp.float32)


@functools.cache
def _fns(model):
  """Jitted ``(eval, train)`` applies of ``model`` (eager dispatch is slow on CPU)."""
  ev = jax.jit(lambda v, x: model.apply(v, x))
  tr = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  return ev, tr


def _eval(model, variables, x):
  return _fns(model)[0](variables, x)


def _train(model, variables, x):
  return _fns(model)[1](variables, x)


@pytest.fixture(scope='module')
def tiny():
  """(model, variables) for width 8, one block per stage, 64 px."""
  model = _net()
  key = jax.random.key(0, impl='unsafe_rbg')  # compiles faster than threefry on CPU
  return model, jax.jit(model.init)(key, _images(1))


def _flat(tree):
  return {k: v.shape for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def test_output_shape_for_several_batches_and_sizes(tiny):
  model, variables = tiny
  for b in (1, 3):
    out = _eval(model, variables, _images(b))
    chex.assert_shape(out, (b, D))
    assert out.dtype == jnp.float32
    chex.assert_tree_all_finite(out)
  model = _net(layers=(2, 1, 2, 1), output_dim=7)
  out, variables = jax.eval_shape(model.init_with_output, jax.random.key(1), _images(2, 32))
  chex.assert_shape(out, (2, 7))
  assert variables['params']['attnpool']['positional_embedding'].shape == (1 + 1, 32 * W)


def test_spatial_size_after_stem_and_each_stage(tiny):
  model, variables = tiny
  capture = jax.jit(lambda v, x: model.apply(v, x, mutable=['intermediates']))
  _, state = capture(variables, _images(2))
  inter = state['intermediates']
  chex.assert_shape(inter['stem'][0], (2, 16, 16, W))  # /4
  expected = {1: (16, 4 * W), 2: (8, 8 * W), 3: (4, 16 * W), 4: (2, 32 * W)}  # /4 /8 /16 /32
  for i, (hw, c) in expected.items():
    chex.assert_shape(inter[f'layer{i}_0']['out'][0], (2, hw, hw, c))


def test_parameter_tree_mirrors_the_reference_names_and_shapes(tiny):
  _, variables = tiny
  assert set(variables) == {'params', 'batch_stats'}
  params = _flat(variables['params'])
  C = 32 * W
  expected = {
    'conv1/kernel': (3, 3, 3, W // 2),
    'bn1/scale': (W // 2,),
    'bn1/bias': (W // 2,),
    'conv2/kernel': (3, 3, W // 2, W // 2),
    'conv3/kernel': (3, 3, W // 2, W),
    'bn3/scale': (W,),
    'layer1_0/conv1/kernel': (1, 1, W, W),
    'layer1_0/conv2/kernel': (3, 3, W, W),
    'layer1_0/conv3/kernel': (1, 1, W, 4 * W),
    'layer1_0/bn3/scale': (4 * W,),
    'layer1_0/downsample_0/kernel': (1, 1, W, 4 * W),  # channels change: W -> 4W
    'layer1_0/downsample_1/scale': (4 * W,),
    'layer2_0/conv1/kernel': (1, 1, 4 * W, 2 * W),
    'layer2_0/downsample_0/kernel': (1, 1, 4 * W, 8 * W),
    'layer4_0/conv3/kernel': (1, 1, 8 * W, C),
    'attnpool/positional_embedding': (2 * 2 + 1, C),
    'attnpool/q_proj/kernel': (C, C),
    'attnpool/q_proj/bias': (C,),
    'attnpool/k_proj/kernel': (C, C),
    'attnpool/v_proj/kernel': (C, C),
    'attnpool/c_proj/kernel': (C, D),
    'attnpool/c_proj/bias': (D,),
  }
  for name, shape in expected.items():
    assert params[name] == shape, name
  assert not any(k.endswith('conv1/bias') or k.endswith('conv2/bias') for k in params)  # no bias
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  stats = _flat(variables['batch_stats'])
  assert stats['bn1/mean'] == (W // 2,) and stats['layer4_0/downsample_1/var'] == (C,)
  # Same top-level names as OpenAI's visual.* (layer{i}.{j} -> layer{i}_{j}).
  top = set(variables['params'])
  assert top == {'conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'attnpool'} | {
    f'layer{i}_0' for i in range(1, 5)
  }
  # CLIP's zero-init residual: every block's last BatchNorm starts with scale 0.
  assert not np.any(variables['params']['layer3_0']['bn3']['scale'])


def test_a_block_without_shortcut_conv_when_shapes_match():
  x = _images(2, 8)
  x = jnp.tile(x, (1, 1, 1, 6))[..., :16]  # 16 channels = 4 * planes
  block = Bottleneck(planes=4)
  v = jax.jit(block.init)(jax.random.key(0), x)
  assert 'downsample_0' not in v['params'] and 'downsample_1' not in v['params']
  # Fresh block (bn3 scale 0): out = relu(x), the identity shortcut.
  np.testing.assert_allclose(jax.jit(block.apply)(v, x), jax.nn.relu(x), atol=1e-6)


def test_rn50_parameter_count_matches_openai():
  """OpenAI RN50 CLIP has 102,007,137 parameters; its text side and logit scale 63,690,241."""
  model = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, width=64)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes['params']))
  assert n == 102_007_137 - 63_690_241
  assert shapes['params']['attnpool']['positional_embedding'].shape == (50, 2048)
  assert shapes['params']['attnpool']['q_proj']['kernel'].shape == (2048, 2048)


def test_stride_2_block_halves_height_and_width_with_the_pool_before_conv3():
  x = _images(2, 8, seed=3)
  block = Bottleneck(planes=4, stride=2)
  v = jax.jit(block.init)(jax.random.key(0), x)
  chex.assert_shape(jax.jit(block.apply)(v, x), (2, 4, 4, 16))
  chex.assert_shape(jax.eval_shape(block.apply, v, _images(1, 9)), (1, 4, 4, 16))  # floored
  # Anti-aliased: every conv has stride 1; the 3x3 conv2 runs at full resolution, the 2x2
  # average pool follows it, and conv3 (1x1) maps the pooled features; the shortcut pools x
  # before its 1x1 conv.
  capture = jax.jit(
    lambda v, x: block.apply(v, x, capture_intermediates=True, mutable=['intermediates'])
  )
  _, state = capture(v, x)
  inter = state['intermediates']
  chex.assert_shape(inter['conv2']['__call__'][0], (2, 8, 8, 4))
  chex.assert_shape(inter['conv3']['__call__'][0], (2, 4, 4, 16))
  pooled = jax.nn.relu(inter['bn2']['__call__'][0]).reshape(2, 4, 2, 4, 2, 4).mean((2, 4))
  conv3 = pooled @ v['params']['conv3']['kernel'][0, 0]
  np.testing.assert_allclose(inter['conv3']['__call__'][0], conv3, rtol=1e-5, atol=1e-5)
  short = x.reshape(2, 4, 2, 4, 2, 3).mean((2, 4)) @ v['params']['downsample_0']['kernel'][0, 0]
  np.testing.assert_allclose(inter['downsample_0']['__call__'][0], short, rtol=1e-5, atol=1e-5)


def _full_attention_pool(p, x, heads):
  """The straightforward maths (OpenAI's): every token projected to q, k and v, all tokens
  attend, token 0 (the mean) kept; heads split the channels."""
  b, h, w, c = x.shape
  t = x.reshape(b, h * w, c)
  t = jnp.concatenate([t.mean(1, keepdims=True), t], 1) + p['positional_embedding']
  proj = lambda n, a: a @ p[n]['kernel'] + p[n]['bias']  # noqa: E731
  d = c // heads
  q, k, v = (proj(n, t).reshape(b, -1, heads, d) for n in ('q_proj', 'k_proj', 'v_proj'))
  a = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(d), axis=-1)
  return proj('c_proj', jnp.einsum('bhqk,bkhd->bqhd', a, v).reshape(b, -1, c))[:, 0]


def _pool_and_params(b=2, h=3, w=3, c=8, heads=2, out_dim=5):
  x = jax.random.normal(jax.random.key(0), (b, h, w, c))
  pool = AttentionPool2d(heads=heads, output_dim=out_dim)
  p = jax.tree.map(np.asarray, jax.jit(pool.init)(jax.random.key(1), x)['params'])
  p = {k: (val if k == 'positional_embedding' else dict(val)) for k, val in p.items()}
  for name in ('q_proj', 'k_proj', 'v_proj', 'c_proj'):  # non-zero biases
    p[name]['bias'] = np.random.default_rng(0).normal(size=p[name]['bias'].shape)
  return pool, p, x


def test_attention_pool_equals_full_attention_row_of_the_mean_token():
  """Only the mean token is a query, and K and V are applied to it after the attention
  (q . (t K + kb) = t . (K q) + q . kb; sum_n a_n (t_n V + vb) = (sum_n a_n t_n) V + vb):
  the same output as OpenAI's full attention."""
  pool, p, x = _pool_and_params()
  got = jax.jit(pool.apply)({'params': p}, x)
  want = _full_attention_pool(p, x, pool.heads)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_attention_pool_gradients_equal_full_attentions():
  """The reassociated pool trains as the full one: the same gradients for every parameter
  (the key bias's is ~0 in both: softmax ignores a shift shared by all logits) and input."""
  pool, p, x = _pool_and_params()
  cot = jax.random.normal(jax.random.key(2), (x.shape[0], pool.output_dim))
  ours = lambda p, x: jnp.sum(pool.apply({'params': p}, x) * cot)  # noqa: E731
  full = lambda p, x: jnp.sum(_full_attention_pool(p, x, pool.heads) * cot)  # noqa: E731
  got = jax.jit(jax.grad(ours, argnums=(0, 1)))(p, x)
  want = jax.jit(jax.grad(full, argnums=(0, 1)))(p, x)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


def test_default_heads_is_32_width_over_64(tiny):
  model, variables = tiny
  x = _images(2)
  np.testing.assert_array_equal(_eval(model, variables, x), _eval(_net(heads=4), variables, x))
  assert not np.allclose(_eval(model, variables, x), _eval(_net(heads=1), variables, x))
  with pytest.raises(ValueError, match='not divisible by heads 3'):  # 256 channels
    jax.eval_shape(_net(heads=3).init, jax.random.key(0), _images(1))


def test_train_updates_batch_stats_and_eval_uses_them(tiny):
  model, variables = tiny
  x = _images(4, seed=1) * 3.0 + 1.0
  with pytest.raises(Exception, match='batch_stats'):  # train needs the mutable collection
    model.apply(variables, x, train=True)
  out_train, updates = _train(model, variables, x)
  chex.assert_shape(out_train, (4, D))
  old = variables['batch_stats']['bn1']['mean']
  new = updates['batch_stats']['bn1']['mean']
  assert not np.allclose(old, new)
  # momentum 0.9: running = 0.9 * running + 0.1 * batch statistic (running mean starts at 0)
  conv = jax.lax.conv_general_dilated(
    x,
    variables['params']['conv1']['kernel'],
    (2, 2),
    ((1, 1), (1, 1)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  np.testing.assert_allclose(new, 0.1 * conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
  fresh = _eval(model, variables, x)
  updated = _eval(model, {**variables, **updates}, x)
  assert not np.allclose(fresh, updated, atol=1e-4)
  assert not np.allclose(out_train, fresh, atol=1e-4)


def test_eval_is_deterministic_and_batch_independent(tiny):
  model, variables = tiny
  _, updates = _train(model, variables, _images(4, seed=2))
  variables = {**variables, **updates}
  batch = _images(3, seed=5)
  together = _eval(model, variables, batch)
  np.testing.assert_array_equal(together, _eval(model, variables, batch))
  alone = _eval(model, variables, batch[1:2])
  np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-5)
  # In train mode, by contrast, an image's features depend on the rest of the batch.
  t_all, _ = _train(model, variables, batch)
  t_two, _ = _train(model, variables, batch[:2])
  assert not np.allclose(t_all[0], t_two[0], atol=1e-4)


def test_jit_and_gradients(tiny):
  model, variables = tiny
  x = _images(2)

  @jax.jit
  def step(params, stats, x):
    def loss(params):
      out, upd = model.apply(
        {'params': params, 'batch_stats': stats}, x, train=True, mutable=['batch_stats']
      )
      return jnp.sum(out**2), upd['batch_stats']

    return jax.grad(loss, has_aux=True)(params)

  grads, stats = step(variables['params'], variables['batch_stats'], x)
  chex.assert_trees_all_equal_shapes(grads, variables['params'])
  chex.assert_tree_all_finite(grads)
  assert np.any(grads['conv1']['kernel'])
  chex.assert_trees_all_equal_shapes(stats, variables['batch_stats'])


def test_bfloat16_compute_is_finite_and_close_to_float32(tiny):
  model, variables = tiny
  x = _images(2)
  f32 = _eval(model, variables, x)
  bf16 = _eval(_net(dtype=jnp.bfloat16), variables, x)
  assert bf16.dtype == jnp.bfloat16
  chex.assert_tree_all_finite(bf16)
  bf16 = np.asarray(bf16, np.float32)
  rel = np.linalg.norm(bf16 - f32) / np.linalg.norm(f32)
  assert rel < 0.05, rel
  # Parameters stay float32 when initialised with bfloat16 compute.
  v = jax.eval_shape(_net(dtype=jnp.bfloat16).init, jax.random.key(0), _images(1))
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(v))


def test_positional_table_is_resized_for_another_resolution(tiny):
  model, variables = tiny  # table for a 2x2 grid (64 px)
  out = _eval(model, variables, _images(2, 128))  # 4x4 grid
  chex.assert_shape(out, (2, D))
  chex.assert_tree_all_finite(out)

"""The ResNet's convolutions (bdjax/models/conv.py): the same function, parameters and gradients
as `nn.Conv`, computed another way."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bdjax.models.conv import Conv1x1, Conv3x3


@pytest.mark.parametrize("module, k", [(Conv1x1, 1), (Conv3x3, 3)])
def test_output_parameters_and_gradients_equal_nn_conv(module, k):
  x = jax.random.normal(jax.random.key(0), (2, 9, 7, 5))
  ours = module(6)
  ref = nn.Conv(6, (k, k), padding=((k // 2, k // 2),) * 2, use_bias=False)
  variables = ours.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, ref.init(jax.random.key(1), x)
  )
  np.testing.assert_allclose(ours.apply(variables, x), ref.apply(variables, x), atol=1e-5)

  def grads(m):  # a loss that weighs every output differently
    weights = jax.random.normal(jax.random.key(2), (2, 9, 7, 6))
    return jax.grad(lambda v, x: jnp.sum(weights * m.apply(v, x) ** 2), (0, 1))(variables, x)

  (dv, dx), (dv_ref, dx_ref) = grads(ours), grads(ref)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    dv["params"]["kernel"], dv_ref["params"]["kernel"], rtol=1e-5, atol=1e-4
  )


def test_the_3x3_gradient_under_jit_and_vmap():
  x = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
  conv = Conv3x3(4)
  variables = conv.init(jax.random.key(1), x[0])
  loss = lambda v, x: jnp.sum(conv.apply(v, x) ** 2)  # noqa: E731
  batched = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(variables, x)
  for i in range(3):
    one = jax.grad(loss)(variables, x[i])
    np.testing.assert_allclose(
      batched["params"]["kernel"][i], one["params"]["kernel"], rtol=1e-5, atol=1e-5
    )

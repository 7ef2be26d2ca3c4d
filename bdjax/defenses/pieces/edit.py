"""Edit stages: change parameters directly, no gradient.

- `reset_rows` (BTU's fine-grained unlearning): for each flagged token row `v`, the dimensions
  that moved more than the average row shift are reset to the padding token's embedding,

      moved = |E_exp[v, d] - E_ref[v, d]| > ||E_exp - E_ref||_F / V
      E[v, d] <- E[pad, d]   where moved

- `shrink_perturb` (Ash & Adams 2020): `theta <- shrink * theta + perturb * theta_0`, where
  `theta_0` is a fresh initialisation: the weights shrink toward zero and the noise has each
  layer's own initial scale.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp


def reset_rows(
  table: jax.Array, exposed: jax.Array, reference: jax.Array, rows: jax.Array, pad: int = 0
) -> jax.Array:
  """`table` with the moved dimensions of `rows` reset to row `pad` (see module docstring).

  `exposed` and `reference` are the token table after and before an exposure run; `table` is
  the one edited (usually `reference` itself)."""
  chex.assert_equal_shape([table, exposed, reference])
  chex.assert_rank(table, 2)
  shift = exposed - reference
  bound = jnp.linalg.norm(shift) / table.shape[0]
  rows = jnp.asarray(rows, jnp.int32)
  moved = jnp.abs(shift[rows]) > bound
  edited = jnp.where(moved, table[pad][None, :], table[rows])
  return table.at[rows].set(edited)


def shrink_perturb(params: Any, fresh: Any, shrink: float, perturb: float) -> Any:
  """`shrink * params + perturb * fresh`, leaf by leaf."""
  return jax.tree.map(lambda p, f: shrink * p + perturb * f, params, fresh)

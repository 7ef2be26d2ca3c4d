"""CLIP's causal text transformer tower.

    x = token_embedding[tokens] + positional_embedding[:L]     tokens: int [B, L]
    x = ln_final(transformer(x, causal mask))
    out = x[b, argmax_l tokens[b, l]] @ text_projection        [B, output_dim]

Pooling takes the hidden state at the end-of-text token, found as the largest token
id in each row (the EOT id 49407 is the largest in CLIP's vocabulary), as OpenAI does.
Under the causal mask no position attends to later ones, so tokens after EOT never
change the output, and captions padded to any ``L <= context_length`` give the same
embedding as when padded to ``context_length`` (only the first ``L`` positional rows
are used).

Parameter correspondence with OpenAI's top-level text parameters (PyTorch -> Flax):

    token_embedding.weight [V, w]    -> token_embedding/embedding [V, w]
    positional_embedding [ctx, w]    -> positional_embedding [ctx, w]
    transformer.resblocks.{i}.*      -> transformer/resblocks_{i}/*  (see transformer.py)
    ln_final.{weight, bias}          -> ln_final/{scale, bias}
    text_projection [w, output_dim]  -> text_projection/kernel [w, output_dim]
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from .transformer import LN_EPS, Transformer


class TextTransformer(nn.Module):
  """Token ids ``[B, L]`` (``L <= context_length``) -> features ``[B, output_dim]``.

  Pass fields by keyword; ``act`` is ``'quick_gelu'`` (OpenAI) or ``'gelu'``.
  """

  width: int
  depth: int
  heads: int
  output_dim: int
  vocab_size: int = 49408
  context_length: int = 77
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    chex.assert_rank(tokens, 2)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise TypeError(f'token ids must be integers, got dtype {tokens.dtype}')
    b, length = tokens.shape
    if length > self.context_length:
      raise ValueError(
        f'token sequence length {length} exceeds context_length {self.context_length}'
      )
    x = nn.Embed(
      self.vocab_size,
      self.width,
      dtype=self.dtype,
      name='token_embedding',
      embedding_init=nn.initializers.normal(0.02),
    )(tokens)
    pos = self.param(
      'positional_embedding',
      nn.initializers.normal(0.01),
      (self.context_length, self.width),
      jnp.float32,
    )
    x = x + pos[:length].astype(x.dtype)
    causal = jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]
    x = Transformer(
      self.width,
      self.depth,
      self.heads,
      self.mlp_ratio,
      self.act,
      dtype=self.dtype,
      name='transformer',
    )(x, causal)
    x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='ln_final')(x)
    x = x[jnp.arange(b), jnp.argmax(tokens, axis=-1)]
    x = nn.Dense(
      self.output_dim,
      use_bias=False,
      dtype=self.dtype,
      name='text_projection',
      kernel_init=nn.initializers.normal(self.width**-0.5),
    )(x)
    chex.assert_shape(x, (b, self.output_dim))
    return x

"""Specification of bdjax.losses: hand-derived values, NumPy references, invariances.

Notation: I, T image / text embeddings ([N, D], rows L2-normalised), I', T' augmented views,
s = exp(logit_scale) the multiplier, b the SigLIP bias, softplus(x) = log(1 + e^x).
"""

from __future__ import annotations

import math
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from bdjax import losses

# ---------------------------------------------------------------------------------------------
# Independent NumPy references (float64, written with explicit loops over pairs).
# ---------------------------------------------------------------------------------------------


def _np_logsumexp(x: np.ndarray) -> float:
  m = np.max(x)
  return float(m + np.log(np.sum(np.exp(x - m))))


def _np_ce_rows(logits: np.ndarray) -> np.ndarray:
  """CE of each row i of `logits` with label i: logsumexp(row_i) - logits[i, i]."""
  n = logits.shape[0]
  return np.array([_np_logsumexp(logits[i]) - logits[i, i] for i in range(n)])


def np_clip_per_pair(i_emb, t_emb, s):
  i_emb, t_emb = np.float64(i_emb), np.float64(t_emb)
  n = i_emb.shape[0]
  out = np.zeros(n)
  for k in range(n):
    img_to_txt = s * np.array([i_emb[k] @ t_emb[j] for j in range(n)])  # row k of L
    txt_to_img = s * np.array([t_emb[k] @ i_emb[j] for j in range(n)])  # row k of L^T
    out[k] = 0.5 * (
      (_np_logsumexp(img_to_txt) - img_to_txt[k]) + (_np_logsumexp(txt_to_img) - txt_to_img[k])
    )
  return out


def np_clip(i_emb, t_emb, s):
  return float(np.mean(np_clip_per_pair(i_emb, t_emb, s)))


def np_inmodal_per_pair(i_emb, ia_emb, t_emb, ta_emb, s):
  i_emb, ia_emb, t_emb, ta_emb = map(np.float64, (i_emb, ia_emb, t_emb, ta_emb))
  return 0.5 * (_np_ce_rows(s * i_emb @ ia_emb.T) + _np_ce_rows(s * t_emb @ ta_emb.T))


def np_inmodal(i_emb, ia_emb, t_emb, ta_emb, s):
  return float(np.mean(np_inmodal_per_pair(i_emb, ia_emb, t_emb, ta_emb, s)))


def np_cyclip(i_emb, t_emb, s, l_in=0.25, l_cross=0.25):
  """Written the way the reference code does: with logits, divided by s^2 and N."""
  i_emb, t_emb = np.float64(i_emb), np.float64(t_emb)
  n = i_emb.shape[0]
  logits_it = s * i_emb @ t_emb.T
  logits_ti = s * t_emb @ i_emb.T
  logits_ii = s * i_emb @ i_emb.T
  logits_tt = s * t_emb @ t_emb.T
  c_in = np.sum((logits_ii - logits_tt) ** 2) / (s * s * n)
  c_cross = np.sum((logits_it - logits_ti) ** 2) / (s * s * n)
  return np_clip(i_emb, t_emb, s) + l_in * c_in + l_cross * c_cross


def np_siglip(i_emb, t_emb, s, b):
  i_emb, t_emb = np.float64(i_emb), np.float64(t_emb)
  n = i_emb.shape[0]
  total = 0.0
  for r in range(n):
    for c in range(n):
      z = 1.0 if r == c else -1.0
      x = z * (s * float(i_emb[r] @ t_emb[c]) + b)
      total += np.logaddexp(0.0, -x)  # -log sigmoid(x) = log(1 + e^{-x})
  return total / n


def _normalised(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
  x = rng.normal(size=(n, d))
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _softplus(x: float) -> float:
  return math.log1p(math.exp(x)) if x < 30 else x + math.log1p(math.exp(-x))


# Two small hand cases in D = 2 (e1, e2 the standard basis, c = 1/sqrt(2)).
_EYE2 = np.eye(2, dtype=np.float32)
_SWAP2 = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
_C = 1.0 / math.sqrt(2.0)
_TILTED = np.array([[1.0, 0.0], [_C, _C]], np.float32)  # rows e1 and (e1 + e2) / sqrt(2)

# Random cases: two batch sizes and widths (D < N included; N = D = 2 is covered exactly by
# the hand cases), each checked at several scales. The scale is a traced argument, so looping
# over it inside a test costs no recompilation (compilation dominates this file's run time).
_RANDOM_CASES = (
  dict(testcase_name="n7_d3", n=7, d=3),
  dict(testcase_name="n16_d32", n=16, d=32),
)
_SCALES = (0.5, 1.0, 10.0, 1 / 0.07, 100.0)

# Jitted once for the whole file so each (function, shape, dtype) compiles once; the un-jitted
# path is exercised by the chex-variant tests of NumpyReferenceTest.
J = types.SimpleNamespace(**{name: jax.jit(getattr(losses, name)) for name in losses.__all__})

_TOL = dict(rtol=1e-5, atol=1e-5)
# float32 resolves log(1 + x) only to ~1e-7 absolute near x = 0 (log-sum-exp includes the
# label's own e^0 = 1), so exact small values such as log(1 + e^{-10}) ~ 4.54e-5 are compared
# with an absolute tolerance too.
_HAND_TOL = dict(rtol=1e-6, atol=1e-6)


class HandComputedTest(chex.TestCase):
  """Exact values derived by hand for N = 2, D = 2."""

  @parameterized.parameters(1.0, 10.0)
  def test_clip_aligned_identity(self, s):
    # I = T = identity(2): L = s * eye. Every row / column CE is
    # -log(e^s / (e^s + e^0)) = log(1 + e^{-s}); so per pair and in mean: log(1 + e^{-s}).
    expected = _softplus(-s)
    np.testing.assert_allclose(J.clip_loss(_EYE2, _EYE2, s), expected, **_HAND_TOL)
    np.testing.assert_allclose(J.clip_loss_per_pair(_EYE2, _EYE2, s), [expected] * 2, **_HAND_TOL)

  @parameterized.parameters(1.0, 10.0)
  def test_clip_swapped(self, s):
    # I = eye, T = rows (e2, e1): L = s * [[0, 1], [1, 0]], the label's logit is 0 and the
    # other is s in every row and column: CE = log(e^0 + e^s) - 0 = s + log(1 + e^{-s}).
    expected = s + _softplus(-s)
    np.testing.assert_allclose(J.clip_loss(_EYE2, _SWAP2, s), expected, **_HAND_TOL)

  @parameterized.parameters(1.0, 10.0)
  def test_clip_tilted_per_pair(self, s):
    # I = eye, T = rows (e1, (e1+e2)/sqrt2): I T^T = [[1, c], [0, c]], c = 1/sqrt2.
    #   row 0 of L   : logits (s, sc), label 0 -> log(1 + e^{s(c-1)})
    #   row 1 of L   : logits (0, sc), label 1 -> log(1 + e^{-sc})
    #   row 0 of L^T : logits (s, 0),  label 0 -> log(1 + e^{-s})
    #   row 1 of L^T : logits (sc, sc), label 1 -> log 2
    pair0 = 0.5 * (_softplus(s * (_C - 1)) + _softplus(-s))
    pair1 = 0.5 * (_softplus(-s * _C) + math.log(2.0))
    np.testing.assert_allclose(J.clip_loss_per_pair(_EYE2, _TILTED, s), [pair0, pair1], **_HAND_TOL)
    np.testing.assert_allclose(J.clip_loss(_EYE2, _TILTED, s), (pair0 + pair1) / 2, **_HAND_TOL)

  @parameterized.parameters(1.0, 10.0)
  def test_inmodal(self, s):
    # I = I' = T = T' = eye: both CEs are log(1 + e^{-s}) per row.
    np.testing.assert_allclose(
      J.inmodal_loss(_EYE2, _EYE2, _EYE2, _EYE2, s), _softplus(-s), **_HAND_TOL
    )
    # I' swapped: image CE = s + log(1 + e^{-s}) per row (as in test_clip_swapped), text CE
    # = log(1 + e^{-s}); mean of the two = s/2 + log(1 + e^{-s}).
    np.testing.assert_allclose(
      J.inmodal_loss(_EYE2, _SWAP2, _EYE2, _EYE2, s), s / 2 + _softplus(-s), **_HAND_TOL
    )
    np.testing.assert_allclose(
      J.inmodal_loss_per_pair(_EYE2, _SWAP2, _EYE2, _EYE2, s),
      [s / 2 + _softplus(-s)] * 2,
      **_HAND_TOL,
    )

  @parameterized.parameters(1.0, 10.0)
  def test_cyclip_tilted(self, s):
    # I = eye, T = rows (e1, (e1+e2)/sqrt2), c = 1/sqrt2:
    #   I I^T - T T^T = [[0, -c], [-c, 0]]   -> sum of squares 2c^2 = 1 -> C_in = 1/N = 1/2
    #   I T^T - T I^T = [[0, c], [-c, 0]]    -> sum of squares 1        -> C_cross = 1/2
    # cyclip = clip + 0.25 * 1/2 + 0.25 * 1/2 = clip + 0.25 (for every s).
    clip = float(J.clip_loss(_EYE2, _TILTED, s))
    np.testing.assert_allclose(J.cyclip_loss(_EYE2, _TILTED, s), clip + 0.25, **_HAND_TOL)
    np.testing.assert_allclose(
      J.cyclip_loss(_EYE2, _TILTED, s, lambda_inmodal=1.0, lambda_crossmodal=0.0),
      clip + 0.5,
      **_HAND_TOL,
    )
    # I = T = eye: both regularisers vanish, cyclip = clip = log(1 + e^{-s}).
    np.testing.assert_allclose(J.cyclip_loss(_EYE2, _EYE2, s), _softplus(-s), **_HAND_TOL)

  @parameterized.parameters((1.0, 0.0), (10.0, -10.0), (10.0, -5.0))
  def test_siglip_aligned_identity(self, s, b):
    # I = T = eye: logits s*eye + b. Two diagonal terms -log sigmoid(s + b) = log(1 + e^{-(s+b)}),
    # two off-diagonal terms -log sigmoid(-b) = log(1 + e^{b}); divided by N = 2:
    # loss = log(1 + e^{-(s+b)}) + log(1 + e^{b}).
    # (s=10, b=-10: log 2 + log(1 + e^{-10}); s=1, b=0: log(1 + e^{-1}) + log 2.)
    expected = _softplus(-(s + b)) + _softplus(b)
    np.testing.assert_allclose(J.siglip_loss(_EYE2, _EYE2, s, b), expected, **_HAND_TOL)

  def test_grad_of_clip_wrt_scale(self):
    # d/ds log(1 + e^{-s}) = -1 / (1 + e^{s}).
    for s in (1.0, 10.0):
      g = jax.jit(jax.grad(losses.clip_loss, argnums=2))(_EYE2, _EYE2, s)
      np.testing.assert_allclose(g, -1.0 / (1.0 + math.exp(s)), rtol=1e-5, atol=1e-7)


class NumpyReferenceTest(chex.TestCase):
  """Every function against an independent float64 NumPy implementation."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_RANDOM_CASES)
  def test_clip(self, n, d):
    rng = np.random.default_rng(n * 1000 + d)
    i_emb, t_emb = _normalised(rng, n, d), _normalised(rng, n, d)
    clip, clip_per_pair = self.variant(losses.clip_loss), self.variant(losses.clip_loss_per_pair)
    for s in _SCALES:
      with self.subTest(s=s):
        np.testing.assert_allclose(clip(i_emb, t_emb, s), np_clip(i_emb, t_emb, s), **_TOL)
        np.testing.assert_allclose(
          clip_per_pair(i_emb, t_emb, s), np_clip_per_pair(i_emb, t_emb, s), **_TOL
        )

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_RANDOM_CASES)
  def test_inmodal(self, n, d):
    rng = np.random.default_rng(n * 1000 + d + 1)
    embs = [_normalised(rng, n, d) for _ in range(4)]
    inmodal = self.variant(losses.inmodal_loss)
    inmodal_per_pair = self.variant(losses.inmodal_loss_per_pair)
    for s in _SCALES:
      with self.subTest(s=s):
        np.testing.assert_allclose(inmodal(*embs, s), np_inmodal(*embs, s), **_TOL)
        np.testing.assert_allclose(
          inmodal_per_pair(*embs, s), np_inmodal_per_pair(*embs, s), **_TOL
        )

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_RANDOM_CASES)
  def test_cyclip(self, n, d):
    rng = np.random.default_rng(n * 1000 + d + 2)
    i_emb, t_emb = _normalised(rng, n, d), _normalised(rng, n, d)
    cyclip = self.variant(losses.cyclip_loss)
    for s in _SCALES:
      for l_in, l_cross in ((0.25, 0.25), (0.5, 2.0), (0.0, 0.0)):
        with self.subTest(s=s, l_in=l_in, l_cross=l_cross):
          np.testing.assert_allclose(
            cyclip(i_emb, t_emb, s, l_in, l_cross),
            np_cyclip(i_emb, t_emb, s, l_in, l_cross),
            **_TOL,
          )
    # The defaults are l_in = l_cross = 0.25.
    np.testing.assert_allclose(
      losses.cyclip_loss(i_emb, t_emb, 10.0), np_cyclip(i_emb, t_emb, 10.0), **_TOL
    )

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_RANDOM_CASES)
  def test_siglip(self, n, d):
    rng = np.random.default_rng(n * 1000 + d + 3)
    i_emb, t_emb = _normalised(rng, n, d), _normalised(rng, n, d)
    siglip = self.variant(losses.siglip_loss)
    for s in _SCALES:
      for b in (-10.0, 0.0, 3.0):
        with self.subTest(s=s, b=b):
          np.testing.assert_allclose(
            siglip(i_emb, t_emb, s, b), np_siglip(i_emb, t_emb, s, b), **_TOL
          )

  @parameterized.named_parameters(*_RANDOM_CASES)
  def test_scalar_is_mean_of_per_pair(self, n, d):
    rng = np.random.default_rng(n + d)
    embs = [_normalised(rng, n, d) for _ in range(4)]
    np.testing.assert_allclose(
      J.clip_loss(embs[0], embs[1], 7.0),
      jnp.mean(J.clip_loss_per_pair(embs[0], embs[1], 7.0)),
      rtol=1e-6,
    )
    np.testing.assert_allclose(
      J.inmodal_loss(*embs, 7.0), jnp.mean(J.inmodal_loss_per_pair(*embs, 7.0)), rtol=1e-6
    )


class GradientTest(chex.TestCase):
  """Gradients w.r.t. embeddings, scale (and bias) are finite, also at s = 100."""

  def test_grads_finite(self):
    rng = np.random.default_rng(1)
    n, d = 10, 12
    i_emb, ia_emb, t_emb, ta_emb = (_normalised(rng, n, d) for _ in range(4))
    aligned = np.eye(n, d, dtype=np.float32)  # extreme case: softmaxes saturate at s = 100
    sum_of = lambda fn: lambda *a: jnp.sum(fn(*a))
    fns = {
      "clip": (losses.clip_loss, (i_emb, t_emb), (aligned, aligned)),
      "clip_per_pair": (sum_of(losses.clip_loss_per_pair), (i_emb, t_emb), (aligned, aligned)),
      "inmodal": (losses.inmodal_loss, (i_emb, ia_emb, t_emb, ta_emb), (aligned,) * 4),
      "inmodal_per_pair": (
        sum_of(losses.inmodal_loss_per_pair),
        (i_emb, ia_emb, t_emb, ta_emb),
        (aligned,) * 4,
      ),
      "cyclip": (losses.cyclip_loss, (i_emb, t_emb), (aligned, aligned)),
      "siglip": (
        lambda i, t, s: losses.siglip_loss(i, t, s, -10.0),
        (i_emb, t_emb),
        (aligned, aligned),
      ),
    }
    for name, (fn, random_embs, aligned_embs) in fns.items():
      grad_fn = jax.jit(jax.grad(fn, argnums=tuple(range(len(random_embs) + 1))))
      for s in (1.0, 1 / 0.07, 100.0):
        with self.subTest(name=name, s=s):
          grads = grad_fn(*random_embs, s)
          chex.assert_tree_all_finite(grads)
          # The loss must actually depend on the embeddings (no silently dropped term).
          self.assertGreater(float(jnp.max(jnp.abs(grads[0]))), 0.0)
          # Saturated softmaxes / sigmoids: gradients underflow to zero but stay finite.
          chex.assert_tree_all_finite(grad_fn(*aligned_embs, s))
    grad_bias = jax.jit(jax.grad(losses.siglip_loss, argnums=(2, 3)))
    for s in (10.0, 100.0):
      chex.assert_tree_all_finite(grad_bias(i_emb, t_emb, s, -10.0))
      chex.assert_tree_all_finite(grad_bias(aligned, aligned, s, -10.0))


class InvarianceTest(chex.TestCase):
  """Symmetries the objectives must have."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(2)
    self.n, self.d = 10, 12
    self.i, self.ia, self.t, self.ta = (_normalised(rng, self.n, self.d) for _ in range(4))
    self.perm = rng.permutation(self.n)

  @parameterized.parameters(1.0, 100.0)
  def test_clip_symmetric_in_modalities(self, s):
    np.testing.assert_allclose(
      J.clip_loss(self.i, self.t, s), J.clip_loss(self.t, self.i, s), rtol=1e-6
    )
    np.testing.assert_allclose(
      J.clip_loss_per_pair(self.i, self.t, s), J.clip_loss_per_pair(self.t, self.i, s), rtol=1e-6
    )

  def test_siglip_symmetric_in_modalities(self):
    np.testing.assert_allclose(
      J.siglip_loss(self.i, self.t, 10.0, -10.0),
      J.siglip_loss(self.t, self.i, 10.0, -10.0),
      rtol=1e-6,
    )

  @parameterized.parameters(1.0, 100.0)
  def test_cyclip_equals_clip_when_modalities_agree(self, s):
    np.testing.assert_allclose(
      J.cyclip_loss(self.i, self.i, s), J.clip_loss(self.i, self.i, s), rtol=1e-6
    )

  def test_cyclip_regularisers_do_not_depend_on_scale(self):
    gap = lambda s: J.cyclip_loss(self.i, self.t, s) - J.clip_loss(self.i, self.t, s)
    np.testing.assert_allclose(gap(1.0), gap(100.0), rtol=1e-5)
    self.assertGreater(float(gap(1.0)), 0.0)

  def test_siglip_bias(self):
    # Orthonormal, perfectly aligned batch (N <= D), off-diagonal cosines are 0.
    n, s = self.n, 100.0
    aligned = np.eye(n, self.d, dtype=np.float32)
    # b = 0: diagonal terms ~ 0, each of the N(N-1) off-diagonal terms is -log sigmoid(0) = log 2,
    # divided by N: (N - 1) log 2.
    np.testing.assert_allclose(
      J.siglip_loss(aligned, aligned, s, 0.0), (n - 1) * math.log(2.0), rtol=1e-6
    )
    # b = -s/2 puts the decision boundary halfway: every term is log(1 + e^{-50}) ~ 0.
    self.assertLess(float(J.siglip_loss(aligned, aligned, s, -s / 2)), 1e-12)
    # The bias only shifts the logits: d loss / d b = (1/N) sum_ij -z_ij sigmoid(-z_ij x_ij).
    grad_b = jax.grad(J.siglip_loss, argnums=3)(self.i, self.t, 10.0, -10.0)
    x = 10.0 * np.float64(self.i) @ np.float64(self.t).T - 10.0
    z = 2 * np.eye(self.n) - 1
    expected = np.sum(-z / (1 + np.exp(z * x))) / self.n
    np.testing.assert_allclose(grad_b, expected, rtol=1e-5)

  @parameterized.parameters(1.0, 100.0)
  def test_joint_permutation_invariance(self, s):
    p = self.perm
    i, ia, t, ta = self.i, self.ia, self.t, self.ta
    np.testing.assert_allclose(J.clip_loss(i[p], t[p], s), J.clip_loss(i, t, s), rtol=1e-5)
    np.testing.assert_allclose(
      J.clip_loss_per_pair(i[p], t[p], s), np.asarray(J.clip_loss_per_pair(i, t, s))[p], rtol=1e-5
    )
    np.testing.assert_allclose(
      J.inmodal_loss(i[p], ia[p], t[p], ta[p], s), J.inmodal_loss(i, ia, t, ta, s), rtol=1e-5
    )
    np.testing.assert_allclose(
      J.inmodal_loss_per_pair(i[p], ia[p], t[p], ta[p], s),
      np.asarray(J.inmodal_loss_per_pair(i, ia, t, ta, s))[p],
      rtol=1e-5,
    )
    np.testing.assert_allclose(J.cyclip_loss(i[p], t[p], s), J.cyclip_loss(i, t, s), rtol=1e-5)
    np.testing.assert_allclose(
      J.siglip_loss(i[p], t[p], s, -5.0), J.siglip_loss(i, t, s, -5.0), rtol=1e-5
    )

  def test_perfectly_aligned_large_scale_is_near_zero(self):
    # Orthonormal aligned batch at s = 100: each CE = log(1 + (N-1) e^{-100}) ~ 0.
    aligned = np.eye(self.n, self.d, dtype=np.float32)
    self.assertLess(float(J.clip_loss(aligned, aligned, 100.0)), 1e-30)
    self.assertLess(float(J.inmodal_loss(aligned, aligned, aligned, aligned, 100.0)), 1e-30)
    # A misaligned batch (captions shifted by one) is far from zero at the same scale.
    self.assertGreater(float(J.clip_loss(aligned, np.roll(aligned, 1, axis=0), 100.0)), 50.0)

  def test_pairing_matters(self):
    # Matching pairs give a lower loss than a shuffled pairing when embeddings are close.
    rng = np.random.default_rng(3)
    noisy = self.i + 0.1 * rng.normal(size=self.i.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=-1, keepdims=True)
    shuffled = noisy[np.roll(np.arange(self.n), 1)]
    for fn, args in (
      (J.clip_loss, (10.0,)),
      (J.cyclip_loss, (10.0,)),
      (J.siglip_loss, (10.0, -10.0)),
    ):
      self.assertLess(float(fn(self.i, noisy, *args)), float(fn(self.i, shuffled, *args)))


class DtypeAndShapeTest(chex.TestCase):
  def test_bf16_inputs_give_f32_output(self):
    rng = np.random.default_rng(4)
    n, d, s = 10, 12, 1 / 0.07
    embs32 = [jnp.asarray(_normalised(rng, n, d)) for _ in range(4)]
    embs16 = [e.astype(jnp.bfloat16) for e in embs32]
    rounded = [e.astype(jnp.float32) for e in embs16]  # the exact values the bf16 inputs hold
    cases = {
      "clip_loss": lambda e: (e[0], e[2], s),
      "clip_loss_per_pair": lambda e: (e[0], e[2], s),
      "inmodal_loss": lambda e: (*e, s),
      "inmodal_loss_per_pair": lambda e: (*e, s),
      "cyclip_loss": lambda e: (e[0], e[2], s),
      "siglip_loss": lambda e: (e[0], e[2], s, -10.0),
    }
    for name, args in cases.items():
      with self.subTest(name):
        fn = getattr(J, name)
        out16 = fn(*args(embs16))
        self.assertEqual(out16.dtype, jnp.float32)
        # Computed in float32: identical (to f32 rounding) to upcasting first.
        np.testing.assert_allclose(out16, fn(*args(rounded)), rtol=1e-5, atol=1e-5)
        # And close to the float32 result (bf16 keeps ~3 significant digits of the inputs).
        np.testing.assert_allclose(out16, fn(*args(embs32)), rtol=2e-2, atol=2e-2)

  def test_bf16_scale_is_upcast(self):
    e = np.eye(2, dtype=np.float32)
    out = J.clip_loss(e, e, jnp.bfloat16(10.0))
    self.assertEqual(out.dtype, jnp.float32)
    np.testing.assert_allclose(out, _softplus(-10.0), **_HAND_TOL)

  def test_outputs_are_scalars_or_per_pair(self):
    e = np.eye(10, 12, dtype=np.float32)
    chex.assert_shape(J.clip_loss(e, e, 1.0), ())
    chex.assert_shape(J.inmodal_loss(e, e, e, e, 1.0), ())
    chex.assert_shape(J.cyclip_loss(e, e, 1.0), ())
    chex.assert_shape(J.siglip_loss(e, e, 1.0, 0.0), ())
    chex.assert_shape(J.clip_loss_per_pair(e, e, 1.0), (10,))
    chex.assert_shape(J.inmodal_loss_per_pair(e, e, e, e, 1.0), (10,))

  def test_bad_shapes_are_rejected(self):
    a = np.ones((4, 8), np.float32)
    with self.assertRaises(AssertionError):
      J.clip_loss(a, np.ones((3, 8), np.float32), 1.0)  # different batch sizes
    with self.assertRaises(AssertionError):
      J.clip_loss(a[0], a[0], 1.0)  # rank 1
    with self.assertRaises(AssertionError):
      J.inmodal_loss(a, a, a, np.ones((4, 7), np.float32), 1.0)
    with self.assertRaises(AssertionError):
      J.siglip_loss(a, a, 1.0, np.zeros(2))  # bias must be a scalar
    with self.assertRaises(AssertionError):
      J.clip_loss(a, a, np.ones(4))  # scale must be a scalar


if __name__ == "__main__":
  absltest.main()

"""Build a ``CLIP`` model from a config, and the named model presets.

Model config layout (``config.model``; keys marked ``=`` have the given default)::

    embed_dim: int                       shared embedding size D
    dtype: 'float32' | 'bfloat16'        = 'float32'; compute dtype of both towers
                                         (parameters stay float32)
    logit_scale_init: float              = log(1/0.07); log-space (SigLIP: log(10))
    logit_bias_init: float | None        = None; SigLIP's bias b (e.g. -10.0)
    act: 'quick_gelu' | 'gelu'           = 'quick_gelu'; transformer MLP activation
    image:
      kind: 'vit' | 'cnn' | 'resnet'
      size: int                          input resolution (e.g. 32, 224)
      patch_size, width, depth, heads    (vit)
      layers: tuple[int, int, int, int]  (resnet) Bottleneck blocks per stage, e.g. RN50 (3, 4, 6, 3)
      width, heads                       (resnet) stem width (64 for RN50); attention-pool heads
                                         (None = 32 width / 64, as OpenAI)
      mlp_ratio: float                   = 4.0 (vit)
      widths: tuple[int, ...]            (cnn) channels of the stem and each stride-2 stage
      pool: 'max' | 'mean'               = 'max' (cnn) global pooling before the projection
      act: 'relu' | 'gelu' | 'quick_gelu'  = model.act (cnn)
    text:
      context_length, width, depth, heads: int
      vocab_size: int                    = 49408 (CLIP BPE)
      mlp_ratio: float                   = 4.0

Unknown keys, kinds, dtypes and activations raise ``ValueError`` naming the value
and the allowed ones. Presets (``model_config(name)``): see ``MODEL_PRESETS``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import jax.numpy as jnp
import ml_collections

from .clip import CLIP
from .cnn import ConvTower
from .resnet import ModifiedResNet
from .text import TextTransformer
from .transformer import activation
from .vit import VisionTransformer

_TEXT_OPENAI = dict(
  context_length=77, vocab_size=49408, width=512, depth=12, heads=8, mlp_ratio=4.0
)
_TEXT_OPENAI_640 = dict(_TEXT_OPENAI, width=640, heads=10)
_TEXT_OPENAI_768 = dict(_TEXT_OPENAI, width=768, heads=12)
_TEXT_TINY = dict(context_length=32, vocab_size=49408, width=128, depth=2, heads=4, mlp_ratio=4.0)

MODEL_PRESETS: dict[str, dict[str, Any]] = {
  # CPU demo: 0.29M-parameter CNN (58 MFLOPs per 32 px image) + 2-layer text tower
  # (6.7M parameters, 6.3M of them the token table).
  'tiny-cnn': dict(
    embed_dim=128,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='gelu',
    image=dict(kind='cnn', size=32, widths=(32, 64, 128), act='relu', pool='max'),
    text=_TEXT_TINY,
  ),
  'tiny-vit': dict(
    embed_dim=128,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='gelu',
    image=dict(kind='vit', size=32, patch_size=4, width=128, depth=4, heads=4, mlp_ratio=4.0),
    text=_TEXT_TINY,
  ),
  # CLIP's ResNet at CPU-test scale: one Bottleneck per stage, 32 px -> a 1 x 1 grid pooled.
  'tiny-resnet': dict(
    embed_dim=128,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='gelu',
    image=dict(kind='resnet', size=32, layers=(1, 1, 1, 1), width=16, heads=None),
    text=_TEXT_TINY,
  ),
  # OpenAI sizes: 151,277,313 and 149,620,737 parameters.
  'vit-b-32': dict(
    embed_dim=512,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='vit', size=224, patch_size=32, width=768, depth=12, heads=12, mlp_ratio=4.0),
    text=_TEXT_OPENAI,
  ),
  'vit-b-16': dict(
    embed_dim=512,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='vit', size=224, patch_size=16, width=768, depth=12, heads=12, mlp_ratio=4.0),
    text=_TEXT_OPENAI,
  ),
  'vit-l-14': dict(
    embed_dim=768,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='vit', size=224, patch_size=14, width=1024, depth=24, heads=16, mlp_ratio=4.0),
    text=_TEXT_OPENAI_768,
  ),
  # CLIP's ModifiedResNets (OpenAI's model cards; RN50 is the seed study's and CleanCLIP's).
  'rn50': dict(
    embed_dim=1024,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='resnet', size=224, layers=(3, 4, 6, 3), width=64, heads=None),
    text=_TEXT_OPENAI,
  ),
  'rn101': dict(
    embed_dim=512,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='resnet', size=224, layers=(3, 4, 23, 3), width=64, heads=None),
    text=_TEXT_OPENAI,
  ),
  'rn50x4': dict(
    embed_dim=640,
    dtype='float32',
    logit_scale_init=math.log(1 / 0.07),
    logit_bias_init=None,
    act='quick_gelu',
    image=dict(kind='resnet', size=288, layers=(4, 6, 10, 6), width=80, heads=None),
    text=_TEXT_OPENAI_640,
  ),
}

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
_IMAGE_KINDS = ('vit', 'cnn', 'resnet')
_MODEL_KEYS = {'embed_dim', 'dtype', 'logit_scale_init', 'logit_bias_init', 'act', 'image', 'text'}
_IMAGE_KEYS = {
  'kind',
  'size',
  'patch_size',
  'width',
  'depth',
  'heads',
  'mlp_ratio',
  'pool',
  'widths',
  'act',
  'layers',
}
_TEXT_KEYS = {'context_length', 'vocab_size', 'width', 'depth', 'heads', 'mlp_ratio'}


def model_config(name: str) -> ml_collections.ConfigDict:
  """A fresh ``ConfigDict`` of the preset ``name`` (one of ``MODEL_PRESETS``)."""
  if name not in MODEL_PRESETS:
    raise ValueError(f'unknown model preset {name!r}; allowed: {sorted(MODEL_PRESETS)}')
  return ml_collections.ConfigDict(copy.deepcopy(MODEL_PRESETS[name]))


def _check_keys(section: Any, allowed: set[str], where: str) -> None:
  unknown = sorted(set(section.keys()) - allowed)
  if unknown:
    raise ValueError(f'unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}')


def _require(section: Any, key: str, where: str) -> Any:
  if key not in section:
    raise ValueError(f'missing required key {where}.{key}')
  return section[key]


def _choice(value: str, allowed: Any, what: str) -> str:
  if value not in allowed:
    raise ValueError(f'unknown {what} {value!r}; allowed: {sorted(allowed)}')
  return value


def _image_tower(image: Any, embed_dim: int, act: str, dtype: Any):
  kind = _choice(_require(image, 'kind', 'model.image'), _IMAGE_KINDS, 'model.image.kind')
  if kind == 'cnn':
    cnn_act = image.get('act', act)
    activation(cnn_act)  # validates the name
    return ConvTower(
      output_dim=embed_dim,
      widths=tuple(_require(image, 'widths', 'model.image')),
      pool=_choice(image.get('pool', 'max'), ('max', 'mean'), 'model.image.pool'),
      act=cnn_act,
      dtype=dtype,
    )
  if kind == 'resnet':
    layers = tuple(_require(image, 'layers', 'model.image'))
    if len(layers) != 4:
      raise ValueError(f'model.image.layers must give 4 stages of blocks, got {layers}')
    return ModifiedResNet(
      layers=layers,
      output_dim=embed_dim,
      width=_require(image, 'width', 'model.image'),
      heads=image.get('heads', None),
      dtype=dtype,
    )
  patch = _require(image, 'patch_size', 'model.image')
  size = _require(image, 'size', 'model.image')
  if size % patch:
    raise ValueError(f'model.image.size {size} is not divisible by patch_size {patch}')
  return VisionTransformer(
    patch_size=patch,
    width=_require(image, 'width', 'model.image'),
    depth=_require(image, 'depth', 'model.image'),
    heads=_require(image, 'heads', 'model.image'),
    output_dim=embed_dim,
    mlp_ratio=image.get('mlp_ratio', 4.0),
    act=act,
    dtype=dtype,
  )


def _text_tower(text: Any, embed_dim: int, act: str, dtype: Any) -> TextTransformer:
  return TextTransformer(
    width=_require(text, 'width', 'model.text'),
    depth=_require(text, 'depth', 'model.text'),
    heads=_require(text, 'heads', 'model.text'),
    output_dim=embed_dim,
    vocab_size=text.get('vocab_size', 49408),
    context_length=_require(text, 'context_length', 'model.text'),
    mlp_ratio=text.get('mlp_ratio', 4.0),
    act=act,
    dtype=dtype,
  )


def build_model(cfg: ml_collections.ConfigDict) -> CLIP:
  """The (uninitialised) ``CLIP`` module described by the model config ``cfg``.

  Initialise with ``model.init(rng, *example_inputs(cfg))``.
  """
  _check_keys(cfg, _MODEL_KEYS, 'model')
  image = _require(cfg, 'image', 'model')
  text = _require(cfg, 'text', 'model')
  _check_keys(image, _IMAGE_KEYS, 'model.image')
  _check_keys(text, _TEXT_KEYS, 'model.text')
  dtype = _DTYPES[_choice(cfg.get('dtype', 'float32'), _DTYPES, 'model.dtype')]
  act = cfg.get('act', 'quick_gelu')
  _choice(act, ('quick_gelu', 'gelu'), 'model.act')
  embed_dim = _require(cfg, 'embed_dim', 'model')
  bias = cfg.get('logit_bias_init', None)
  return CLIP(
    image_tower=_image_tower(image, embed_dim, act, dtype),
    text_tower=_text_tower(text, embed_dim, act, dtype),
    logit_scale_init=float(cfg.get('logit_scale_init', math.log(1 / 0.07))),
    logit_bias_init=None if bias is None else float(bias),
  )


def example_inputs(cfg: ml_collections.ConfigDict, batch: int = 1):
  """Zero ``(images [batch, size, size, 3] float32, tokens [batch, context] int32)``.

  The shapes ``model.init`` needs (the ViT's positional table is sized from them).
  """
  size = _require(cfg.image, 'size', 'model.image')
  context = _require(cfg.text, 'context_length', 'model.text')
  return (jnp.zeros((batch, size, size, 3), jnp.float32), jnp.zeros((batch, context), jnp.int32))

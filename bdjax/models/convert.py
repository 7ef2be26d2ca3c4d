"""OpenAI / open_clip CLIP checkpoints in and out of bdjax, without running code from files.

Reading (``read_state_dict``; the format is told from the file's first bytes, not its name):

    .safetensors                       safetensors.numpy
    torch.save zip (.pt/.pth/.bin)     a state dict, or {'state_dict': ...} (open_clip training
                                       checkpoints), keys possibly prefixed 'module.'
    TorchScript archive                OpenAI's official .pt files (torch.jit.save)

Both torch formats are read by ``torch_pickle`` (numpy only, a restricted unpickler: a file
whose pickle would run code is refused with ``UnsafePickleError``). The legacy non-zip
``torch.save`` format (torch < 1.6) and plain pickles are refused. Tensors keep their dtype;
``to_variables`` casts to float32.

Architecture (``infer_model_config``), as OpenAI's ``clip/model.py::build_model``:

    ViT if 'visual.proj' is present: width = conv1.weight[0], patch = conv1.weight[-1],
      depth = #visual.transformer.resblocks, size = patch * sqrt(#visual.positional_embedding - 1)
    ResNet otherwise: layers = #visual.layer{1..4}.{j}, width = layer1.0.conv1.weight[0],
      size = 32 * sqrt(#attnpool.positional_embedding - 1)
    embed_dim = text_projection[1], context_length = #positional_embedding,
    vocab_size = #token_embedding.weight, text width = ln_final.weight[0],
    depth = #transformer.resblocks, heads = width // 64 (both towers), mlp_ratio = c_fc / width

The MLP activation is not in the weights: OpenAI checkpoints (and open_clip '-quickgelu'
models) use ``quick_gelu``, other open_clip models ``gelu``; pass ``act``. Nor is the number
of heads (only how the width splits): open_clip models whose heads are not 64 wide (e.g.
ViT-H-14) would convert without error but compute something else. Models with other extras
(layer scale, attention pooling, custom text towers) fail with their unexpected keys.

Names (PyTorch key -> bdjax leaf ``collection/path``; layouts in vit.py, text.py,
transformer.py, resnet.py, clip.py):

    logit_scale [] (or [1])                 -> params/logit_scale []
    visual.*                                -> params/image_tower/*  (batch_stats/... for
                                               BatchNorm running_mean/var -> mean/var)
    token_embedding, positional_embedding, transformer, ln_final, text_projection
                                            -> params/text_tower/*
    *.num_batches_tracked                   -> dropped; written as 0 on export
    attn_mask, input_resolution, context_length, vocab_size (root buffers of TorchScript
      and older open_clip files)            -> dropped

``to_state_dict`` inverts ``to_variables`` exactly and writes keys in open_clip's order, which
``save_open_clip`` stores as .safetensors for ``open_clip.create_model(name, pretrained=PATH)``.

Command line: ``python -m bdjax.models.convert IN [OUT.safetensors] [--act gelu]`` prints the
inferred config (and the preset it matches) and writes OUT.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import safetensors
import safetensors.numpy
from flax import traverse_util

from .build import MODEL_PRESETS, build_model, example_inputs
from .torch_pickle import CheckpointError, UnsafePickleError, read_torch_zip

__all__ = [
  'CheckpointError',
  'UnsafePickleError',
  'check_state_dict',
  'describe',
  'infer_model_config',
  'load_checkpoint',
  'matching_preset',
  'read_state_dict',
  'save_open_clip',
  'to_state_dict',
  'to_variables',
]

Leaf = tuple[str, ...]  # ('params', 'image_tower', 'conv1', 'kernel')

# Root buffers of TorchScript / older open_clip files that carry no weights.
_DROPPED = frozenset({'attn_mask', 'input_resolution', 'context_length', 'vocab_size'})


# ---------------------------------------------------------------------------------------------
# Reading files


def _sniff(path: str) -> str:
  """'zip' or 'safetensors' from the first bytes of ``path``; anything else is refused."""
  try:
    with open(path, 'rb') as f:
      head = f.read(9)
  except OSError as err:
    raise CheckpointError(f'{path}: cannot read the checkpoint ({err.strerror})') from None
  if head[:4] in (b'PK\x03\x04', b'PK\x05\x06'):
    return 'zip'
  if head[:1] == b'\x80':
    raise CheckpointError(
      f'{path}: a plain pickle or a legacy (torch < 1.6) torch.save file, which bdjax does not '
      'read (a pickle can run code). In a trusted environment re-save it as .safetensors: '
      'safetensors.torch.save_file(torch.load(PATH, weights_only=True), OUT).'
    )
  if len(head) == 9 and head[8:9] == b'{':
    return 'safetensors'
  raise CheckpointError(
    f'{path}: unknown checkpoint format (first bytes {head[:8]!r}); expected .safetensors, a '
    'torch.save zip (.pt/.pth/.bin) or a TorchScript archive (OpenAI .pt)'
  )


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  try:
    return safetensors.numpy.load_file(path)
  except (safetensors.SafetensorError, KeyError, TypeError, ValueError) as err:
    raise CheckpointError(f'{path}: corrupt or truncated .safetensors file ({err})') from None


def _unwrap(obj: Any, path: str) -> dict[str, np.ndarray]:
  """The state dict inside a torch.save object: ``obj`` or ``obj['state_dict']``, no 'module.'."""
  if isinstance(obj, Mapping) and 'state_dict' in obj:
    obj = obj['state_dict']
  if not isinstance(obj, Mapping) or not obj:
    raise CheckpointError(f'{path}: holds a {type(obj).__name__}, not a state dict of tensors')
  bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
  if bad:
    raise CheckpointError(f'{path}: not a state dict: non-tensor entries {_listing(bad)}')
  if all(k.startswith('module.') for k in obj):
    return {k[len('module.') :]: v for k, v in obj.items()}
  return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The state dict ``{name: array}`` in a checkpoint file (formats: module docstring).

  Never runs code from the file; raises ``CheckpointError`` (naming the file) for a missing,
  unknown, corrupt or unsafe file.
  """
  path = os.fspath(path)
  if _sniff(path) == 'safetensors':
    return _read_safetensors(path)
  return _unwrap(read_torch_zip(path), path)


# ---------------------------------------------------------------------------------------------
# Architecture


def _count(state_dict: Mapping[str, Any], prefix: str) -> int:
  """How many distinct ``{prefix}{i}.`` indices the keys have."""
  return len({k[len(prefix) :].split('.')[0] for k in state_dict if k.startswith(prefix)})


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
  if key not in state_dict:
    raise CheckpointError(
      f'not an OpenAI / open_clip CLIP state dict: no {key!r} (keys: {_listing(state_dict)})'
    )
  return tuple(state_dict[key].shape)


def _grid(state_dict: Mapping[str, Any], key: str) -> int:
  n = _shape(state_dict, key)[0] - 1
  if math.isqrt(n) ** 2 != n:
    raise CheckpointError(f'{key} has {n} patch rows, not a square grid')
  return math.isqrt(n)


def _mlp_ratio(state_dict: Mapping[str, Any], prefix: str, width: int) -> float:
  key = f'{prefix}resblocks.0.mlp.c_fc.weight'
  return _shape(state_dict, key)[0] / width if key in state_dict else 4.0


def _vit_config(sd: Mapping[str, Any]) -> dict[str, Any]:
  width, _, _, patch = _shape(sd, 'visual.conv1.weight')
  return dict(
    kind='vit',
    size=patch * _grid(sd, 'visual.positional_embedding'),
    patch_size=patch,
    width=width,
    depth=_count(sd, 'visual.transformer.resblocks.'),
    heads=width // 64,
    mlp_ratio=_mlp_ratio(sd, 'visual.transformer.', width),
  )


def _resnet_config(sd: Mapping[str, Any]) -> dict[str, Any]:
  return dict(
    kind='resnet',
    size=32 * _grid(sd, 'visual.attnpool.positional_embedding'),
    layers=tuple(_count(sd, f'visual.layer{i}.') for i in range(1, 5)),
    width=_shape(sd, 'visual.layer1.0.conv1.weight')[0],
    heads=None,
  )


def infer_model_config(
  state_dict: Mapping[str, Any], act: str = 'quick_gelu'
) -> ml_collections.ConfigDict:
  """The bdjax model config (build.py's format) of an OpenAI / open_clip CLIP state dict.

  Only the arrays' ``.shape`` is read (rules in the module docstring). ``act`` is the MLP
  activation, which the weights cannot tell: ``'quick_gelu'`` (OpenAI, open_clip
  '-quickgelu') or ``'gelu'`` (other open_clip models). ``logit_bias`` (SigLIP) sets
  ``logit_bias_init`` to its value.
  """
  sd = state_dict
  image = _vit_config(sd) if 'visual.proj' in sd else _resnet_config(sd)
  width = _shape(sd, 'ln_final.weight')[0]
  text = dict(
    context_length=_shape(sd, 'positional_embedding')[0],
    vocab_size=_shape(sd, 'token_embedding.weight')[0],
    width=width,
    depth=_count(sd, 'transformer.resblocks.'),
    heads=width // 64,
    mlp_ratio=_mlp_ratio(sd, 'transformer.', width),
  )
  bias = None if 'logit_bias' not in sd else float(np.asarray(sd['logit_bias']).reshape(()))
  return ml_collections.ConfigDict(
    dict(
      embed_dim=_shape(sd, 'text_projection')[1],
      dtype='float32',
      logit_scale_init=math.log(1 / 0.07),
      logit_bias_init=bias,
      act=act,
      image=image,
      text=text,
    )
  )


def _architecture(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """The weight-shaping part of a model config (not dtype, act or initial values)."""
  cfg = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  return {k: cfg.get(k) for k in ('embed_dim', 'image', 'text')}


def matching_preset(cfg: ml_collections.ConfigDict) -> str | None:
  """The name of the ``MODEL_PRESETS`` entry with the architecture of ``cfg`` (any act)."""
  arch = _architecture(cfg)
  return next((n for n, p in MODEL_PRESETS.items() if _architecture(p) == arch), None)


def describe(cfg: ml_collections.ConfigDict) -> str:
  """One line naming the architecture of a model config, and its preset if it has one."""
  image, text = cfg.image, cfg.text
  if image.kind == 'vit':
    vision = f'ViT {image.width}w x{image.depth} /{image.patch_size}'
  elif image.kind == 'resnet':
    vision = f'ResNet {tuple(image.layers)} width {image.width}'
  else:
    vision = f'{image.kind} image tower'
  preset = matching_preset(cfg)
  return (
    f'{vision} at {image.size} px, text {text.width}w x{text.depth}, embed_dim {cfg.embed_dim}'
    + (f" (preset '{preset}')" if preset else ' (no bdjax preset)')
  )


# ---------------------------------------------------------------------------------------------
# Name and layout rules


@dataclasses.dataclass(frozen=True)
class _Rule:
  """PyTorch ``key`` <-> bdjax ``leaves``: ``into(array) -> leaf arrays``, ``back(*leaf arrays)
  -> array``. A rule without leaves is a key written on export (``back()``), skipped on import."""

  key: str
  leaves: tuple[Leaf, ...]
  into: Callable[[np.ndarray], tuple[np.ndarray, ...]]
  back: Callable[..., np.ndarray]


def _copy(key: str, leaf: Leaf) -> _Rule:
  return _Rule(key, (leaf,), lambda x: (x,), lambda x: x)


def _scalar(key: str, leaf: Leaf) -> _Rule:
  """``[]`` or ``[1]`` in PyTorch (open_clip versions differ) -> ``[]``."""
  return _Rule(key, (leaf,), lambda x: (x.reshape(()),), lambda x: x)


def _linear(key: str, leaf: Leaf) -> _Rule:
  """``weight [out, in]`` <-> ``kernel [in, out]``."""
  return _Rule(key, (leaf,), lambda x: (x.T,), lambda k: k.T)


def _conv(key: str, leaf: Leaf) -> _Rule:
  """``weight [out, in, kh, kw]`` <-> ``kernel [kh, kw, in, out]``."""
  into = lambda x: (x.transpose(2, 3, 1, 0),)  # noqa: E731
  return _Rule(key, (leaf,), into, lambda k: k.transpose(3, 2, 0, 1))


def _norm(key: str, leaf: Leaf) -> list[_Rule]:
  """LayerNorm ``{weight, bias}`` <-> ``{scale, bias}``."""
  return [_copy(f'{key}.weight', leaf + ('scale',)), _copy(f'{key}.bias', leaf + ('bias',))]


def _batch_norm(key: str, leaf: Leaf) -> list[_Rule]:
  """BatchNorm: affine in ``params``, running statistics in ``batch_stats`` (leaf[0] = params)."""
  stats = ('batch_stats',) + leaf[1:]
  return [
    *_norm(key, leaf),
    _copy(f'{key}.running_mean', stats + ('mean',)),
    _copy(f'{key}.running_var', stats + ('var',)),
    _Rule(f'{key}.num_batches_tracked', (), lambda x: (), lambda: np.zeros((), np.int64)),
  ]


def _attention(key: str, leaf: Leaf, heads: int) -> list[_Rule]:
  """``nn.MultiheadAttention`` <-> Flax ``{query, key, value, out}`` with ``heads`` heads.

  ``in_proj_weight [3w, w]`` rows ``[0:w], [w:2w], [2w:3w]`` -> ``{q,k,v}/kernel [w, h, d]``
  (transposed); ``in_proj_bias [3w]`` -> ``[h, d]`` each; ``out_proj.weight [w, w]`` ->
  ``out/kernel [h, d, w]`` (transposed).
  """
  qkv = lambda name: tuple(leaf + (p, name) for p in ('query', 'key', 'value'))  # noqa: E731
  return [
    _Rule(
      f'{key}.in_proj_weight',
      qkv('kernel'),
      lambda x: tuple(p.T.reshape(x.shape[1], heads, -1) for p in np.split(x, 3)),
      lambda *ks: np.concatenate([k.reshape(k.shape[0], -1).T for k in ks]),
    ),
    _Rule(
      f'{key}.in_proj_bias',
      qkv('bias'),
      lambda x: tuple(p.reshape(heads, -1) for p in np.split(x, 3)),
      lambda *bs: np.concatenate([b.reshape(-1) for b in bs]),
    ),
    _Rule(
      f'{key}.out_proj.weight',
      (leaf + ('out', 'kernel'),),
      lambda x: (x.T.reshape(heads, -1, x.shape[0]),),
      lambda k: k.reshape(-1, k.shape[-1]).T,
    ),
    _copy(f'{key}.out_proj.bias', leaf + ('out', 'bias')),
  ]


def _transformer(key: str, leaf: Leaf, depth: int, heads: int) -> list[_Rule]:
  """``{key}.resblocks.{i}.*`` <-> ``{leaf}/resblocks_{i}/*`` (transformer.py)."""
  rules = []
  for i in range(depth):
    k, p = f'{key}.resblocks.{i}', leaf + (f'resblocks_{i}',)
    rules += _norm(f'{k}.ln_1', p + ('ln_1',)) + _attention(f'{k}.attn', p + ('attn',), heads)
    rules += _norm(f'{k}.ln_2', p + ('ln_2',))
    for fc in ('c_fc', 'c_proj'):
      rules += [
        _linear(f'{k}.mlp.{fc}.weight', p + ('mlp', fc, 'kernel')),
        _copy(f'{k}.mlp.{fc}.bias', p + ('mlp', fc, 'bias')),
      ]
  return rules


def _vit(image: Any) -> list[_Rule]:
  """``visual.*`` of OpenAI's VisionTransformer <-> ``image_tower`` (vit.py)."""
  p = ('params', 'image_tower')
  return [
    _copy('visual.class_embedding', p + ('class_embedding',)),
    _copy('visual.positional_embedding', p + ('positional_embedding',)),
    _copy('visual.proj', p + ('proj', 'kernel')),
    _conv('visual.conv1.weight', p + ('conv1', 'kernel')),
    *_norm('visual.ln_pre', p + ('ln_pre',)),
    *_transformer('visual.transformer', p + ('transformer',), image.depth, image.heads),
    *_norm('visual.ln_post', p + ('ln_post',)),
  ]


def _bottleneck(key: str, leaf: Leaf, downsample: bool) -> list[_Rule]:
  rules = []
  for i in (1, 2, 3):
    rules += [_conv(f'{key}.conv{i}.weight', leaf + (f'conv{i}', 'kernel'))]
    rules += _batch_norm(f'{key}.bn{i}', leaf + (f'bn{i}',))
  if downsample:  # the first block of each stage; downsample.0 is the (parameterless) pool
    rules += [_conv(f'{key}.downsample.0.weight', leaf + ('downsample_0', 'kernel'))]
    rules += _batch_norm(f'{key}.downsample.1', leaf + ('downsample_1',))
  return rules


def _resnet(image: Any) -> list[_Rule]:
  """``visual.*`` of OpenAI's ModifiedResNet <-> ``image_tower`` (resnet.py)."""
  p = ('params', 'image_tower')
  rules = []
  for i in (1, 2, 3):
    rules += [_conv(f'visual.conv{i}.weight', p + (f'conv{i}', 'kernel'))]
    rules += _batch_norm(f'visual.bn{i}', p + (f'bn{i}',))
  for i, blocks in enumerate(image.layers, start=1):
    for j in range(blocks):
      rules += _bottleneck(f'visual.layer{i}.{j}', p + (f'layer{i}_{j}',), downsample=j == 0)
  rules += [_copy('visual.attnpool.positional_embedding', p + ('attnpool', 'positional_embedding'))]
  for proj in ('k_proj', 'q_proj', 'v_proj', 'c_proj'):
    rules += [
      _linear(f'visual.attnpool.{proj}.weight', p + ('attnpool', proj, 'kernel')),
      _copy(f'visual.attnpool.{proj}.bias', p + ('attnpool', proj, 'bias')),
    ]
  return rules


def _rules(cfg: ml_collections.ConfigDict) -> list[_Rule]:
  """Every rule of the model ``cfg``, in open_clip's state-dict order."""
  kind = cfg.image.kind
  if kind not in ('vit', 'resnet'):
    raise ValueError(
      f"model.image.kind {kind!r} has no OpenAI / open_clip counterpart; only 'vit' and "
      "'resnet' towers convert"
    )
  t = ('params', 'text_tower')
  head = [
    _copy('positional_embedding', t + ('positional_embedding',)),
    _copy('text_projection', t + ('text_projection', 'kernel')),
    _scalar('logit_scale', ('params', 'logit_scale')),
  ]
  if cfg.get('logit_bias_init', None) is not None:
    head.append(_scalar('logit_bias', ('params', 'logit_bias')))
  return [
    *head,
    *(_vit(cfg.image) if kind == 'vit' else _resnet(cfg.image)),
    *_transformer('transformer', t + ('transformer',), cfg.text.depth, cfg.text.heads),
    _copy('token_embedding.weight', t + ('token_embedding', 'embedding')),
    *_norm('ln_final', t + ('ln_final',)),
  ]


# ---------------------------------------------------------------------------------------------
# Conversion


def _listing(keys: Any, limit: int = 12, quote: bool = True) -> str:
  keys = list(keys)
  shown = ', '.join(map(repr if quote else str, keys[:limit]))
  return shown + (f' ... and {len(keys) - limit} more' if len(keys) > limit else '')


def _problems(missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
  """'missing keys ...; unexpected keys ...; wrong shapes: ...' (the non-empty ones)."""
  parts = [
    f'missing keys {_listing(missing)}' if missing else '',
    f'unexpected keys {_listing(unexpected)}' if unexpected else '',
    f'wrong shapes: {_listing(wrong, 6, quote=False)}' if wrong else '',
  ]
  return '; '.join(p for p in parts if p)


def _weights(variables: Mapping[str, Any]) -> dict[Leaf, Any]:
  """The ``params`` and ``batch_stats`` leaves of ``variables``, keyed by path."""
  kept = {c: variables[c] for c in ('params', 'batch_stats') if c in variables}
  return traverse_util.flatten_dict(kept)


@functools.lru_cache(maxsize=8)
def _shapes_of(cfg_json: str) -> dict[Leaf, tuple[int, ...]]:
  cfg = ml_collections.ConfigDict(json.loads(cfg_json))
  variables = jax.eval_shape(build_model(cfg).init, jax.random.key(0), *example_inputs(cfg))
  return {k: tuple(v.shape) for k, v in _weights(variables).items()}


def _model_shapes(cfg: ml_collections.ConfigDict) -> dict[Leaf, tuple[int, ...]]:
  """``{leaf: shape}`` of the weights of ``build_model(cfg)`` (abstract init, cached)."""
  return dict(_shapes_of(cfg.to_json(sort_keys=True)))


def _checked_rules(cfg: ml_collections.ConfigDict) -> tuple[list[_Rule], dict[Leaf, tuple]]:
  """The rules of ``cfg`` and the model's leaf shapes, checked to cover each other exactly."""
  rules, shapes = _rules(cfg), _model_shapes(cfg)
  covered = {leaf for r in rules for leaf in r.leaves}
  if covered != set(shapes):
    raise RuntimeError(  # a bug in this file, not in the user's input
      f'convert.py rules and the bdjax model disagree: model only '
      f'{_listing(map("/".join, set(shapes) - covered))}; rules only '
      f'{_listing(map("/".join, covered - set(shapes)))}'
    )
  return rules, shapes


def _torch_shape(rule: _Rule, shapes: dict[Leaf, tuple]) -> tuple[int, ...]:
  """The PyTorch shape ``rule.key`` must have for the model's leaf shapes (zero-stride dummies)."""
  dummies = [np.broadcast_to(np.zeros((), np.float32), shapes[leaf]) for leaf in rule.leaves]
  return tuple(rule.back(*dummies).shape)


def _checkpoint_hint(state_dict: Mapping[str, Any]) -> str:
  try:
    return f'; the checkpoint is a {describe(infer_model_config(state_dict))}'
  except (CheckpointError, KeyError, ValueError, AttributeError, IndexError):
    return ''


def _check_state_dict(state_dict: Mapping[str, Any], rules: list[_Rule], shapes: dict) -> None:
  """Raises ``CheckpointError`` listing missing / unexpected keys and wrong shapes."""
  known = {r.key for r in rules} | _DROPPED
  missing = [r.key for r in rules if r.leaves and r.key not in state_dict]
  unexpected = [k for k in state_dict if k not in known]
  wrong = []
  for r in rules:
    if r.leaves and r.key in state_dict:
      have, need = tuple(state_dict[r.key].shape), _torch_shape(r, shapes)
      if have != need and not (need == () and have == (1,)):  # [1]: older open_clip scalars
        wrong.append(f'{r.key!r} {have} (model needs {need})')
  if missing or unexpected or wrong:
    raise CheckpointError(
      'state dict does not fit the model config: '
      + _problems(missing, unexpected, wrong)
      + _checkpoint_hint(state_dict)
    )


def check_state_dict(state_dict: Mapping[str, Any], cfg: ml_collections.ConfigDict) -> None:
  """Raises ``CheckpointError`` unless ``state_dict`` has exactly the keys and shapes of the
  model ``cfg`` (the dropped keys of the module docstring allowed). Reads only ``.shape``.

  The message lists the missing and unexpected keys and wrong shapes, and names the
  architecture (and preset) the state dict has.
  """
  _check_state_dict(state_dict, *_checked_rules(cfg))


def to_variables(
  state_dict: Mapping[str, Any], cfg: ml_collections.ConfigDict
) -> dict[str, dict[str, Any]]:
  """bdjax variables ``{'params': ..., 'batch_stats': ...}`` (float32 numpy) of ``state_dict``.

  ``batch_stats`` only for a ResNet image tower. The state dict must hold exactly the keys of
  the model ``cfg`` with the right shapes, else ``CheckpointError`` (``check_state_dict``).
  """
  rules, shapes = _checked_rules(cfg)
  _check_state_dict(state_dict, rules, shapes)
  flat = {}
  for rule in rules:
    if rule.leaves:
      arrays = rule.into(np.asarray(state_dict[rule.key]))
      for leaf, array in zip(rule.leaves, arrays):
        flat[leaf] = np.array(array, dtype=np.float32, order='C')
  return traverse_util.unflatten_dict(flat)


def to_state_dict(
  variables: Mapping[str, Any], cfg: ml_collections.ConfigDict
) -> dict[str, np.ndarray]:
  """The open_clip / OpenAI state dict ``{key: numpy array}`` of bdjax ``variables``.

  Inverts ``to_variables`` exactly; keys in open_clip's ``state_dict()`` order, BatchNorm
  ``num_batches_tracked`` written as 0. Collections other than ``params`` and ``batch_stats``
  are ignored; a missing or extra leaf there, or a wrong shape, raises ``ValueError``.
  """
  rules, shapes = _checked_rules(cfg)
  flat = _weights(variables)
  missing = ['/'.join(leaf) for leaf in shapes if leaf not in flat]
  extra = ['/'.join(leaf) for leaf in flat if leaf not in shapes]
  wrong = [
    f'{"/".join(leaf)} {tuple(np.shape(flat[leaf]))} (model needs {shape})'
    for leaf, shape in shapes.items()
    if leaf in flat and tuple(np.shape(flat[leaf])) != shape
  ]
  if missing or extra or wrong:
    raise ValueError(f'variables do not fit the model config: {_problems(missing, extra, wrong)}')
  out = {}
  for rule in rules:
    out[rule.key] = np.asarray(rule.back(*(np.asarray(flat[leaf]) for leaf in rule.leaves)))
  return out


def load_checkpoint(
  path: str | os.PathLike,
  act: str = 'quick_gelu',
  cfg: ml_collections.ConfigDict | None = None,
) -> tuple[dict[str, dict[str, Any]], ml_collections.ConfigDict]:
  """``(variables, cfg)`` of an OpenAI / open_clip checkpoint file.

  The model config is ``cfg`` when given (checked against the weights; needed for heads that
  are not 64 wide, e.g. bdjax's tiny presets), else ``infer_model_config(state_dict, act)``.
  Errors name the file.
  """
  state_dict = read_state_dict(path)
  try:
    cfg = infer_model_config(state_dict, act) if cfg is None else cfg
    return to_variables(state_dict, cfg), cfg
  except CheckpointError as err:
    raise CheckpointError(f'{os.fspath(path)}: {err}') from None


def save_open_clip(
  path: str | os.PathLike, variables: Mapping[str, Any], cfg: ml_collections.ConfigDict
) -> None:
  """Writes ``to_state_dict(variables, cfg)`` to ``path``, a ``.safetensors`` file that
  ``open_clip.create_model(NAME, pretrained=path)`` loads (open_clip picks the reader by the
  suffix, so ``path`` must end in '.safetensors')."""
  path = os.fspath(path)
  if not path.endswith('.safetensors'):
    raise ValueError(
      f"{path}: the output name must end in '.safetensors' (open_clip picks its reader by suffix)"
    )
  state_dict = {k: np.asarray(v, order='C') for k, v in to_state_dict(variables, cfg).items()}
  safetensors.numpy.save_file(state_dict, path, metadata={'format': 'pt'})


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m bdjax.models.convert IN [OUT.safetensors] [--act gelu]``; returns the exit code."""
  parser = argparse.ArgumentParser(
    prog='python -m bdjax.models.convert',
    description='Read an OpenAI / open_clip CLIP checkpoint (without running code from it), '
    'print its bdjax model config, and optionally write it as open_clip .safetensors.',
  )
  parser.add_argument('checkpoint', help='.safetensors, torch.save zip, or OpenAI TorchScript .pt')
  parser.add_argument('out', nargs='?', help='write the weights here (.safetensors)')
  parser.add_argument(
    '--act',
    choices=('quick_gelu', 'gelu'),
    default='quick_gelu',
    help="MLP activation (not in the weights): OpenAI and '-quickgelu' models quick_gelu, other "
    'open_clip models gelu',
  )
  args = parser.parse_args(argv)
  if args.out and not args.out.endswith('.safetensors'):
    parser.error(f"{args.out}: the output name must end in '.safetensors'")
  try:
    variables, cfg = load_checkpoint(args.checkpoint, act=args.act)
    if args.out:
      save_open_clip(args.out, variables, cfg)
  except ValueError as err:  # CheckpointError included
    print(f'error: {err}', file=sys.stderr)
    return 1
  print(f'{args.checkpoint}: {describe(cfg)}')
  for key, value in cfg.to_dict().items():
    print(f'model.{key} = {value!r}')
  if args.out:
    print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

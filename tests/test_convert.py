"""Specification tests for bdjax/models/convert.py and torch_pickle.py (no PyTorch needed).

Torch-format files are written here by a tiny pickler that emits the same opcodes as
``torch.save`` (tests/test_open_clip_parity.py checks the reader against real torch files).
"""

import collections
import copy
import io
import math
import os
import pickle
import subprocess
import zipfile

import jax
import ml_collections
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util

from bdjax.models import convert
from bdjax.models.build import build_model, example_inputs, model_config
from bdjax.models.convert import CheckpointError, UnsafePickleError

TEXT = dict(context_length=8, vocab_size=64, width=128, depth=2, heads=2, mlp_ratio=4.0)
RESNET = dict(kind='resnet', size=64, layers=(2, 1, 1, 1), width=8, heads=None)
VIT = dict(kind='vit', size=32, patch_size=8, width=128, depth=2, heads=2, mlp_ratio=4.0)


def _cfg(image, act='quick_gelu'):
  return ml_collections.ConfigDict(
    dict(
      embed_dim=16,
      dtype='float32',
      logit_scale_init=math.log(1 / 0.07),
      logit_bias_init=None,
      act=act,
      image=copy.deepcopy(image),
      text=dict(TEXT),
    )
  )


def _random_variables(cfg, seed=0):
  """Variables with the model's tree and shapes, filled with random float32 (no compile)."""
  shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), *example_inputs(cfg))
  rng = np.random.default_rng(seed)
  fill = lambda s: rng.standard_normal(s.shape).astype(np.float32)  # noqa: E731
  return jax.tree.map(fill, shapes)


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep='/')


@pytest.fixture(scope='module')
def resnet():
  """``(cfg, variables, state_dict)`` of a small ResNet CLIP (random weights)."""
  cfg = _cfg(RESNET)
  variables = _random_variables(cfg)
  return cfg, variables, convert.to_state_dict(variables, cfg)


@pytest.fixture(scope='module')
def vit():
  """``(cfg, variables, state_dict)`` of a small ViT CLIP (random weights)."""
  cfg = _cfg(VIT)
  variables = _random_variables(cfg)
  return cfg, variables, convert.to_state_dict(variables, cfg)


@pytest.fixture(params=['resnet', 'vit'])
def model(request):
  """Each of the two convertible kinds in turn."""
  return request.getfixturevalue(request.param)


# -- names and layouts ------------------------------------------------------------------------


def test_resnet_export_uses_openai_names_layouts_and_order(resnet):
  cfg, v, sd = resnet
  p, stats = v['params']['image_tower'], v['batch_stats']['image_tower']
  shapes = {k: a.shape for k, a in sd.items()}
  first = ['positional_embedding', 'text_projection', 'logit_scale', 'visual.conv1.weight']
  assert list(sd)[:4] == first  # open_clip's order
  assert shapes['visual.conv1.weight'] == (4, 3, 3, 3)  # stem: width / 2, stride 2
  assert shapes['visual.conv3.weight'] == (8, 4, 3, 3)
  assert shapes['visual.layer1.0.downsample.0.weight'] == (32, 8, 1, 1)
  assert shapes['visual.layer1.1.conv1.weight'] == (8, 32, 1, 1)
  assert 'visual.layer1.1.downsample.0.weight' not in sd  # only the first block of a stage
  assert shapes['visual.layer4.0.conv3.weight'] == (256, 64, 1, 1)
  assert shapes['visual.attnpool.positional_embedding'] == (1 + 2 * 2, 256)
  assert shapes['visual.attnpool.c_proj.weight'] == (16, 256)
  # conv [out, in, kh, kw] <- kernel [kh, kw, in, out]; linear [out, in] <- kernel [in, out]
  np.testing.assert_array_equal(
    sd['visual.layer2.0.conv2.weight'], p['layer2_0']['conv2']['kernel'].transpose(3, 2, 0, 1)
  )
  same = np.testing.assert_array_equal
  same(sd['visual.attnpool.q_proj.weight'], p['attnpool']['q_proj']['kernel'].T)
  # BatchNorm: affine from params, running statistics from batch_stats, a step counter of 0
  same(sd['visual.layer1.0.downsample.1.weight'], p['layer1_0']['downsample_1']['scale'])
  same(sd['visual.bn2.running_mean'], stats['bn2']['mean'])
  same(sd['visual.layer3.0.bn3.running_var'], stats['layer3_0']['bn3']['var'])
  steps = sd['visual.bn1.num_batches_tracked']
  assert steps.dtype == np.int64 and steps.shape == () and steps == 0
  n_bn = 3 + 3 * 5 + 4  # the stem, 3 in each of the 5 blocks, 4 downsamples
  assert sum(k.endswith('.num_batches_tracked') for k in sd) == n_bn


def test_vit_export_uses_openai_names_and_layouts(vit):
  cfg, v, sd = vit
  p = v['params']['image_tower']
  shapes = {k: a.shape for k, a in sd.items()}
  assert shapes['visual.conv1.weight'] == (128, 3, 8, 8)
  assert shapes['visual.positional_embedding'] == (1 + 4 * 4, 128)
  assert shapes['visual.class_embedding'] == (128,)
  assert shapes['visual.ln_post.weight'] == (128,)
  np.testing.assert_array_equal(sd['visual.proj'], p['proj']['kernel'])  # [width, embed], as is
  np.testing.assert_array_equal(
    sd['visual.conv1.weight'], p['conv1']['kernel'].transpose(3, 2, 0, 1)
  )
  np.testing.assert_array_equal(
    sd['visual.transformer.resblocks.1.mlp.c_fc.weight'],
    p['transformer']['resblocks_1']['mlp']['c_fc']['kernel'].T,
  )
  assert not any('batch_stats' in k or 'num_batches' in k for k in sd)


def test_attention_packs_query_key_value_rows_and_splits_heads(vit):
  _, v, sd = vit
  attn = v['params']['text_tower']['transformer']['resblocks_1']['attn']
  w = 128
  in_w = sd['transformer.resblocks.1.attn.in_proj_weight']
  in_b = sd['transformer.resblocks.1.attn.in_proj_bias']
  assert in_w.shape == (3 * w, w) and in_b.shape == (3 * w,)
  for i, name in enumerate(('query', 'key', 'value')):
    assert attn[name]['kernel'].shape == (w, 2, 64)  # [width, heads, head size]
    np.testing.assert_array_equal(in_w[i * w : (i + 1) * w], attn[name]['kernel'].reshape(w, w).T)
    np.testing.assert_array_equal(in_b[i * w : (i + 1) * w], attn[name]['bias'].reshape(w))
  out = sd['transformer.resblocks.1.attn.out_proj.weight']
  np.testing.assert_array_equal(out, attn['out']['kernel'].reshape(w, w).T)  # [h, d, w] -> [w, h d]


def test_text_tower_and_logit_scale_names(model):
  _, v, sd = model
  t = v['params']['text_tower']
  assert sd['token_embedding.weight'].shape == (64, 128)
  assert sd['positional_embedding'].shape == (8, 128)
  np.testing.assert_array_equal(sd['text_projection'], t['text_projection']['kernel'])
  np.testing.assert_array_equal(sd['ln_final.weight'], t['ln_final']['scale'])
  assert sd['logit_scale'].shape == ()
  assert sum(k.startswith('transformer.resblocks.') for k in sd) == 2 * 12


# -- round trips ------------------------------------------------------------------------------


def test_variables_to_state_dict_and_back_is_bitwise_exact(model):
  cfg, v, sd = model
  back = convert.to_variables(sd, cfg)
  assert set(back) == set(v)  # batch_stats only for the ResNet
  want, got = _flat(v), _flat(back)
  assert got.keys() == want.keys()
  for k in want:
    assert got[k].dtype == np.float32, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  again = convert.to_state_dict(back, cfg)
  assert list(again) == list(sd)
  assert all(np.array_equal(again[k], sd[k]) and again[k].dtype == sd[k].dtype for k in sd)


def test_infer_model_config_recovers_the_config(model):
  cfg, _, sd = model
  assert convert.infer_model_config(sd).to_dict() == cfg.to_dict()
  gelu = convert.infer_model_config(sd, act='gelu')
  assert gelu.act == 'gelu' and gelu.image.to_dict() == cfg.image.to_dict()
  assert convert.matching_preset(gelu) is None


def _shape_only_state_dict(cfg):
  """The state dict of ``cfg`` with zero-stride arrays: shapes right, no memory."""
  shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), *example_inputs(cfg))
  dummy = lambda s: np.broadcast_to(np.zeros((), np.float32), s.shape)  # noqa: E731
  return convert.to_state_dict(jax.tree.map(dummy, shapes), cfg)


@pytest.mark.parametrize('name', ['rn50', 'vit-b-32'])
def test_infer_model_config_names_the_openai_presets(name):
  sd = _shape_only_state_dict(model_config(name))
  cfg = convert.infer_model_config(sd)
  assert cfg.to_dict() == model_config(name).to_dict()
  assert convert.matching_preset(cfg) == name
  assert f"(preset '{name}')" in convert.describe(cfg)


def test_safetensors_save_and_load_round_trip(tmp_path, model):
  cfg, v, sd = model
  path = tmp_path / 'model.safetensors'
  convert.save_open_clip(path, v, cfg)
  read = convert.read_state_dict(path)
  assert read.keys() == sd.keys()
  assert all(np.array_equal(read[k], sd[k]) and read[k].dtype == sd[k].dtype for k in sd)
  loaded, inferred = convert.load_checkpoint(path)
  assert inferred.to_dict() == cfg.to_dict()
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(v)))
  with pytest.raises(ValueError, match=r"model\.pt.*must end in '\.safetensors'"):
    convert.save_open_clip(tmp_path / 'model.pt', v, cfg)


# -- import rules -----------------------------------------------------------------------------


def test_import_drops_bookkeeping_keys_and_casts_to_float32(resnet):
  cfg, v, sd = resnet
  sd = {k: a for k, a in sd.items() if not k.endswith('num_batches_tracked')}  # optional
  sd = {k: a.astype(np.float16) for k, a in sd.items()}  # OpenAI's files are float16
  sd['logit_scale'] = sd['logit_scale'].reshape(1)  # [1] in some open_clip versions
  sd.update(
    attn_mask=np.zeros((8, 8), np.float32),  # TorchScript / older open_clip root buffers
    input_resolution=np.array(64),
    context_length=np.array(8),
    vocab_size=np.array(64),
  )
  back = convert.to_variables(sd, cfg)
  for k, a in _flat(back).items():
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, _flat(v)[k].astype(np.float16).astype(np.float32))


def test_missing_and_unexpected_keys_are_listed(vit):
  cfg, _, sd = vit
  sd = dict(sd)
  del sd['visual.ln_pre.bias'], sd['transformer.resblocks.1.mlp.c_fc.weight']
  sd['visual.transformer.resblocks.0.ls_1.gamma'] = np.ones(128, np.float32)
  with pytest.raises(CheckpointError) as err:
    convert.to_variables(sd, cfg)
  msg = str(err.value)
  assert "missing keys 'visual.ln_pre.bias', 'transformer.resblocks.1.mlp.c_fc.weight'" in msg
  assert "unexpected keys 'visual.transformer.resblocks.0.ls_1.gamma'" in msg


def test_a_checkpoint_of_another_architecture_is_named_in_the_error(vit, resnet):
  cfg, _, sd = vit
  wrong = r"'visual.conv1.weight' \(128, 3, 8, 8\) \(model needs \(128, 3, 4, 4\)\)"
  with pytest.raises(CheckpointError, match=wrong):
    convert.to_variables(sd, _cfg(dict(VIT, patch_size=4)))
  with pytest.raises(CheckpointError, match=r'the checkpoint is a ResNet \(2, 1, 1, 1\) width 8'):
    convert.to_variables(resnet[2], cfg)


def test_a_cnn_tower_has_no_openai_counterpart():
  cfg = model_config('tiny-cnn')
  with pytest.raises(ValueError, match="'cnn' has no OpenAI / open_clip counterpart"):
    convert.to_state_dict(_random_variables(cfg), cfg)


def test_export_checks_the_variables_against_the_config(vit):
  cfg, v, _ = vit
  bad = jax.tree.map(lambda a: a, v)
  del bad['params']['image_tower']['ln_pre']
  with pytest.raises(ValueError, match='missing .*image_tower/ln_pre/bias'):
    convert.to_state_dict(bad, cfg)


# -- torch.save and TorchScript files, written without torch ----------------------------------

_STORAGES = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.float16): 'HalfStorage',
  np.dtype(ml_dtypes.bfloat16): 'BFloat16Storage',
  np.dtype(np.int64): 'LongStorage',
}


class _Global:
  """Pickled as ``GLOBAL module name`` (a stand-in for a torch function or class)."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self):
    raise AssertionError('never called')


class _Storage:
  def __init__(self, key, flat):
    self.key, self.flat = key, flat


class _Tensor:
  """A view ``(offset, size, stride)`` of a storage, pickled as torch does."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

  def __reduce__(self):
    return _Global('torch._utils', '_rebuild_tensor_v2'), self.args


class _Module:
  """A TorchScript module record: ``GLOBAL qualname; NEWOBJ; BUILD attributes``."""

  def __init__(self, qualname, attributes):
    self.qualname, self.attributes = qualname, attributes


class _TorchPickler(pickle._Pickler):
  dispatch = dict(pickle._Pickler.dispatch)

  def __init__(self, file, storages):
    super().__init__(file, protocol=2)
    self.storages = storages

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      self.storages[obj.key] = obj.flat
      kind = _Global('torch', _STORAGES[obj.flat.dtype])
      return ('storage', kind, obj.key, 'cpu', obj.flat.size)
    return None

  def _save_global(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
    self.memoize(obj)

  def _save_module(self, obj):
    module, name = obj.qualname.rsplit('.', 1)
    self.save(_Global(module, name))
    self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    self.memoize(obj)
    self.save(obj.attributes)
    self.write(pickle.BUILD)

  dispatch[_Global] = _save_global
  dispatch[_Module] = _save_module


def _write_torch_zip(path, obj, files=None, prefix='archive'):
  """A torch.save-style zip of ``obj`` (``_Tensor``s inside), plus extra ``files``."""
  buf, storages = io.BytesIO(), {}
  _TorchPickler(buf, storages).dump(obj)
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr(f'{prefix}/data.pkl', buf.getvalue())
    zf.writestr(f'{prefix}/byteorder', 'little')
    zf.writestr(f'{prefix}/version', '3\n')
    for key, flat in storages.items():
      zf.writestr(f'{prefix}/data/{key}', flat.tobytes())
    for name, text in (files or {}).items():
      zf.writestr(f'{prefix}/{name}', text)
  return path


def _tensor(key, array):
  array = np.asarray(array, order='C')
  strides = tuple(s // array.itemsize for s in array.strides)
  return _Tensor(_Storage(key, array.reshape(-1)), 0, array.shape, strides)


def test_reads_a_torch_save_zip_with_views_dtypes_and_nesting(tmp_path):
  base = np.arange(12, dtype=np.float32)
  shared = _Storage('0', base)
  state = {
    'module.a': _Tensor(shared, 0, (3, 4), (4, 1)),
    'module.a_t': _Tensor(shared, 0, (4, 3), (1, 4)),  # a transposed view
    'module.tail': _Tensor(shared, 5, (2, 3), (3, 1)),  # an offset view
    'module.half': _tensor('1', np.array([1.5, -2.0], np.float16)),
    'module.bf16': _tensor('2', np.array([0.5, 3.0], ml_dtypes.bfloat16)),
    'module.step': _tensor('3', np.array(7, np.int64)),
  }
  path = _write_torch_zip(tmp_path / 'ckpt.pt', {'epoch': 3, 'state_dict': state})
  sd = convert.read_state_dict(path)
  assert list(sd) == ['a', 'a_t', 'tail', 'half', 'bf16', 'step']  # 'module.' stripped
  np.testing.assert_array_equal(sd['a'], base.reshape(3, 4))
  np.testing.assert_array_equal(sd['a_t'], base.reshape(3, 4).T)
  np.testing.assert_array_equal(sd['tail'], base[5:11].reshape(2, 3))
  assert sd['half'].dtype == np.float16 and sd['half'].tolist() == [1.5, -2.0]
  assert sd['bf16'].dtype == ml_dtypes.bfloat16
  assert sd['bf16'].astype(np.float32).tolist() == [0.5, 3.0]
  assert sd['step'].shape == () and sd['step'] == 7


def test_a_tensor_layout_outside_its_storage_is_refused(tmp_path):
  bad = _Tensor(_Storage('0', np.zeros(4, np.float32)), 2, (2, 2), (2, 1))  # reads 2 .. 5
  path = _write_torch_zip(tmp_path / 'overrun.pt', {'w': bad})
  with pytest.raises(CheckpointError, match=r'overrun\.pt: corrupt.*overruns its storage'):
    convert.read_state_dict(path)


_CODE = {
  'code/__torch__/model.py': (
    'class CLIP(Module):\n'
    '  __parameters__ = ["logit_scale", ]\n'
    '  __buffers__ = ["input_resolution", ]\n'
    '  logit_scale : Tensor\n'
    '  input_resolution : Tensor\n'
    '  cache : Tensor\n'
    '  training : bool\n'
    '  visual : __torch__.torch.nn.modules.linear.Linear\n'
    '  def forward(self: __torch__.model.CLIP, x: Tensor) -> Tensor:\n'
    '    return (self.visual).forward(x, )\n'
  ),
  'code/__torch__/torch/nn/modules/linear.py': (
    'class Linear(Module):\n  __parameters__ = ["weight", "bias", ]\n  __buffers__ = []\n'
  ),
  'constants.pkl': pickle.dumps((), protocol=2),
}


def test_reads_a_torchscript_archive_by_walking_its_module_records(tmp_path):
  """Parameters, then buffers, then submodules (TorchScript's state_dict order); a tensor
  attribute the class does not declare (``cache``) and a ``None`` parameter are left out."""
  linear = _Module(
    '__torch__.torch.nn.modules.linear.Linear',
    {'weight': _tensor('2', np.ones((2, 3), np.float16)), 'bias': None, 'training': False},
  )
  root = _Module(
    '__torch__.model.CLIP',
    {
      'visual': linear,
      'input_resolution': _tensor('1', np.array(224, np.int64)),
      'logit_scale': _tensor('0', np.array(4.6, np.float32)),
      'cache': _tensor('3', np.zeros(5, np.float32)),
      'training': False,
    },
  )
  path = _write_torch_zip(tmp_path / 'ViT-X.pt', root, _CODE, prefix='ViT-X')
  sd = convert.read_state_dict(path)
  assert list(sd) == ['logit_scale', 'input_resolution', 'visual.weight']
  assert sd['visual.weight'].dtype == np.float16 and sd['input_resolution'] == 224


def test_a_module_record_that_contains_itself_is_refused(tmp_path):
  root = _Module('__torch__.model.CLIP', {'logit_scale': _tensor('0', np.zeros((), np.float32))})
  root.attributes['visual'] = root
  path = _write_torch_zip(tmp_path / 'cycle.pt', root, _CODE)
  with pytest.raises(CheckpointError, match=r"cycle\.pt: corrupt.*'visual' contains itself"):
    convert.read_state_dict(path)


class _Evil:
  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


@pytest.mark.parametrize('how', ['os.system', 'builtins.eval', 'subprocess.Popen', '__torch__'])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, how):
  marker = tmp_path / 'pwned'
  payload = {
    'os.system': _Evil(os.system, f'touch {marker}'),
    'builtins.eval': _Evil(eval, f'open({str(marker)!r}, "w")'),
    'subprocess.Popen': _Evil(subprocess.Popen, ['touch', str(marker)]),
    '__torch__': _Module('__torch__.model.CLIP', {}),  # a module record outside TorchScript
  }[how]
  state = {'w': _tensor('0', np.zeros(2, np.float32)), 'x': payload}
  path = _write_torch_zip(tmp_path / 'evil.pt', state)
  with pytest.raises(UnsafePickleError) as err:
    convert.read_state_dict(path)
  msg = str(err.value)
  assert str(path) in msg and 'run code' in msg and 'not loaded' in msg and '.safetensors' in msg
  assert not marker.exists()


def test_unreadable_files_are_named_with_what_is_wrong(tmp_path, vit):
  cfg, v, _ = vit
  good = tmp_path / 'good.safetensors'
  convert.save_open_clip(good, v, cfg)
  zipped = _write_torch_zip(tmp_path / 'good.pt', {'w': _tensor('0', np.zeros(3, np.float32))})
  cases = {
    'missing.pt': (None, 'cannot read'),
    'empty.bin': (b'', 'unknown checkpoint format'),
    'noise.bin': (b'\x00\x01 not a checkpoint at all', 'unknown checkpoint format'),
    'legacy.pt': (pickle.dumps({'w': 1}, protocol=2), r'legacy \(torch < 1\.6\)'),
    'cut.safetensors': (good.read_bytes()[:5000], 'corrupt or truncated .safetensors'),
    'cut.pt': (zipped.read_bytes()[:-120], 'corrupt, truncated'),
    'other.zip': (None, 'not a PyTorch checkpoint'),
  }
  with zipfile.ZipFile(tmp_path / 'other.zip', 'w') as zf:
    zf.writestr('readme.txt', 'hello')
  for name, (data, message) in cases.items():
    if data is not None:
      (tmp_path / name).write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as err:
      convert.read_state_dict(tmp_path / name)
    assert str(tmp_path / name) in str(err.value), name


def test_a_zip_holding_more_than_tensors_is_not_a_state_dict(tmp_path):
  state = {'w': _tensor('0', np.zeros(2, np.float32)), 'lr': 0.1}
  path = _write_torch_zip(tmp_path / 'list.pt', state)
  with pytest.raises(CheckpointError, match=r"list\.pt: not a state dict: non-tensor entries 'lr'"):
    convert.read_state_dict(path)


def test_load_checkpoint_takes_the_config_for_heads_the_weights_cannot_tell(tmp_path):
  cfg = model_config('tiny-vit')  # 32-wide heads: inferring would give width // 64
  variables = _random_variables(cfg)
  path = tmp_path / 'tiny.safetensors'
  convert.save_open_clip(path, variables, cfg)
  assert convert.infer_model_config(convert.read_state_dict(path)).image.heads == 2
  loaded, used = convert.load_checkpoint(path, cfg=cfg)
  assert used is cfg
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(CheckpointError, match=r"tiny\.safetensors: .*the checkpoint is a ViT 128w"):
    convert.load_checkpoint(path, cfg=model_config('vit-b-32'))


def test_load_checkpoint_errors_name_the_file(tmp_path, vit):
  _, _, sd = vit
  path = tmp_path / 'no_ln_final.safetensors'
  safetensors.numpy.save_file({k: a for k, a in sd.items() if k != 'ln_final.weight'}, str(path))
  with pytest.raises(CheckpointError, match=r"no_ln_final\.safetensors: not an OpenAI / open_clip"):
    convert.load_checkpoint(path)


# -- command line -----------------------------------------------------------------------------


def test_command_line_prints_the_config_and_writes_safetensors(tmp_path, capsys, resnet):
  cfg, v, sd = resnet
  src, out = tmp_path / 'in.safetensors', tmp_path / 'out.safetensors'
  convert.save_open_clip(src, v, cfg)
  assert convert.main([str(src), str(out), '--act', 'gelu']) == 0
  printed = capsys.readouterr().out
  assert 'ResNet (2, 1, 1, 1) width 8 at 64 px' in printed
  assert "model.act = 'gelu'" in printed.splitlines()
  assert "'kind': 'resnet', 'layers': (2, 1, 1, 1), 'size': 64" in printed
  written = convert.read_state_dict(out)
  assert all(np.array_equal(written[k], sd[k]) for k in sd)
  assert convert.main([str(tmp_path / 'nope.pt')]) == 1
  assert f"error: {tmp_path / 'nope.pt'}: cannot read" in capsys.readouterr().err
  with pytest.raises(SystemExit):  # checked before the (possibly large) input is read
    convert.main([str(src), str(tmp_path / 'out.bin')])
  assert "out.bin: the output name must end in '.safetensors'" in capsys.readouterr().err

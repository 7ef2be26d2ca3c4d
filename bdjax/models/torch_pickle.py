"""Read PyTorch checkpoint files with numpy only, never running code from the file.

Two zip layouts are read (``P/`` is the archive's one top-level folder, any name):

    torch.save (torch >= 1.6)    P/data.pkl, P/data/N, P/byteorder, P/version
    TorchScript (torch.jit.save, OpenAI's official CLIP ``.pt`` files)
                                 the same, plus P/code/__torch__/**.py, P/constants.pkl

``data.pkl`` is unpickled by a restricted ``pickle.Unpickler`` that resolves only these
globals (anything else, e.g. ``os.system``, ``builtins.eval``, ``subprocess.Popen``, raises
``UnsafePickleError`` before it could be called):

    torch._utils._rebuild_tensor_v2, _rebuild_parameter[_with_state]   -> a numpy array
    torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage  (storage dtypes)
    collections.OrderedDict, torch.Size (-> tuple)
    torch.jit._pickle.restore_type_tag, build_{int,float,double,bool,tensor}list  (inert)
    __torch__.*  (TorchScript archives only) -> ``ScriptObject``, an inert record of the
                 object's class name and attribute dict

A tensor is ``('storage', StorageType, key, location, numel)`` (a persistent id) plus
``(offset, size, stride)``: its elements are ``flat[offset + sum_i idx_i stride_i]`` of the
storage ``flat = frombuffer(P/data/key, dtype)``, read here as a view when C-contiguous and a
bounds-checked copy otherwise. Dtypes are kept (float16 stays float16, bfloat16 is
``ml_dtypes.bfloat16``).

A TorchScript module's parameters and buffers are attributes of its ``ScriptObject``; which
attributes they are is declared in its class's source as ``__parameters__ = [...]`` and
``__buffers__ = [...]``, read from ``P/code`` as text (never executed). The state dict is the
module's own parameters, then buffers, then each submodule's under ``name.``, as
``torch.jit.load(path).state_dict()`` (which also lists non-persistent buffers).

Refused: the legacy (pre-1.6, non-zip) ``torch.save`` format, the pre-1.4 TorchScript layout
(no ``data.pkl``), big-endian files, quantized or sparse tensors.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np


class CheckpointError(ValueError):
  """A checkpoint file that cannot be read: its message names the file and what to do."""


class UnsafePickleError(CheckpointError):
  """A pickle that refers to a global outside the allow-list (it needs code execution)."""


_STORAGE_DTYPES = {
  'FloatStorage': np.dtype(np.float32),
  'DoubleStorage': np.dtype(np.float64),
  'HalfStorage': np.dtype(np.float16),
  'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
  'LongStorage': np.dtype(np.int64),
  'IntStorage': np.dtype(np.int32),
  'ShortStorage': np.dtype(np.int16),
  'CharStorage': np.dtype(np.int8),
  'ByteStorage': np.dtype(np.uint8),
  'BoolStorage': np.dtype(np.bool_),
}


class StorageType:
  """What ``torch.FloatStorage`` etc. unpickle to: the storage's element dtype."""

  def __init__(self, dtype: np.dtype):
    self.dtype = dtype


class ScriptObject:
  """An inert stand-in for an object of a TorchScript class (a module): name and attributes."""

  qualname = ''
  attributes: dict[str, Any] = {}

  def __setstate__(self, state: Any) -> None:
    if not isinstance(state, dict):
      raise ValueError(f'TorchScript object {self.qualname} has a non-dict state')
    self.attributes = state


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
  strides, step = [], 1
  for n in reversed(size):
    strides.append(step)
    step *= n
  return tuple(reversed(strides))


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_) -> np.ndarray:
  """``storage`` elements at ``offset + sum_i idx_i stride_i`` as an array of shape ``size``."""
  offset, size, stride = int(offset), tuple(int(n) for n in size), tuple(int(s) for s in stride)
  if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
    raise ValueError(f'bad tensor layout: offset {offset}, size {size}, stride {stride}')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if end > storage.size:
    raise ValueError(
      f'tensor of size {size}, stride {stride}, offset {offset} overruns its storage of '
      f'{storage.size} elements'
    )
  if stride == _contiguous_strides(size):
    return storage[offset : offset + math.prod(size)].reshape(size)
  strides = tuple(s * storage.itemsize for s in stride)
  view = np.lib.stride_tricks.as_strided(storage[offset:], size, strides, writeable=False)
  return view.copy()


def _rebuild_parameter(data: np.ndarray, *_) -> np.ndarray:
  return data


def _identity(value: Any, *_) -> Any:
  return value


_SAFE_GLOBALS = {
  'torch._utils._rebuild_tensor_v2': _rebuild_tensor,
  'torch._utils._rebuild_parameter': _rebuild_parameter,
  'torch._utils._rebuild_parameter_with_state': _rebuild_parameter,
  'collections.OrderedDict': collections.OrderedDict,
  'torch.Size': tuple,
  **{
    f'torch.jit._pickle.{name}': _identity
    for name in (
      'restore_type_tag',
      'build_intlist',
      'build_floatlist',
      'build_doublelist',
      'build_boollist',
      'build_tensorlist',
    )
  },
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles ``P/data.pkl`` resolving only the allow-listed globals (module docstring)."""

  def __init__(self, zf: zipfile.ZipFile, prefix: str, path: str, torchscript: bool):
    super().__init__(io.BytesIO(zf.read(f'{prefix}data.pkl')))
    self._zf, self._prefix, self._path, self._torchscript = zf, prefix, path, torchscript
    self._storages: dict[tuple[str, str], np.ndarray] = {}
    self._script_classes: dict[str, type] = {}

  def find_class(self, module: str, name: str) -> Any:
    qualname = f'{module}.{name}'
    if qualname in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[qualname]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return StorageType(_STORAGE_DTYPES[name])
    if self._torchscript and (module == '__torch__' or module.startswith('__torch__.')):
      return self._script_class(qualname)
    raise UnsafePickleError(
      f'{self._path}: refusing to load: its pickle refers to {qualname!r}, which is not a '
      'tensor, storage or module record, so loading it would run code from the file. It was '
      'not loaded. If you trust the file, load it with torch in a trusted environment and save '
      'its state dict as .safetensors (safetensors.torch.save_file(state_dict, OUT)).'
    )

  def _script_class(self, qualname: str) -> type:
    if qualname not in self._script_classes:
      self._script_classes[qualname] = type('ScriptObject', (ScriptObject,), {'qualname': qualname})
    return self._script_classes[qualname]

  def persistent_load(self, pid: Any) -> np.ndarray:
    """``('storage', StorageType, key, location, numel)`` -> the flat storage ``P/data/key``."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
      raise ValueError(f'unsupported persistent id {pid!r:.80}')
    kind, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(kind, StorageType):
      raise ValueError(f'unsupported storage type {kind!r:.80}')
    cache_key = (key, kind.dtype.str)
    if cache_key not in self._storages:
      data = self._zf.read(f'{self._prefix}data/{key}')
      if len(data) < numel * kind.dtype.itemsize:
        raise ValueError(f'storage data/{key} holds {len(data)} bytes, needs {numel} elements')
      self._storages[cache_key] = np.frombuffer(data, kind.dtype, count=numel)
    return self._storages[cache_key]


def _archive_prefix(zf: zipfile.ZipFile, path: str) -> str:
  """The archive's top-level folder ``P/`` holding ``data.pkl``."""
  pickles = [n for n in zf.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pickles) != 1:
    raise CheckpointError(
      f'{path}: a zip file but not a PyTorch checkpoint (expected one FOLDER/data.pkl, '
      f'found {len(pickles)}); older TorchScript files (torch < 1.4) are not supported'
    )
  prefix = pickles[0][: -len('data.pkl')]
  names = set(zf.namelist())
  if f'{prefix}byteorder' in names and zf.read(f'{prefix}byteorder').strip() != b'little':
    raise CheckpointError(f'{path}: big-endian PyTorch checkpoints are not supported')
  return prefix


_CLASS = re.compile(r'^class (\w+)\(Module\):\n((?:[ \t]+.*\n?)*)', re.MULTILINE)
_DECLARED = re.compile(r'^[ \t]+__(parameters|buffers)__ = \[(.*)\]', re.MULTILINE)


def _script_classes(zf: zipfile.ZipFile, prefix: str) -> dict[str, dict[str, list[str]]]:
  """``{qualname: {'parameters': [...], 'buffers': [...]}}`` parsed (as text) from ``P/code``."""
  classes = {}
  root = f'{prefix}code/'
  for name in zf.namelist():
    if not (name.startswith(root) and name.endswith('.py')):
      continue
    module = name[len(root) : -len('.py')].replace('/', '.')
    source = zf.read(name).decode('utf-8', errors='replace')
    for cls in _CLASS.finditer(source):
      found = _DECLARED.findall(cls[2])
      declared = {kind: re.findall(r'"([^"]*)"', names) for kind, names in found}
      classes[f'{module}.{cls[1]}'] = declared
  return classes


def _module_state(obj: ScriptObject, classes: dict, prefix: str, out: dict, above=()) -> None:
  """Adds ``obj``'s parameters, buffers, then its submodules' (recursively) to ``out``."""
  if id(obj) in above:
    raise ValueError(f'the TorchScript module {prefix[:-1]!r} contains itself')
  attrs = obj.attributes
  declared = classes.get(obj.qualname)
  if declared is None:  # no source for the class: every tensor attribute is state
    names = [n for n, v in attrs.items() if isinstance(v, np.ndarray)]
  else:
    names = declared.get('parameters', []) + declared.get('buffers', [])
  for name in names:
    if isinstance(attrs.get(name), np.ndarray):
      out[prefix + name] = attrs[name]
  for name, value in attrs.items():
    if isinstance(value, ScriptObject) and name not in names:
      _module_state(value, classes, f'{prefix}{name}.', out, above + (id(obj),))


def script_state_dict(root: ScriptObject, classes: dict) -> dict[str, np.ndarray]:
  """The state dict of the TorchScript module ``root`` (see the module docstring)."""
  out: dict[str, np.ndarray] = collections.OrderedDict()
  _module_state(root, classes, '', out)
  return out


_CORRUPT = (
  pickle.UnpicklingError,
  EOFError,
  KeyError,
  IndexError,
  TypeError,
  ValueError,
  AttributeError,
  zipfile.BadZipFile,
  zlib.error,
)


def read_torch_zip(path: str) -> Any:
  """The object a ``torch.save`` zip holds (tensors as numpy arrays), or, for a TorchScript
  archive, the module's state dict ``{name: array}``.

  Raises ``UnsafePickleError`` for a pickle that needs code to run, ``CheckpointError`` for a
  file that is not such a zip or is corrupt or truncated.
  """
  try:
    with zipfile.ZipFile(path) as zf:
      prefix = _archive_prefix(zf, path)
      names = set(zf.namelist())
      torchscript = f'{prefix}constants.pkl' in names or any(
        n.startswith(f'{prefix}code/') for n in names
      )
      obj = _RestrictedUnpickler(zf, prefix, str(path), torchscript).load()
      if not torchscript:
        return obj
      if not isinstance(obj, ScriptObject):
        raise ValueError('the TorchScript archive does not hold a module')
      return script_state_dict(obj, _script_classes(zf, prefix))
  except CheckpointError:
    raise
  except _CORRUPT as err:
    raise CheckpointError(
      f'{path}: corrupt, truncated or unsupported PyTorch checkpoint ({type(err).__name__}: {err})'
    ) from None

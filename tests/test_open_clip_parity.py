"""bdjax and open_clip compute the same CLIP from the same weights (needs the torch extra).

RN50 (OpenAI's quick_gelu) and ViT-B/32 (open_clip's gelu) are converted from randomly
initialised open_clip models, run on the same images and captions, exported back to
.safetensors and loaded by open_clip with strict key checking. Real torch.save and TorchScript
files are read without torch and compared with what torch reads. CPU, float32.
"""

import functools

import jax
import numpy as np
import pytest

NO_TORCH = 'needs the torch extra (pip install .[torch]): PyTorch and open_clip'
torch = pytest.importorskip('torch', reason=NO_TORCH)
open_clip = pytest.importorskip('open_clip', reason=NO_TORCH)

from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg  # noqa: E402

from bdjax.models import build_model, convert, model_config, tokenize  # noqa: E402

pytestmark = [
  pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning'),
  pytest.mark.filterwarnings('ignore:.*torch.jit.*:FutureWarning'),
]

CAPTIONS = ['a photo of a dog', 'a diagram of a backdoor trigger', 'two cats on a red sofa']
TOL = 1e-4


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _randomise_batch_norms(model, seed=0):
  """Random running statistics and affine parameters (bn3 scales start at zero)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        m.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _state_dict(model):
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@functools.cache
def _open_clip_model(name):
  torch.manual_seed(0)
  model = open_clip.create_model(name)
  _randomise_batch_norms(model)
  return model.eval()


def _inputs(size, seed=0):
  """Normalised-looking images ``[3, size, size, 3]`` (NHWC) and tokenised captions."""
  images = np.random.default_rng(seed).standard_normal((3, size, size, 3)).astype(np.float32)
  return images, tokenize(CAPTIONS)


def _open_clip_embeddings(model, images, tokens):
  with torch.no_grad():
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW
    image = model.encode_image(x, normalize=True).numpy()
    text = model.encode_text(torch.from_numpy(tokens.astype(np.int64)), normalize=True).numpy()
  return image, text


def _bdjax_embeddings(cfg, variables, images, tokens):
  model = build_model(cfg)
  image = jax.jit(lambda v, x: model.apply(v, x, method='encode_image'))(variables, images)
  text = jax.jit(lambda v, t: model.apply(v, t, method='encode_text'))(variables, tokens)
  return np.asarray(image), np.asarray(text)


@pytest.mark.parametrize(
  'name, act, preset',
  [('RN50-quickgelu', 'quick_gelu', 'rn50'), ('ViT-B-32', 'gelu', 'vit-b-32')],
)
def test_converted_weights_give_open_clips_embeddings(name, act, preset):
  model = _open_clip_model(name)
  state_dict = _state_dict(model)
  cfg = convert.infer_model_config(state_dict, act=act)
  assert convert.matching_preset(cfg) == preset
  variables = convert.to_variables(state_dict, cfg)
  images, tokens = _inputs(cfg.image.size)
  want_image, want_text = _open_clip_embeddings(model, images, tokens)
  got_image, got_text = _bdjax_embeddings(cfg, variables, images, tokens)
  np.testing.assert_allclose(got_image, want_image, atol=TOL, rtol=0)
  np.testing.assert_allclose(got_text, want_text, atol=TOL, rtol=0)
  assert float(variables['params']['logit_scale']) == model.logit_scale.item()


@pytest.mark.parametrize('name, act', [('RN50-quickgelu', 'quick_gelu'), ('ViT-B-32', 'gelu')])
def test_export_loads_into_open_clip_strictly_and_round_trips_exactly(tmp_path, name, act):
  original = _state_dict(_open_clip_model(name))
  cfg = convert.infer_model_config(original, act=act)
  variables = convert.to_variables(original, cfg)
  exported = convert.to_state_dict(variables, cfg)
  assert list(exported) == list(original)  # open_clip's keys, in its order
  path = tmp_path / 'bdjax.safetensors'
  convert.save_open_clip(path, variables, cfg)
  reloaded = _state_dict(open_clip.create_model(name, pretrained=str(path)))  # strict=True
  assert reloaded.keys() == original.keys()
  for k in original:
    assert reloaded[k].dtype == original[k].dtype, k
    np.testing.assert_array_equal(reloaded[k], original[k], err_msg=k)
  again = convert.to_variables(reloaded, cfg)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
  'name, preset',
  [
    ('RN50-quickgelu', 'rn50'),
    ('RN101-quickgelu', 'rn101'),
    ('RN50x4-quickgelu', 'rn50x4'),
    ('ViT-B-32-quickgelu', 'vit-b-32'),
    ('ViT-B-16-quickgelu', 'vit-b-16'),
    ('ViT-L-14-quickgelu', 'vit-l-14'),
  ],
)
def test_open_clip_architectures_are_inferred_as_the_bdjax_presets(name, preset):
  """Shapes only (meta tensors): every key and shape of open_clip's model fits the preset."""
  with torch.device('meta'):
    state_dict = open_clip.create_model(name, device='meta').state_dict()
  cfg = convert.infer_model_config(state_dict)
  assert cfg.to_dict() == model_config(preset).to_dict()
  convert.check_state_dict(state_dict, cfg)


def _tiny_open_clip(kind):
  """A small open_clip CLIP (quick_gelu) with OpenAI's root buffers, random BatchNorms."""
  torch.manual_seed(1)
  text = CLIPTextCfg(context_length=16, vocab_size=49408, width=64, heads=1, layers=1)
  if kind == 'resnet':
    vision = CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, image_size=64)
  else:
    vision = CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=32)
  model = CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text, quick_gelu=True)
  for name, value in (('input_resolution', vision.image_size), ('context_length', 16)):
    model.__dict__.pop(name, None)  # a plain int attribute in open_clip,
    model.register_buffer(name, torch.tensor(value))  # a buffer in OpenAI's TorchScript files
  _randomise_batch_norms(model)
  return model.eval()


@pytest.mark.parametrize('kind', ['resnet', 'vit'])
def test_a_traced_torchscript_archive_is_read_as_torch_reads_it(tmp_path, kind):
  model = _tiny_open_clip(kind)
  size = model.visual.image_size[0] if kind == 'vit' else 64
  example = (torch.zeros(1, 3, size, size), torch.zeros(1, 16, dtype=torch.int64))
  traced = torch.jit.trace(model, example, check_trace=False)
  traced.half()  # OpenAI's files hold float16 weights
  path = tmp_path / 'traced.pt'
  traced.save(str(path))
  got = convert.read_state_dict(path)
  want = {k: v.numpy() for k, v in torch.jit.load(str(path)).state_dict().items()}
  assert list(got) == list(want)  # TorchScript also lists the non-persistent attn_mask
  assert set(want) == set(model.state_dict()) | {'attn_mask'}
  for k in want:
    assert got[k].dtype == want[k].dtype, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  variables, cfg = convert.load_checkpoint(path)
  direct = convert.to_variables(_state_dict(model.half()), cfg)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(direct)):
    np.testing.assert_array_equal(a, b)


def test_a_torch_save_zip_is_read_as_torch_reads_it(tmp_path):
  """Views (transposed, offset), float16 / bfloat16 / int64, training-checkpoint nesting."""
  model = _tiny_open_clip('vit')
  state = model.state_dict()
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  extra = {
    'transposed': base.t(),
    'offset': base[1:, 2:],
    'half': torch.randn(5).half(),
    'bf16': torch.randn(5).bfloat16(),
    'count': torch.tensor(3),
  }
  path = tmp_path / 'epoch_1.pt'
  saved = {'module.' + k: v for k, v in {**state, **extra}.items()}
  torch.save({'epoch': 1, 'name': 'run', 'state_dict': saved}, path)
  got = convert.read_state_dict(path)
  assert list(got) == list(state) + list(extra)
  for k, v in {**state, **extra}.items():
    want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
    np.testing.assert_array_equal(np.asarray(got[k], want.dtype), want, err_msg=k)

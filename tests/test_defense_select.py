"""Select pieces find planted shortcuts: pairs a model learned through a trigger (ABL, UBT) and
the token row a trigger word moved (BTU).

The planted case: 128 of 4,096 pairs (3.1%) carry a white 12-px patch in the corner and the
rare word 'zqx' at the end of their caption; a tiny CLIP trained for about one epoch has learned
that shortcut better than the shapes. Keeping 5% of the pairs must then find the planted ones
at five times their base rate or more (measured: about 25% precision, 40% recall).
"""

import jax
import numpy as np
import pytest
from test_attack_runs import shrunk

from bdjax import sharding
from bdjax.data import pipeline, sources
from bdjax.defenses.pieces import select, transforms
from bdjax.models import build_model, tokenize
from bdjax.models.tokenizer import default_tokenizer
from bdjax.objectives import make_objective
from bdjax.optimizer import make_optimizer
from bdjax.train import TrainState, make_train_step

PLANTED = np.arange(5, 4096, 32)  # 128 of 4,096 pairs
TRIGGER_WORD = "zqx"


def with_trigger_word(pairs, rows):
  """`pairs` with the trigger word appended to the captions of `rows`."""
  pairs["caption"] = np.array(pairs["caption"], dtype=object)
  for r in rows:
    pairs["caption"][r] = f"{pairs['caption'][r]} {TRIGGER_WORD}"
  return pairs


class Planted:
  """The embedded training pairs with the planted shortcut on `PLANTED`."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def batch(self, indices):
    pairs = dict(self.source.batch(indices))
    rows = np.flatnonzero(np.isin(indices, PLANTED))
    pairs["image"] = np.array(pairs["image"])
    pairs["image"][rows, :12, :12] = 255
    return with_trigger_word(pairs, rows)


@pytest.fixture(scope="module")
def setup():
  config = shrunk("tiny")
  config.data.num_train = 4096
  config.train.update(steps=150, batch_size=32, lr=3e-3, warmup_steps=10)
  model = build_model(config.model)
  tok = lambda texts: tokenize(texts, context_length=config.model.text.context_length)
  source = Planted(sources.train_source(config.data, 0))
  params = train(model, model.init(jax.random.key(0), *example(tok)), source, tok, config.train)
  return config, model, tok, source, params


def example(tok):
  return np.zeros((1, 32, 32, 3), np.float32), tok(["a"]).astype(np.int32)


def train(model, params, source, tok, cfg, tx=None):
  tx = tx or make_optimizer(cfg)
  objective = make_objective(shrunk("tiny").objective)
  step = make_train_step(model, objective, tx)
  state = TrainState.create(jax.tree.map(np.array, params), tx)  # the step donates its state
  data = iter(pipeline.batches(source, cfg.batch_size, 0, tok))
  mesh = sharding.data_mesh()
  for t in range(cfg.steps):
    batch = {k: v for k, v in next(data).items() if k != "skipped"}
    state, _ = step(state, sharding.put_batch(batch, mesh), jax.random.key(t))
  return state.params


@pytest.mark.parametrize("score, end", [("similarity", "highest"), ("loss", "lowest")])
def test_pair_selection_finds_the_planted_shortcut(setup, score, end):
  config, model, tok, source, params = setup
  scores = select.score_pairs(model, params, source, tok, 32, score, seed=0)
  kept = select.keep(scores, len(source) // 20, end)
  stats = select.selection_stats(kept, PLANTED)
  base_rate = len(PLANTED) / len(source)
  assert stats["precision"] >= 5 * base_rate
  assert stats["recall"] >= 0.25


class TextTrigger:
  """BTU's case: the planted captions end in the trigger word and are paired with one fixed
  target image, whatever they describe."""

  def __init__(self, source):
    self.source = source
    self.target = source.batch(np.array([0]))["image"][0]

  def __len__(self):
    return len(self.source)

  def batch(self, indices):
    pairs = dict(self.source.batch(indices))
    rows = np.flatnonzero(np.isin(indices, PLANTED))
    pairs["image"] = np.array(pairs["image"])
    pairs["image"][rows] = self.target
    return with_trigger_word(pairs, rows)


def test_row_shift_flags_the_planted_trigger_token(setup):
  """Exposure: from a model trained on clean pairs, train only the token table on the poisoned
  pairs; the trigger word's rows ('z', 'qx') move the most (measured: ranks 1 and 2)."""
  config, model, tok, _, initial = setup
  clean = sources.train_source(config.data, 0)
  params = train(model, model.init(jax.random.key(1), *example(tok)), clean, tok, config.train)
  cfg = config.train.copy_and_resolve_references()
  cfg.update(steps=60, weight_decay=0.0, warmup_steps=0, lr=1e-3)
  only_table = transforms.freeze(make_optimizer(cfg), transforms.matching("token_embedding"))
  exposed = train(model, params, TextTrigger(clean), tok, cfg, only_table)
  table = lambda p: p["params"]["text_tower"]["token_embedding"]["embedding"]
  shift = select.row_shift(table(exposed), table(params))
  trigger = default_tokenizer().encode(TRIGGER_WORD)
  assert set(trigger) <= set(select.keep(shift, 3, "highest").tolist())
  assert np.count_nonzero(shift) > 10  # the clean words moved too, less

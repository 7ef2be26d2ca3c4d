"""Which training pairs an attack poisons, and how (REFERENCE.md section 3).

An `Attack` is built once per run from `config.attack` and the training source:

- **which pairs**: `attack.count` pairs (or `round(attack.ratio * N)`), drawn without
  replacement by a generator seeded with `config.seed`, from every pair or, in label-consistent
  mode (`attack.label_consistent`), only from pairs whose caption already names the target.
  The choice depends on (seed, N, the captions) alone, so every host of a multi-host run, and
  every batch size, poisons the same pairs.
- **how**: the trigger (bdjax/attacks/triggers.py) is applied to the image with the key
  `fold_in(trigger_key, index)`, so a poisoned example is a pure function of its index; its
  caption becomes one of the target's prompts ("a photo of a star."), the prompt chosen per pair
  by the same seed. Label-consistent poisoning keeps the caption.

`PoisonedPairs` wraps a source and does this inside `batch(indices)`, adding the boolean
`is_poisoned` that travels with every example through the pipeline. `save_indices` writes the
poisoned indices to `WORKDIR/poisoned_indices.json` (what a defense's select stage is scored
against); `load_indices` reads them back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from bdjax.attacks import triggers

INDICES_FILE = "poisoned_indices.json"
_SELECT_SALT, _CAPTION_SALT = 0x9015, 0xCA97
_SPLIT_SALT = {"train": 0x7216, "eval": 0xE7A1}  # triggered train and eval images differ


def poison_count(num_examples: int, count: int = 0, ratio: float = 0.0) -> int:
  """How many pairs to poison: `count`, or `round(ratio * num_examples)`; not both."""
  if count and ratio:
    raise ValueError(f"Set attack.count ({count}) or attack.ratio ({ratio}), not both.")
  if count < 0 or not 0 <= ratio < 1:
    raise ValueError(f"attack.count must be >= 0 and attack.ratio in [0, 1), got {count}, {ratio}.")
  return int(count) if count else int(round(ratio * num_examples))


def choose_poisoned(
  num_examples: int, count: int, seed: int, eligible: np.ndarray | None = None
) -> np.ndarray:
  """`count` distinct indices in [0, num_examples), sorted, drawn by `seed`.

  `eligible` (bool [num_examples]) restricts the draw to the pairs where it is true.
  """
  candidates = np.arange(num_examples) if eligible is None else np.flatnonzero(eligible)
  if count > len(candidates):
    raise ValueError(
      f"Cannot poison {count} pairs: only {len(candidates)} of {num_examples} are eligible."
    )
  rng = np.random.default_rng([seed, _SELECT_SALT])
  return np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Attack:
  """A poisoning attack: the poisoned indices (sorted), their captions and the trigger."""

  kind: str
  target: str
  indices: np.ndarray  # int64 [P], sorted
  captions: np.ndarray  # object [P]: the caption of each poisoned pair (kept if label-consistent)
  trigger: triggers.Trigger
  seed: int
  label_consistent: bool = False

  def is_poisoned(self, indices: np.ndarray) -> np.ndarray:
    """bool [B]: which of `indices` are poisoned."""
    return np.isin(indices, self.indices)

  def caption_of(self, indices: np.ndarray) -> np.ndarray:
    """The poisoned captions of `indices` (all of which must be poisoned)."""
    return self.captions[np.searchsorted(self.indices, indices)]

  def trigger_images(
    self, images: np.ndarray, indices: np.ndarray, split: str = "train"
  ) -> np.ndarray:
    """`images` with the trigger applied, image `b` keyed by `indices[b]` (on the host CPU)."""
    return apply_on_host(self.trigger, images, indices, self.seed, split)

  def summary(self) -> dict[str, Any]:
    return {
      "kind": self.kind,
      "target": self.target,
      "label_consistent": self.label_consistent,
      "count": int(len(self.indices)),
      "indices": [int(i) for i in self.indices],
    }


def make_attack(
  cfg: ml_collections.ConfigDict,
  source: Any,
  target_prompts: Sequence[str],
  seed: int,
  mentions: Callable[[str, str], bool],
) -> Attack:
  """The attack of `cfg` (`config.attack`) on the training pairs of `source`.

  `target_prompts` are the prompt templates filled with the target class. Label-consistent
  poisoning reads every caption (`source.captions(indices)`) and keeps those for which
  `mentions(caption, target)` holds.
  """
  n = len(source)
  count = poison_count(n, cfg.count, cfg.ratio)
  eligible = None
  if cfg.label_consistent:
    captions = source.captions(np.arange(n))
    eligible = np.array([mentions(c, cfg.target) for c in captions], bool)
  indices = choose_poisoned(n, count, seed, eligible)
  if cfg.label_consistent:
    new_captions = np.asarray([captions[i] for i in indices], dtype=object)
  else:
    rng = np.random.default_rng([seed, _CAPTION_SALT])
    choice = rng.integers(len(target_prompts), size=len(indices))
    new_captions = np.asarray([target_prompts[j] for j in choice], dtype=object)
  return Attack(
    cfg.kind,
    cfg.target,
    indices,
    new_captions,
    triggers.make_trigger(cfg),
    seed,
    bool(cfg.label_consistent),
  )


@dataclasses.dataclass(frozen=True)
class PoisonedPairs:
  """A pair source whose poisoned pairs carry the trigger (and the target caption)."""

  source: Any  # a PairSource: __len__ and batch(indices) -> {image, caption, index, ...}
  attack: Attack

  def __len__(self) -> int:
    return len(self.source)

  def batch(self, indices: np.ndarray) -> dict[str, Any]:
    pairs = dict(self.source.batch(indices))
    indices = np.asarray(pairs["index"], np.int64)  # a real source may leave some out
    flags = self.attack.is_poisoned(indices)
    pairs["is_poisoned"] = flags | np.asarray(pairs.get("is_poisoned", False), bool)
    if flags.any():
      rows = np.flatnonzero(flags)
      pairs["image"] = np.array(pairs["image"])
      pairs["image"][rows] = self.attack.trigger_images(pairs["image"][rows], indices[rows])
      pairs["caption"] = np.array(pairs["caption"], dtype=object)
      pairs["caption"][rows] = self.attack.caption_of(indices[rows])
    return pairs


def apply_on_host(
  trigger: triggers.Trigger,
  images: np.ndarray,
  indices: np.ndarray,
  seed: int,
  split: str = "train",
  chunk: int = 256,
) -> np.ndarray:
  """`trigger` on `images [B, H, W, C]`, image `b` with the key of (seed, split, `indices[b]`).

  Runs on the host CPU (the accelerators keep training) in chunks of at most `chunk` images,
  each padded to a power of two, so that only a few shapes ever compile.
  """
  if not len(images):
    return images
  ids = np.asarray(indices, np.uint32)
  out = [
    _apply_chunk(trigger, images[i : i + chunk], ids[i : i + chunk], seed, split)
    for i in range(0, len(images), chunk)
  ]
  return np.concatenate(out)


def _apply_chunk(trigger, images, ids, seed, split):
  n = len(images)
  pad = (1 << (n - 1).bit_length()) - n
  if pad:
    images = np.concatenate([images, np.repeat(images[:1], pad, 0)])
    ids = np.concatenate([ids, np.repeat(ids[:1], pad)])
  with jax.default_device(jax.devices("cpu")[0]):
    out = _jitted_apply(trigger)(images, ids, seed, _SPLIT_SALT[split])
  return np.asarray(out)[:n]


@functools.lru_cache(maxsize=16)
def _jitted_apply(trigger: triggers.Trigger):
  def run(images, ids, seed, salt):
    base = jax.random.fold_in(jax.random.key(seed), salt)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)
    return triggers.apply(trigger, keys, images)

  return jax.jit(run, static_argnums=(2, 3))


def save_indices(workdir: str, attack: Attack) -> epath.Path:
  """Writes the attack's summary and poisoned indices to `WORKDIR/poisoned_indices.json`."""
  path = epath.Path(workdir) / INDICES_FILE
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(attack.summary()))
  return path


def load_indices(workdir: str) -> np.ndarray:
  """The poisoned indices a run saved in `WORKDIR/poisoned_indices.json`."""
  path = epath.Path(workdir) / INDICES_FILE
  if not path.exists():
    raise FileNotFoundError(f"No '{path}': the run in '{workdir}' poisoned no data.")
  return np.asarray(json.loads(path.read_text())["indices"], np.int64)

"""CLIP byte-level BPE tokenizer, id-for-id compatible with OpenAI CLIP / open_clip.

Reproduces ``open_clip/tokenizer.py`` (``SimpleTokenizer`` with the default
``clean='lower'``, itself a copy of OpenAI's ``clip/simple_tokenizer.py``):

* clean-up: ``ftfy.fix_text``, ``html.unescape`` twice, whitespace runs
  collapsed to one space (``str.split``), strip, lower-case;
* the same ``regex`` pre-tokenisation pattern (contractions, letter runs,
  single digits, punctuation runs);
* UTF-8 bytes mapped to printable unicode, then greedy BPE with the 48,894
  merges of the OpenAI vocabulary, ``</w>`` marking word ends;
* vocabulary of 49,408 ids: start-of-text 49406, end-of-text 49407;
* ``tokenize`` wraps each text in start/end-of-text, pads with 0 and, when too
  long, keeps the first ``context_length`` ids and overwrites the last with
  end-of-text (open_clip's truncation; OpenAI's ``truncate=True`` is the same).

One deliberate choice: like open_clip, the literal strings ``<start_of_text>``
and ``<end_of_text>`` inside a caption map to the special ids. OpenAI's
tokenizer instead spells them ``<|startoftext|>`` / ``<|endoftext|>``; captions
containing those literals are the only known source of id differences between
the two reference implementations.

Ids are returned as host-side NumPy int32 arrays for the data pipeline; this
module does not use JAX. BPE results are cached per word (bounded).

The vocabulary ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI's BPE merge list,
MIT licence, Copyright (c) 2021 OpenAI; it was copied unchanged (md5
933b7abbbbde62c36f02f0e6ccde464f) from the open_clip_torch 3.3.0 wheel on PyPI.
"""

from __future__ import annotations

import functools
import gzip
import html
import importlib.resources
import os
from collections.abc import Iterable, Sequence

import ftfy
import numpy as np
import regex

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 77
NUM_MERGES = 49152 - 256 - 2  # merges used by CLIP: 48,894
SOT_TEXT = "<start_of_text>"
EOT_TEXT = "<end_of_text>"
WORD_END = "</w>"
CACHE_SIZE = 1 << 17  # words; the cache is cleared when full

_PATTERN = regex.compile(
  rf"{SOT_TEXT}|{EOT_TEXT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
  regex.IGNORECASE,
)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2/CLIP map from each byte to a printable unicode character."""
  printable = [
    *range(ord("!"), ord("~") + 1),
    *range(ord("¡"), ord("¬") + 1),
    *range(ord("®"), ord("ÿ") + 1),
  ]
  others = [b for b in range(256) if b not in printable]
  chars = printable + [256 + i for i in range(len(others))]
  return {b: chr(c) for b, c in zip(printable + others, chars)}


def clean_text(text: str) -> str:
  """open_clip's ``clean='lower'`` normalisation (ftfy, HTML, spaces, case)."""
  text = html.unescape(html.unescape(ftfy.fix_text(text)))
  return " ".join(text.split()).lower()


def load_merges(path: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
  """Reads the CLIP merge list; ``None`` loads the copy packaged with bdjax."""
  if path is None:
    resource = importlib.resources.files(__package__).joinpath(VOCAB_FILE)
    with resource.open("rb") as raw, gzip.open(raw) as f:
      lines = f.read().decode("utf-8").split("\n")
  else:
    with gzip.open(path) as f:
      lines = f.read().decode("utf-8").split("\n")
  return [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]


def _merge_pair(word: list[str], first: str, second: str) -> list[str]:
  """Replaces every non-overlapping ``first second`` (left to right) by its join."""
  merged, i = [], 0
  while i < len(word):
    if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
      merged.append(first + second)
      i += 2
    else:
      merged.append(word[i])
      i += 1
  return merged


class Tokenizer:
  """CLIP BPE tokenizer: ``encode``/``decode`` single texts, call on batches."""

  def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + WORD_END for c in byte_chars]
    vocab += ["".join(m) for m in merges] + [SOT_TEXT, EOT_TEXT]
    self._encoder = {tok: i for i, tok in enumerate(vocab)}
    self._decoder = dict(enumerate(vocab))
    self._ranks = {tuple(m): i for i, m in enumerate(merges)}
    self._byte_table = bytes_to_unicode()  # str.translate table for latin-1 text
    self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    self._special = {SOT_TEXT: self._encoder[SOT_TEXT], EOT_TEXT: self._encoder[EOT_TEXT]}
    self._cache: dict[str, tuple[int, ...]] = {}

  @property
  def sot_token_id(self) -> int:
    return self._special[SOT_TEXT]

  @property
  def eot_token_id(self) -> int:
    return self._special[EOT_TEXT]

  @property
  def vocab_size(self) -> int:
    return len(self._encoder)

  def _bpe(self, chars: str) -> list[str]:
    """Greedy BPE of one byte-encoded word: lowest-rank pair merged first."""
    word = [*chars[:-1], chars[-1] + WORD_END]
    while len(word) > 1:
      pair = min(zip(word, word[1:]), key=lambda p: self._ranks.get(p, float("inf")))
      if pair not in self._ranks:
        break
      word = _merge_pair(word, *pair)
    return word

  def _word_ids(self, word: str) -> tuple[int, ...]:
    """Ids of one pre-tokenised word, cached."""
    ids = self._cache.get(word)
    if ids is None:
      if word in self._special:
        ids = (self._special[word],)
      else:
        chars = word.encode("utf-8").decode("latin-1").translate(self._byte_table)
        ids = tuple(self._encoder[t] for t in self._bpe(chars))
      if len(self._cache) >= CACHE_SIZE:
        self._cache.clear()
      self._cache[word] = ids
    return ids

  def encode(self, text: str) -> list[int]:
    """BPE ids of ``text`` after CLIP clean-up, without start/end-of-text."""
    ids: list[int] = []
    for word in _PATTERN.findall(clean_text(text)):
      ids.extend(self._word_ids(word))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Inverse of ``encode`` up to clean-up; word ends become spaces."""
    chars = "".join(self._decoder[int(i)] for i in ids)
    data = bytearray(self._byte_decoder[c] for c in chars)
    return data.decode("utf-8", errors="replace").replace(WORD_END, " ")

  def __call__(
    self, texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH
  ) -> np.ndarray:
    """Int32 ids ``[len(texts), context_length]``: sot, ids, eot, zero padding."""
    if context_length < 1:
      raise ValueError(f"context_length must be >= 1, got {context_length}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.zeros((len(texts), context_length), dtype=np.int32)
    for row, text in enumerate(texts):
      ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
      if len(ids) > context_length:
        ids = ids[: context_length - 1] + [self.eot_token_id]
      out[row, : len(ids)] = ids
    return out


@functools.cache
def default_tokenizer() -> Tokenizer:
  """Process-wide tokenizer built from the packaged OpenAI vocabulary."""
  return Tokenizer(load_merges())


def tokenize(
  texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH
) -> np.ndarray:
  """Tokenizes caption(s) like ``open_clip.tokenize``; int32 ``[N, context_length]``."""
  return default_tokenizer()(texts, context_length)

"""Tests for bdjax.models.tokenizer against hard-coded open_clip reference ids."""

import pickle

import numpy as np
import pytest

from bdjax.models import tokenizer as tok

SOT, EOT = 49406, 49407

# Reference ids produced by open_clip's reference tokenizer, open_clip_torch==3.3.0
# (open_clip/tokenizer.py from the PyPI wheel, run with ftfy 6.3.1 and its
# `import torch` replaced by a NumPy stub, torch being used only to build the
# output tensor). Values are `open_clip.tokenizer._tokenizer.encode(text)`,
# i.e. without start/end-of-text.
REFERENCE_ENCODE = {
  "a photo of a cat.": [320, 1125, 539, 320, 2368, 269],
  "A Photo Of A CAT in NEW YORK": [320, 1125, 539, 320, 2368, 530, 686, 2705],
  'Hello, world!!! (really?) -- yes; no... "quoted" [x] {y} @user #tag $5 50% a/b': [
    3306,
    267,
    1002,
    995,
    263,
    1414,
    9626,
    2432,
    1958,
    282,
    871,
    678,
    257,
    27706,
    257,
    314,
    343,
    316,
    346,
    344,
    348,
    287,
    7031,
    258,
    3640,
    259,
    276,
    276,
    271,
    260,
    320,
    270,
    321,
  ],
  "In 2023, 1,234,567 people paid $19.99 for 3.14159 pies": [
    530,
    273,
    271,
    273,
    274,
    267,
    272,
    267,
    273,
    274,
    275,
    267,
    276,
    277,
    278,
    1047,
    5057,
    259,
    272,
    280,
    269,
    280,
    280,
    556,
    274,
    269,
    272,
    275,
    272,
    276,
    280,
    6898,
  ],
  "it's don't I'm we're they've you'll he'd IT'S Don't": [
    585,
    568,
    847,
    713,
    328,
    880,
    649,
    982,
    889,
    1200,
    592,
    1342,
    797,
    1896,
    585,
    568,
    847,
    713,
  ],
  "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;q&quot; &amp;amp; &#39;s &#x27;": [
    261,
    283,
    321,
    285,
    8911,
    34308,
    321,
    285,
    257,
    336,
    257,
    261,
    568,
    262,
  ],
  # Mojibake that ftfy repairs to "schön été café".
  "sch\u00c3\u00b6n \u00c3\u00a9t\u00c3\u00a9 caf\u00c3\u00a9": [
    844,
    7255,
    333,
    3459,
    39694,
    15304,
  ],
  "I love \U0001f431 and \U0001f355!! \U0001f44d\U0001f3fd \u2764\ufe0f": [
    328,
    793,
    22979,
    537,
    31469,
    748,
    43722,
    1752,
  ],
  "猫の写真 一只猫 고양이 사진": [
    163,
    234,
    104,
    21575,
    44653,
    33440,
    509,
    19759,
    222,
    34517,
    103,
    163,
    234,
    360,
    36216,
    254,
    31625,
    239,
    34746,
    31061,
    105,
    38890,
  ],
  "Café naïve résumé Øre Straße ñandú Ångström": [
    15304,
    1097,
    35689,
    563,
    29106,
    7054,
    4166,
    17483,
    810,
    1894,
    127,
    253,
    324,
    6445,
    672,
    36019,
    23176,
    10352,
    807,
    7255,
    332,
  ],
  "  multiple   spaces\n\nnew\tlines\r\n\ttabs  ": [6470, 9006, 686, 3418, 29163],
  "": [],
  " \n\t ": [],
  # open_clip maps these literals to the special ids (OpenAI uses <|endoftext|>).
  "<start_of_text> hi <end_of_text> <|endoftext|>": [
    SOT,
    1883,
    EOT,
    27,
    347,
    40786,
    4160,
    91,
    285,
  ],
}

LONG_CAPTION = " ".join(["a very long caption about a dog running on the beach at sunset"] * 10)
# open_clip tokenize(LONG_CAPTION)[0] (context_length=77).
LONG_REFERENCE = (
  [SOT]
  + [320, 1070, 1538, 11327, 781, 320, 1929, 2761, 525, 518, 2117, 536, 3424] * 5
  + [
    320,
    1070,
    1538,
    11327,
    781,
    320,
    1929,
    2761,
    525,
    518,
    EOT,
  ]
)
# open_clip tokenize(["a photo of a cat.", LONG_CAPTION], context_length=16).
CTX16_REFERENCE = [
  [SOT, 320, 1125, 539, 320, 2368, 269, EOT, 0, 0, 0, 0, 0, 0, 0, 0],
  [SOT, 320, 1070, 1538, 11327, 781, 320, 1929, 2761, 525, 518, 2117, 536, 3424, 320, EOT],
]
# open_clip tokenize(["a photo of a cat.", "a cat"], context_length=5).
CTX5_REFERENCE = [[SOT, 320, 1125, 539, EOT], [SOT, 320, 2368, EOT, 0]]


@pytest.fixture(scope="module")
def tokenizer() -> tok.Tokenizer:
  return tok.default_tokenizer()


def test_special_ids_and_vocab(tokenizer):
  assert tokenizer.sot_token_id == SOT
  assert tokenizer.eot_token_id == EOT
  assert tokenizer.vocab_size == 49408


def test_known_ids_from_memory():
  expected = [SOT, 320, 1125, 539, 320, 2368, EOT]
  assert tok.tokenize("a photo of a cat")[0, :7].tolist() == expected


@pytest.mark.parametrize("text", list(REFERENCE_ENCODE))
def test_encode_matches_open_clip(tokenizer, text):
  assert tokenizer.encode(text) == REFERENCE_ENCODE[text]


@pytest.mark.parametrize("text", list(REFERENCE_ENCODE))
def test_tokenize_matches_open_clip(text):
  ids = [SOT, *REFERENCE_ENCODE[text], EOT]
  expected = ids + [0] * (77 - len(ids))
  assert tok.tokenize(text)[0].tolist() == expected


def test_batch_matches_per_text():
  texts = list(REFERENCE_ENCODE)
  batch = tok.tokenize(texts)
  for row, text in zip(batch, texts):
    assert row.tolist() == tok.tokenize(text)[0].tolist()


def test_long_caption_truncates_keeping_eot():
  out = tok.tokenize(LONG_CAPTION)
  assert out.shape == (1, 77)
  assert out[0, -1] == EOT
  assert out[0].tolist() == LONG_REFERENCE


def test_custom_context_lengths():
  assert (
    tok.tokenize(["a photo of a cat.", LONG_CAPTION], context_length=16).tolist() == CTX16_REFERENCE
  )
  assert tok.tokenize(["a photo of a cat.", "a cat"], context_length=5).tolist() == CTX5_REFERENCE


def test_dtype_and_shape():
  out = tok.tokenize(["a cat", "a dog", ""], context_length=20)
  assert isinstance(out, np.ndarray)
  assert out.dtype == np.int32
  assert out.shape == (3, 20)


def test_single_string_equals_list():
  np.testing.assert_array_equal(
    tok.tokenize("a photo of a cat."), tok.tokenize(["a photo of a cat."])
  )


def test_empty_batch():
  assert tok.tokenize([], context_length=7).shape == (0, 7)


def test_call_equals_tokenize(tokenizer):
  texts = ["a photo of a cat.", "Café naïve"]
  np.testing.assert_array_equal(tokenizer(texts, context_length=9), tok.tokenize(texts, 9))


def test_invalid_context_length():
  with pytest.raises(ValueError):
    tok.tokenize("a cat", context_length=0)


@pytest.mark.parametrize(
  "text", ["a photo of a cat", "two dogs playing frisbee in the park at sunset"]
)
def test_decode_round_trip(tokenizer, text):
  assert tokenizer.decode(tokenizer.encode(text)).strip() == text


def test_decode_accepts_numpy(tokenizer):
  ids = tok.tokenize("a photo of a cat")[0, 1:6]
  assert tokenizer.decode(ids) == "a photo of a cat "


def test_deterministic_and_cache_independent():
  texts = list(REFERENCE_ENCODE) + [LONG_CAPTION]
  first = tok.tokenize(texts)
  fresh = tok.Tokenizer(tok.load_merges())
  np.testing.assert_array_equal(first, tok.tokenize(texts))
  np.testing.assert_array_equal(first, fresh(texts))


def test_default_tokenizer_is_cached():
  assert tok.default_tokenizer() is tok.default_tokenizer()


def test_pickle_round_trip(tokenizer):
  clone = pickle.loads(pickle.dumps(tokenizer))
  np.testing.assert_array_equal(clone(["a photo of a cat."]), tokenizer(["a photo of a cat."]))

"""Flax models of bdjax: the two-tower CLIP, its towers, and CLIP's BPE tokenizer."""

from bdjax.models.build import build_model, model_config
from bdjax.models.clip import CLIP
from bdjax.models.tokenizer import Tokenizer, tokenize

__all__ = ["CLIP", "Tokenizer", "build_model", "model_config", "tokenize"]

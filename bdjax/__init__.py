"""bdjax: backdoor attacks and defenses for CLIP-style contrastive pre-training in JAX/Flax."""

__version__ = "0.1.0"

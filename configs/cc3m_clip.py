"""CC3M clip pre-training of the seed study (REFERENCE.md section 2), on your copy of CC3M.

    python -m bdjax.main --config=configs/cc3m_clip.py --workdir=DIR \
        --config.data.train=/data/cc3m/train.csv --config.data.eval=/data/imagenet/val
"""

from bdjax.default_config import study_config


def get_config(model: str = "rn50"):
  return study_config("cc3m", "clip", model)

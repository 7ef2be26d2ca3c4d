"""CC6M clip_ssl pre-training of the seed study (REFERENCE.md section 2), on your copy of CC6M.

    python -m bdjax.main --config=configs/cc6m_clip_ssl.py --workdir=DIR \
        --config.data.train=/data/cc6m/train.csv --config.data.eval=/data/imagenet/val
"""

from bdjax.default_config import study_config


def get_config(model: str = "rn50"):
  return study_config("cc6m", "clip_ssl", model)

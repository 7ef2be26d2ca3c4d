"""The reusable pieces every defense is built from (DESIGN.md, "Defenses are compositions").

- `transforms.py`  optax transforms chained around the base optimiser: ascend, freeze, keep_rows,
                   clamp;
- `losses.py`      reductions of the objective's per-pair losses (mean, LGA, per-pair weights)
                   and the attention-distillation term;
- `masks.py`       per-channel masks on normalisation layers, and pruning with them;
- `select.py`      scoring every training pair (or token row) and keeping an index set;
- `edit.py`        direct parameter edits: reset token rows, shrink-and-perturb.
"""

"""The evaluations of a grid's finished points as one table: `DIR/results.csv`.

One row per evaluation logged in a point's `metrics.jsonl` (the records with `ca_top1`), and in
each of its sweep values' `KEY=VALUE/metrics.jsonl`: the evaluations a train stage makes every
`eval_every` steps (stage `NAME/eval`) and those of the eval stages. Columns:

    point, LABEL..., sweep, stage, phase, step, ca_top1, ca_top5, asr_top1, asr_top5, ra_top1,
    der, i2t_r1, i2t_r5, i2t_r10, t2i_r1, t2i_r5, t2i_r10, wall_s

LABEL: one column per grid axis (its value at the point); `sweep`: `KEY=VALUE` of the sweep
value the row belongs to ('' for the shared stages before the sweep); `phase`: the row's part
in the study, from the point's `config.stages`:

    before   the first eval stage (the attacked model a defense starts from)
    during   an evaluation inside a train stage after it (`eval_every`: the cleaning run)
    after    the last stage, when it is another eval stage (the defended model)
    ''       anything else (e.g. evaluations during pre-training)

Metrics are fractions as in metrics.jsonl; `der` is the eval stage's (`der_against`) or, for a
`during` row, computed against the point's `before` row; `wall_s` is the point's wall time (of
the run that finished it: a resumed point counts its last attempt only). The records of one
stage and step are merged (an eval stage logs its DER separately; a resumed stage's repeated
evaluation overwrites the earlier one).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ml_collections
from etils import epath

from bdjax.evaluate import der
from bdjax.metrics_log import read_metrics
from bdjax.report import COLUMNS as METRICS
from bdjax.sweep import sweep_dir

if TYPE_CHECKING:
  from bdjax.grid import Point

FILENAME = "results.csv"
PHASES = ("before", "during", "after", "")


def columns(labels: Sequence[str]) -> list[str]:
  """The CSV header of a grid with axis labels `labels`."""
  return ["point", *labels, "sweep", "stage", "phase", "step", *METRICS, "wall_s"]


def stage_phases(config: ml_collections.ConfigDict) -> dict[str, str]:
  """`{logged stage name: phase}` for the evaluations of `config.stages` (see the module doc)."""
  names = list(config.stages)
  kinds = [config[n].get("kind", n) for n in names]
  evals = [i for i, k in enumerate(kinds) if k == "eval"]
  if not evals:
    return {}
  first = evals[0]
  phases = {names[first]: "before"}
  for i in range(first + 1, len(names)):
    if kinds[i] == "train":
      phases[f"{names[i]}/eval"] = "during"
  if evals[-1] == len(names) - 1 and evals[-1] != first:
    phases[names[-1]] = "after"
  return phases


def point_rows(point: Point, workdir: str) -> list[dict[str, Any]]:
  """The evaluation rows of a finished point (in its workdir and its sweep values' dirs)."""
  from bdjax.grid import point_record

  config = point.config
  record = point_record(workdir) or {}
  common = {"point": point.name, **dict(point.values), "wall_s": record.get("wall_s", math.nan)}
  phases = stage_phases(config)
  rows = _evaluations(workdir, "", phases, common)
  sweep = config.get("sweep", None)
  if sweep is not None and sweep.get("choices", ()):
    for value in sweep.choices:
      where = sweep_dir(workdir, sweep.key, value)
      rows += _evaluations(where, f"{sweep.key}={value}", phases, common)
  _fill_der(rows)
  return rows


def _evaluations(workdir: str, sweep: str, phases: dict, common: dict) -> list[dict]:
  merged: dict[tuple, dict] = {}  # an eval stage logs its DER as a second record
  for record in read_metrics(workdir):
    key = (record["stage"], record["step"])
    merged[key] = {**merged.get(key, {}), **record}  # a rerun overwrites, in place
  rows = []
  for record in (r for r in merged.values() if "ca_top1" in r):
    metrics = {k: record[k] for k in METRICS if k in record}
    stage = record["stage"]
    rows.append(
      {**common, "sweep": sweep, "stage": stage, "phase": phases.get(stage, ""), **metrics}
    )
    rows[-1]["step"] = record["step"]
  return rows


def _fill_der(rows: list[dict]) -> None:
  before = next((r for r in rows if r["phase"] == "before"), None)
  if before is None or "asr_top1" not in before:
    return
  for r in rows:
    if r["phase"] == "during" and "der" not in r and "asr_top1" in r:
      r["der"] = der(before, r)


def write_csv(path: str, rows: Sequence[dict], labels: Sequence[str]) -> None:
  """Writes `rows` under the header `columns(labels)`; a missing metric is an empty cell."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w") as f:
    writer = csv.DictWriter(f, columns(labels), restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: str) -> list[dict[str, Any]]:
  """The rows of a results.csv: metrics, `step` and `wall_s` as numbers (absent: missing), the
  rest as text."""
  numeric = {*METRICS, "step", "wall_s"}
  with epath.Path(path).open() as f:
    rows = list(csv.DictReader(f))
  out = []
  for row in rows:
    parsed = {}
    for k, v in row.items():
      if k in numeric:
        if v != "":
          parsed[k] = int(v) if k == "step" else float(v)
      else:
        parsed[k] = v
    out.append(parsed)
  return out

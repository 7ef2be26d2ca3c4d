"""A grid's report, `DIR/report.md`: the study's summary table, its model selection, every point.

Model selection, as in the study (REFERENCE.md section 2): of a point's cleaning evaluations
(results.py's `during` and `after` rows, over every value of its learning-rate sweep), keep the
one with the highest `ca_top1` among those with `asr_top1 < max_asr` (5%); ties go to the
first. A point where no evaluation is below the bound has no selected model, and the report
says so.

Summary: the points are grouped by every axis but `seed`; each group's poisoned model (the
`before` row) and selected model are reported as mean +- the half-width of a 95% confidence
interval over its seeds (t-distribution with n - 1 degrees of freedom):

    mean +- t_{0.975, n-1} * s / sqrt(n),   s^2 = sum (x - mean)^2 / (n - 1)

(no interval for n = 1). The cleaned columns average only the seeds with a selected model, and
say how many those are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
import scipy.stats  # a dependency of jax
from etils import epath

REPEAT = "seed"  # the axis the summary aggregates over
CLEANING = ("during", "after")


def select(rows: Sequence[dict], max_asr: float = 0.05) -> dict | None:
  """The study's rule over one point's rows: the cleaning evaluation with the highest
  `ca_top1` among those with `asr_top1 < max_asr` (the first of equals); None if none is."""
  best = None
  for r in rows:
    if r.get("phase") in CLEANING and r.get("asr_top1", math.inf) < max_asr:
      if best is None or r["ca_top1"] > best["ca_top1"]:
        best = r
  return best


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
  """`(mean, half-width)` of the t-distribution confidence interval of the mean of `values`;
  the half-width is None for fewer than two values."""
  x = np.asarray(values, np.float64)
  if x.size < 2:
    return float(x.mean()) if x.size else math.nan, None
  t = scipy.stats.t.ppf(0.5 + confidence / 2, x.size - 1)
  return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def by_point(rows: Sequence[dict]) -> dict[str, list[dict]]:
  """Rows grouped by their `point`, in order of appearance."""
  points: dict[str, list[dict]] = {}
  for r in rows:
    points.setdefault(r["point"], []).append(r)
  return points


def group_of(row: dict, labels: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """The summary group of a row: (label, value) of every axis but `seed`."""
  return tuple((k, str(row[k])) for k in labels if k != REPEAT)


def summary(rows: Sequence[dict], labels: Sequence[str], max_asr: float = 0.05) -> list[dict]:
  """One entry per group (`group_of`): `group`, `n` (points), `cleaned` (points with cleaning
  evaluations), `selected` (points with a selected model) and `(mean, half-width)` of
  `before_ca`, `before_asr`, `after_ca`, `after_asr` (None when no point of the group has
  the row)."""
  groups: dict[tuple, list[list[dict]]] = {}
  for point_rows in by_point(rows).values():
    groups.setdefault(group_of(point_rows[0], labels), []).append(point_rows)
  out = []
  for group, points in groups.items():
    before = [b for b in (_before(p) for p in points) if b is not None]
    chosen = [s for s in (select(p, max_asr) for p in points) if s is not None]
    cleaned = sum(any(r.get("phase") in CLEANING for r in p) for p in points)
    entry = {"group": group, "n": len(points), "cleaned": cleaned, "selected": len(chosen)}
    for prefix, found in (("before", before), ("after", chosen)):
      for metric, key in (("ca", "ca_top1"), ("asr", "asr_top1")):
        values = [r[key] for r in found if key in r]
        entry[f"{prefix}_{metric}"] = mean_ci(values) if values else None
    out.append(entry)
  return out


def _before(point_rows: Sequence[dict]) -> dict | None:
  return next((r for r in point_rows if r.get("phase") == "before"), None)


def summary_table(entries: Sequence[dict], max_asr: float = 0.05) -> str:
  """The study's table: the group's axis values | seeds | poisoned CA / ASR | after cleaning
  CA / ASR | how many seeds have a selected model; in %."""
  labels = [k for k, _ in entries[0]["group"]] if entries else []
  bound = f"{100 * max_asr:g}%"
  head = [*labels, "seeds", "poisoned CA", "poisoned ASR", "cleaned CA", "cleaned ASR"]
  lines = [
    "| " + " | ".join(head) + f" | ASR < {bound} |",
    "|" + "---|" * len(labels) + "---:|" * 6,
  ]
  for e in entries:
    after = [_pm(e["after_ca"]), _pm(e["after_asr"]), f"{e['selected']} of {e['n']}"]
    if not e["selected"]:
      after = ["none", "none", after[-1]] if e["cleaned"] else ["-", "-", "-"]
    cells = [v for _, v in e["group"]] + [str(e["n"]), _pm(e["before_ca"]), _pm(e["before_asr"])]
    lines.append("| " + " | ".join(cells + after) + " |")
  return "\n".join(lines)


def selection_table(rows: Sequence[dict], max_asr: float = 0.05) -> tuple[str, list[str]]:
  """Per point: the selected evaluation (sweep value, stage, step, CA, ASR, RA, DER), and the
  notes for points with none (their lowest-ASR evaluation)."""
  lines = [
    "| point | sweep | stage | step | CA | ASR | RA | DER |",
    "|---|---|---|---:|---:|---:|---:|---:|",
  ]
  notes = []
  for name, point_rows in by_point(rows).items():
    chosen = select(point_rows, max_asr)
    if chosen is None:
      lines.append(f"| {name} | none with ASR < {100 * max_asr:g}% | | | | | | |")
      notes.append(_lowest_asr(name, point_rows))
      continue
    cells = [chosen.get("sweep", "") or "-", chosen["stage"], str(chosen["step"])]
    cells += [_pct(chosen.get(k)) for k in ("ca_top1", "asr_top1", "ra_top1", "der")]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines), [n for n in notes if n]


def _lowest_asr(name: str, point_rows: Sequence[dict]) -> str:
  cleaning = [r for r in point_rows if r.get("phase") in CLEANING and "asr_top1" in r]
  if not cleaning:
    return f"Point {name} has no cleaning evaluation."
  low = min(cleaning, key=lambda r: r["asr_top1"])
  where = f"{low['sweep']}, " if low.get("sweep") else ""
  return (
    f"Point {name}: no cleaning evaluation has ASR below the bound; the lowest is "
    f"{_pct(low['asr_top1'])}% (CA {_pct(low['ca_top1'])}%) at {where}{low['stage']} step "
    f"{low['step']}."
  )


def points_table(rows: Sequence[dict], labels: Sequence[str]) -> str:
  """The `before` and `after` rows of every point: axis values, sweep value, metrics in %."""
  metrics = ["ca_top1", "ca_top5", "asr_top1", "ra_top1", "der", "i2t_r1", "t2i_r1"]
  names = ["CA", "CA top-5", "ASR", "RA", "DER", "I→T R@1", "T→I R@1"]
  head = [*labels, "sweep", "stage", "step", *names, "wall (min)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(labels) + 2) + "---:|" * 9]
  for r in rows:
    if r.get("phase") not in ("before", "after"):
      continue
    cells = [str(r[k]) for k in labels] + [r.get("sweep", "") or "-", r["stage"], str(r["step"])]
    cells += [_pct(r.get(k)) for k in metrics] + [_minutes(r.get("wall_s"))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report_text(
  title: str,
  rows: Sequence[dict],
  labels: Sequence[str],
  total: int,
  max_asr: float = 0.05,
  figures: Sequence[tuple[str, str]] = (),
) -> str:
  """The Markdown of the report (see the module doc); `figures` are (file, caption) pairs."""
  text = [
    f"# {title}\n",
    f"{len(by_point(rows))} of {total} points finished (each in points/NAME/); metrics in %; "
    "every evaluation is in results.csv.\n",
    *_summary_section(rows, labels, max_asr),
    *(f"![{caption}]({file})\n" for file, caption in figures),
  ]
  if any(r.get("phase") in CLEANING for r in rows):
    table, notes = selection_table(rows, max_asr)
    text += ["## Model selection\n", table + "\n", *(f"{n}\n" for n in notes)]
  text += ["## Points\n", points_table(rows, labels) + "\n"]
  return "\n".join(text)


def _summary_section(rows: Sequence[dict], labels: Sequence[str], max_asr: float) -> list[str]:
  bound = f"{100 * max_asr:g}%"
  text = [
    "## Summary\n",
    f"Poisoned model and, after cleaning, the model the study's rule selects: the highest CA "
    f"among the cleaning evaluations (every evaluation of every swept learning rate) with "
    f"ASR < {bound}. Mean ± 95% confidence interval over the seeds (t-distribution, n - 1 "
    "degrees of freedom); the cleaned columns average the seeds with a selected model.\n",
    summary_table(summary(rows, labels, max_asr), max_asr) + "\n",
  ]
  if not any(r.get("phase") in CLEANING for r in rows):
    text.append(
      "The points have no cleaning evaluations (no train stage with `eval_every` or eval "
      "stage after their first evaluation): the table shows the evaluated model only.\n"
    )
  elif not any(select(p, max_asr) for p in by_point(rows).values()):
    text.append(
      f"**No point reaches ASR < {bound}**: the selection rule keeps no model, and the "
      "cleaned columns are empty (the lowest ASR of each point is listed below).\n"
    )
  return text


def write_report(root: str, title: str, rows, labels, total, max_asr=0.05, figures=()) -> str:
  """Writes `ROOT/report.md` (process 0 only) and returns its text."""
  text = report_text(title, rows, labels, total, max_asr, figures)
  if jax.process_index() == 0:
    path = epath.Path(root) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return text


def _pm(stat: tuple[float, float | None] | None) -> str:
  if stat is None:
    return ""
  mean, half = stat
  return f"{100 * mean:.2f}" + (f" ± {100 * half:.2f}" if half is not None else "")


def _pct(v: float | None) -> str:
  return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _minutes(seconds: float | None) -> str:
  if seconds is None or math.isnan(seconds):
    return ""
  return f"{seconds / 60:.1f}"

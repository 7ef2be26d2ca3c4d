"""The grid's figures, PNGs next to its report (matplotlib's Agg canvas, no pyplot state):

- `ca_vs_asr.png`: CA against ASR (top-1, %) of every cleaning evaluation (results.py's
  `during` and `after` rows, every swept value), one colour per group (every axis but `seed`,
  e.g. the pre-training objective), the poisoned models as crosses, each point's selected
  model as a star, and the line ASR = 5% left of which the study's rule selects (as in the
  study's figure).
- `cleaning_curves.png`: CA (top row) and ASR (bottom row) against the steps of the cleaning
  run, one column per swept value, one line per point, starting from the poisoned model at 0.
- `bars.png`: per group, CA and ASR of the poisoned model and of the selected cleaned model
  (grid_report.summary: mean over seeds, the 95% interval as error bars); a group without a
  selected model has no cleaned bars and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bdjax.grid_report import CLEANING, by_point, group_of, select, summary

FIGURES = (
  ("ca_vs_asr.png", "CA against ASR of every cleaning evaluation"),
  ("cleaning_curves.png", "CA and ASR along the cleaning runs"),
  ("bars.png", "CA and ASR before and after cleaning"),
)


def write_plots(
  root: str, rows: Sequence[dict], labels: Sequence[str], max_asr: float = 0.05
) -> list[tuple[str, str]]:
  """Writes the figures of `rows` in `root`; returns the (file, caption) pairs written (none
  without rows)."""
  if not rows:
    return []
  colours = _colours(rows, labels)
  draw = {
    "ca_vs_asr.png": lambda: ca_vs_asr(rows, labels, colours, max_asr),
    "cleaning_curves.png": lambda: cleaning_curves(rows, labels, colours, max_asr),
    "bars.png": lambda: bars(rows, labels, max_asr),
  }
  written = []
  for name, caption in FIGURES:
    figure = draw[name]()
    if figure is not None:
      _save(figure, epath.Path(root) / name)
      written.append((name, caption))
  return written


def _colours(rows: Sequence[dict], labels: Sequence[str]) -> dict[tuple, str]:
  groups = list(dict.fromkeys(group_of(r, labels) for r in rows))
  return {g: f"C{i % 10}" for i, g in enumerate(groups)}


def _legend_name(group: tuple) -> str:
  return ", ".join(v for _, v in group) or "all"


def _save(figure: Figure, path: epath.Path) -> None:
  FigureCanvasAgg(figure)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    figure.savefig(f, format="png", dpi=120)


def ca_vs_asr(rows, labels, colours, max_asr: float) -> Figure:
  """Scatter of (ASR, CA) in %: cleaning evaluations as dots, poisoned models as crosses."""
  figure = Figure(figsize=(6, 4.5), layout="constrained")
  ax = figure.add_subplot()
  for group, colour in colours.items():
    mine = [r for r in rows if group_of(r, labels) == group and "asr_top1" in r]
    clean = [r for r in mine if r.get("phase") in CLEANING]
    poisoned = [r for r in mine if r.get("phase") == "before"]
    chosen = [c for c in (select(p, max_asr) for p in by_point(mine).values()) if c]
    ax.scatter(*_xy(clean), s=18, color=colour, alpha=0.7, label=_legend_name(group))
    ax.scatter(*_xy(poisoned), s=40, color=colour, marker="x")
    ax.scatter(*_xy(chosen), s=120, color=colour, marker="*", edgecolors="k", linewidths=0.6)
  ax.scatter([], [], s=40, color="k", marker="x", label="poisoned model")
  ax.scatter([], [], s=120, color="w", marker="*", edgecolors="k", label="selected")
  bound = f"ASR = {100 * max_asr:g}%"
  ax.axvline(100 * max_asr, color="k", linestyle="--", linewidth=1, label=bound)
  ax.set(xlabel="ASR top-1 (%)", ylabel="CA top-1 (%)", title="Cleaning runs: CA against ASR")
  ax.legend(fontsize="small")
  return figure


def _xy(rows: Sequence[dict]) -> tuple[list[float], list[float]]:
  return [100 * r["asr_top1"] for r in rows], [100 * r["ca_top1"] for r in rows]


def cleaning_curves(rows, labels, colours, max_asr: float) -> Figure | None:
  """CA and ASR against cleaning steps, a column per sweep value; None without cleaning rows."""
  sweeps = list(dict.fromkeys(r.get("sweep", "") for r in rows if r.get("phase") in CLEANING))
  if not sweeps:
    return None
  figure = Figure(figsize=(4 * len(sweeps), 6), layout="constrained")
  axes = figure.subplots(2, len(sweeps), squeeze=False, sharex="col")
  named = set()
  for point_rows in by_point(rows).values():
    group = group_of(point_rows[0], labels)
    start = next((r for r in point_rows if r.get("phase") == "before"), None)
    for column, sweep in enumerate(sweeps):
      run = [r for r in point_rows if r.get("phase") == "during" and r.get("sweep", "") == sweep]
      run = ([start] if start else []) + sorted(run, key=lambda r: r["step"])
      if len(run) < 2:
        continue
      steps = [r["step"] - run[0]["step"] for r in run]
      label = None if group in named else _legend_name(group)
      named.add(group)
      for row, key in enumerate(("ca_top1", "asr_top1")):
        values = [100 * r.get(key, np.nan) for r in run]
        axes[row][column].plot(steps, values, color=colours[group], alpha=0.8, label=label)
  for column, sweep in enumerate(sweeps):
    axes[0][column].set(title=sweep or "cleaning")
    axes[1][column].set(xlabel="cleaning step")
    axes[1][column].axhline(100 * max_asr, color="k", linestyle="--", linewidth=1)
  axes[0][0].set(ylabel="CA top-1 (%)")
  axes[1][0].set(ylabel="ASR top-1 (%)")
  if named:
    axes[0][0].legend(fontsize="small")
  return figure


def bars(rows, labels, max_asr: float) -> Figure:
  """Grouped bars per group: CA and ASR before and after cleaning, 95% intervals as errors."""
  entries = summary(rows, labels, max_asr)
  figure = Figure(figsize=(max(5, 1.8 * len(entries)), 4), layout="constrained")
  ax = figure.add_subplot()
  series = (
    ("before_ca", "CA poisoned"),
    ("after_ca", "CA cleaned"),
    ("before_asr", "ASR poisoned"),
    ("after_asr", "ASR cleaned"),
  )
  width = 0.8 / len(series)
  x = np.arange(len(entries))
  for i, (key, name) in enumerate(series):
    stats = [e[key] if e[key] is not None else (np.nan, None) for e in entries]
    means = [100 * m for m, _ in stats]
    errors = [100 * h if h is not None else np.nan for _, h in stats]  # none for one seed
    ax.bar(x + (i - 1.5) * width, means, width, yerr=errors, capsize=3, label=name)
  for i, e in enumerate(entries):
    if e["cleaned"] and not e["selected"]:
      ax.text(i, 2, f"none < {100 * max_asr:g}%", ha="center", fontsize="small", rotation=90)
  ticks = [
    f"{_legend_name(e['group'])}\n{e['selected']} of {e['n']} < {100 * max_asr:g}%" for e in entries
  ]
  ax.set_xticks(x, ticks)
  ax.set(ylabel="top-1 (%)", ylim=(0, 105), title="Before and after cleaning (mean over seeds)")
  ax.legend(fontsize="small", ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.15))
  return figure

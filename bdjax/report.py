"""The run's summary: a Markdown table of every evaluation, saved as `WORKDIR/report.md`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from etils import epath

COLUMNS = (
  "ca_top1",
  "ca_top5",
  "asr_top1",
  "asr_top5",
  "ra_top1",
  "der",
  "i2t_r1",
  "i2t_r5",
  "i2t_r10",
  "t2i_r1",
  "t2i_r5",
  "t2i_r10",
)


def markdown_table(rows: Sequence[dict]) -> str:
  """One row per evaluation (`stage`, `step`, metrics); metrics in percent, known ones first."""
  extra = sorted({k for r in rows for k in r} - set(COLUMNS) - {"stage", "step"})
  columns = [c for c in COLUMNS if any(c in r for r in rows)] + extra
  lines = ["| stage | step | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
  for r in rows:
    cells = [_percent(r[c]) if c in r else "" for c in columns]
    lines.append(f"| {r['stage']} | {r['step']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_report(workdir: str, title: str, rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
  """Writes `WORKDIR/report.md` (title, notes, table; metrics in %; process 0 only) and returns
  its text."""
  text = f"# {title}\n\n" + "".join(f"{n}\n\n" for n in notes) + markdown_table(rows) + "\n"
  if jax.process_index() == 0:
    path = epath.Path(workdir) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return text


def _percent(v: float) -> str:
  return f"{100 * v:.2f}"

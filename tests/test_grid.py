"""Grids: every point runs in its own workdir, a rerun skips finished points, the results table,
the study's selection rule and summary, the plots, and clear errors for a bad grid."""

import csv
import json
import math

import pytest
from PIL import Image
from test_attack_runs import ROOT, shrunk

from bdjax import grid, grid_report, results
from bdjax.config_check import ConfigError, check_config
from bdjax.default_config import parse_arg
from bdjax.defenses import defense_config
from bdjax.metrics_log import read_metrics
from bdjax.plots import FIGURES

AXES = (("objective.name", ("clip", "cyclip")), ("seed", (0, 1)))


def tiny_study():
  """configs/study_demo.py's shape on the tiny model: 2 pre-training steps, CleanCLIP of 2
  steps evaluated at each, swept over two learning rates."""
  config = shrunk("defense_cleanclip")
  config.cleanclip.update(eval_every=1, select_below=0.05)
  config.sweep.update(key="cleanclip.lr", choices=(1e-4, 3e-3))
  config.grid.axes = AXES
  return config


def train_records(workdir):
  return [m for m in read_metrics(str(workdir)) if m["stage"] == "train"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """A 2 x 2 grid killed after its first two points, then rerun to the end."""
  root = tmp_path_factory.mktemp("grid")
  grid.use_compilation_cache(str(root))  # as main does; only if nothing compiled before
  config = tiny_study()
  points = grid.make_points(config)
  grid.check_points(points, str(root))
  grid.run_grid(config, str(root), points[:2])  # the run that was killed
  partial = results.read_csv(root / "results.csv")
  first = {p.name: (p.workdir(root) / grid.DONE).read_text() for p in points[:2]}
  logged = {p.name: len(train_records(p.workdir(root))) for p in points[:2]}
  grid.run_grid(config, str(root), points)  # the rerun
  return dict(root=root, config=config, points=points, partial=partial, first=first, logged=logged)


def test_points_are_the_product_of_the_axes_in_order():
  points = grid.make_points(tiny_study())
  assert [p.name for p in points] == [
    "objective.name=clip,seed=0",
    "objective.name=clip,seed=1",
    "objective.name=cyclip,seed=0",
    "objective.name=cyclip,seed=1",
  ]
  assert [(p.config.objective.name, p.config.seed) for p in points] == [
    ("clip", 0),
    ("clip", 1),
    ("cyclip", 0),
    ("cyclip", 1),
  ]
  assert all(p.config.grid.axes == () for p in points)  # a point's config.json reruns it alone
  assert all(p.config.cleanclip.objective.name == "clip_ssl" for p in points)


def test_a_grid_runs_every_point_and_writes_results_report_and_plots(study):
  root, points = study["root"], study["points"]
  for p in points:
    record = json.loads((p.workdir(root) / grid.DONE).read_text())
    assert record["values"] == dict(p.values) and record["wall_s"] > 0
    saved = json.loads((p.workdir(root) / "config.json").read_text())
    assert saved["seed"] == p.config.seed and saved["objective"]["name"] == p.config.objective.name
    assert list(p.workdir(root).glob("cleanclip.lr=0.003/events.out.tfevents.*"))
  with open(root / "results.csv") as f:
    header = next(csv.reader(f))
  assert header == results.columns(["objective.name", "seed"])
  assert {"ca_top1", "ca_top5", "asr_top1", "ra_top1", "der", "i2t_r1", "wall_s"} <= set(header)
  rows = results.read_csv(root / "results.csv")
  for p in points:
    mine = [r for r in rows if r["point"] == p.name]
    assert [(r["sweep"], r["stage"], r["phase"], r["step"]) for r in mine] == [
      ("", "eval_poisoned", "before", 2),
      ("cleanclip.lr=0.0001", "cleanclip/eval", "during", 3),
      ("cleanclip.lr=0.0001", "cleanclip/eval", "during", 4),
      ("cleanclip.lr=0.0001", "eval_defended", "after", mine[3]["step"]),
      ("cleanclip.lr=0.003", "cleanclip/eval", "during", 3),
      ("cleanclip.lr=0.003", "cleanclip/eval", "during", 4),
      ("cleanclip.lr=0.003", "eval_defended", "after", mine[6]["step"]),
    ]
    assert {r["seed"] for r in mine} == {str(p.config.seed)}
    assert all(0 <= r["asr_top1"] <= 1 and 0 <= r["der"] <= 1 for r in mine[1:])
    assert len({r["wall_s"] for r in mine}) == 1
  report = (root / "report.md").read_text()
  assert "4 of 4 points finished" in report
  assert "| objective.name | seeds | poisoned CA | poisoned ASR |" in report
  for name, _ in FIGURES:
    assert f"]({name})" in report
    with Image.open(root / name) as image:
      image.verify()
      assert image.format == "PNG"


def test_a_rerun_skips_finished_points(study):
  root, points = study["root"], study["points"]
  assert {r["point"] for r in study["partial"]} == {p.name for p in points[:2]}
  for p in points[:2]:  # not trained again: same marker, no new training records
    assert (p.workdir(root) / grid.DONE).read_text() == study["first"][p.name]
    assert len(train_records(p.workdir(root))) == study["logged"][p.name]
  grid.run_grid(study["config"], str(root), study["points"])
  assert all(len(train_records(p.workdir(root))) == 1 for p in points)  # 2 steps, logged once


def test_an_unfinished_point_resumes_from_its_own_checkpoints(study):
  root, config, points = study["root"], study["config"], study["points"]
  point = points[-1]
  (point.workdir(root) / grid.DONE).unlink()  # as if killed after its last checkpoint
  before = read_metrics(str(point.workdir(root)))
  grid.run_grid(config, str(root), points)
  after = read_metrics(str(point.workdir(root)))
  assert (point.workdir(root) / grid.DONE).exists()
  assert [m for m in after if m["stage"] == "train"] == [m for m in before if m["stage"] == "train"]
  assert len([m for m in after if m["stage"] == "eval_poisoned"]) == 2  # evaluated again
  rows = [r for r in results.read_csv(root / "results.csv") if r["point"] == point.name]
  assert len(rows) == 7  # the repeated evaluation replaces the first


def test_a_grid_config_rejects_a_point_directory_of_another_run(study):
  config = tiny_study()
  config.cleanclip.steps = 3
  with pytest.raises(ConfigError, match=r"Grid point 'objective.name=clip,seed=0'.*another config"):
    grid.check_points(grid.make_points(config), str(study["root"]))


# ----------------------------------------------------------------- selection rule and summary


def row(point, seed, phase, ca, asr, sweep="", step=0, objective="clip"):
  return dict(
    point=point, objective=objective, seed=seed, sweep=sweep, stage=phase, phase=phase,
    step=step, ca_top1=ca, asr_top1=asr, ra_top1=0.5,
  )  # fmt: skip


def test_the_selection_rule_keeps_the_highest_ca_with_asr_below_5_percent():
  rows = [
    row("p", 0, "before", 0.99, 0.95),  # the poisoned model never counts
    row("p", 0, "during", 0.98, 0.06, "lr=1", 10),  # best CA, but ASR too high
    row("p", 0, "during", 0.90, 0.049, "lr=1", 20),
    row("p", 0, "during", 0.93, 0.02, "lr=2", 10),  # the one
    row("p", 0, "after", 0.93, 0.03, "lr=2", 30),  # equal CA: the first is kept
    row("p", 0, "after", 0.97, 0.05, "lr=1", 30),  # ASR = 5% is not below
  ]
  chosen = grid_report.select(rows)
  assert (chosen["sweep"], chosen["step"], chosen["ca_top1"]) == ("lr=2", 10, 0.93)
  assert grid_report.select(rows, max_asr=0.1)["ca_top1"] == 0.98


def test_the_report_says_so_when_no_point_reaches_asr_below_5_percent():
  rows = [row("p", 0, "before", 0.99, 0.95), row("p", 0, "during", 0.98, 0.134, "lr=1", 10)]
  assert grid_report.select(rows) is None
  text = grid_report.report_text("t", rows, ["objective", "seed"], total=1)
  assert "No point reaches ASR < 5%" in text
  assert "| clip | 1 | 99.00 | 95.00 | none | none | 0 of 1 |" in text
  assert "the lowest is 13.40% (CA 98.00%) at lr=1, during step 10" in text


def test_the_confidence_interval_uses_the_t_distribution():
  mean, half = grid_report.mean_ci([0.1, 0.2, 0.3])  # s = 0.1, t(0.975, 2) = 4.3027
  assert mean == pytest.approx(0.2)
  assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
  _, half = grid_report.mean_ci([1.0, 2.0] * 5)  # t(0.975, 9) = 2.2622
  assert half == pytest.approx(2.262157 * math.sqrt(5 / 18) / math.sqrt(10), rel=1e-6)
  assert grid_report.mean_ci([0.7]) == (0.7, None)


def test_the_summary_averages_seeds_and_cleaned_models_only_where_selected():
  rows = []
  for seed, (ca, asr, clean_ca, clean_asr) in enumerate(
    [(0.99, 0.90, 0.97, 0.04), (0.97, 0.80, 0.95, 0.02), (0.98, 0.85, 0.96, 0.30)]
  ):
    point = f"clip,{seed}"
    rows += [row(point, seed, "before", ca, asr), row(point, seed, "after", clean_ca, clean_asr)]
  rows += [row("ssl", 0, "before", 0.9, 0.99, objective="clip_ssl")]
  rows += [row("ssl", 0, "after", 0.8, 0.5, objective="clip_ssl")]
  clip, ssl = grid_report.summary(rows, ["objective", "seed"])
  assert (clip["group"], clip["n"], clip["selected"]) == ((("objective", "clip"),), 3, 2)
  assert clip["before_ca"] == pytest.approx(grid_report.mean_ci([0.99, 0.97, 0.98]))
  assert clip["after_ca"][0] == pytest.approx(0.96)  # seeds 0 and 1 only
  assert clip["after_asr"] == pytest.approx((0.03, 12.706205 * math.sqrt(2) * 0.01 / math.sqrt(2)))
  assert (ssl["selected"], ssl["after_ca"]) == (0, None)
  table = grid_report.summary_table([clip, ssl])
  cells = "98.00 ± 2.48 | 85.00 ± 12.42 | 96.00 ± 12.71 | 3.00 ± 12.71"
  assert f"| clip | 3 | {cells} | 2 of 3 |" in table
  assert "| clip_ssl | 1 | 90.00 | 99.00 | none | none | 0 of 1 |" in table


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
  "axes, message",
  [
    ((("train.lrr", (1e-3,)),), r"Unknown config key 'train.lrr'.*Did you mean 'train.lr'"),
    ((("seed", ()),), r"axis 'seed' has no values"),
    (("seed", (0, 1)), r"\(KEY, VALUES\) pairs.*trailing comma"),
    ((("seed", (0, 0)),), r"axis 'seed' repeats 0"),
    ((("seed", (0,)), ("seed", (1,))), r"names 'seed' twice"),
    ((("cleanclip.lr", (1e-3,)),), r"also config.sweep.key"),
    ((("grid.axes", ((),)),), r"is a grid key"),
    ((("arg.objective", (1,)),), r"non-empty strings without commas"),
    ((("arg.phase", ("a",)),), r"clash with the results.csv column"),
  ],
)
def test_a_bad_grid_is_a_config_error_naming_the_axis(axes, message):
  config = tiny_study()
  config.grid.axes = axes
  with pytest.raises(ConfigError, match=message):
    check_config(config)


def test_an_axis_value_of_the_wrong_type_is_a_config_error():
  config = tiny_study()
  config.grid.axes = (("seed", ("zero", "one")),)
  with pytest.raises(ConfigError, match=r"axis 'seed'.*cannot set 'seed' to 'zero'"):
    grid.make_points(config)


def test_an_argument_axis_builds_each_point_from_the_config_file():
  def load(args):  # what config_loader does with configs/defense_cleanclip.py
    return defense_config("cleanclip", grid.compose_arg("objective=clip", args))

  config = defense_config("cleanclip")
  config.grid.axes = (("arg.objective", ("clip_ssl", "siglip")), ("seed", (3,)))
  points = grid.make_points(config, load)
  assert [p.name for p in points] == ["objective=clip_ssl,seed=3", "objective=siglip,seed=3"]
  assert [p.config.objective.name for p in points] == ["clip_ssl", "siglip"]
  assert points[1].config.model.logit_bias_init == -10.0  # SigLIP's init: not just the name
  assert all(p.config.seed == 3 for p in points)
  assert grid.compose_arg("clip", [("arg", "cyclip"), ("arg.pretrained", "x")]) == (
    "cyclip,pretrained=x"
  )
  later_wins = grid.compose_arg("objective=clip", [("arg.objective", "cyclip")])
  assert parse_arg(later_wins, objective="") == {"objective": "cyclip"}


def test_the_config_loader_reapplies_the_command_line_and_names_a_bad_argument():
  load = grid.config_loader(f"{ROOT}/configs/defense_cleanclip.py", {"cleanclip.steps": 7})
  config = load([("arg.objective", "cyclip")])
  assert (config.objective.name, config.cleanclip.steps) == ("cyclip", 7)
  with pytest.raises(ConfigError, match=r"Unknown config argument 'colour'"):
    load([("arg.colour", "red")])
  bad = grid.config_loader(f"{ROOT}/configs/defense_cleanclip.py", {"cleanclip.stepz": 7})
  with pytest.raises(ConfigError, match=r"--config.cleanclip.stepz.*Did you mean"):
    bad([("arg.objective", "clip")])


# --------------------------------------------------------------------------- the command line


def test_the_command_line_runs_a_grid_over_config_arguments(run_main, tmp_path):
  result = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}",
    "--config.grid.axes=(('arg', ('clip', 'cyclip')),)",
    "--config.train.steps=2",
    "--config.train.checkpoint_every=2",
  )
  assert result.returncode == 0, result.stderr
  for objective in ("clip", "cyclip"):
    saved = json.loads((tmp_path / "points" / f"arg={objective}" / "config.json").read_text())
    assert (saved["objective"]["name"], saved["train"]["steps"]) == (objective, 2)
  rows = results.read_csv(tmp_path / "results.csv")
  assert [(r["arg"], r["stage"], r["phase"]) for r in rows] == [
    ("clip", "eval", "before"),
    ("cyclip", "eval", "before"),
  ]
  assert "grid: 100%" in result.stderr  # the progress bar over points
  report = (tmp_path / "report.md").read_text()
  assert "no cleaning evaluations" in report and "Model selection" not in report
  again = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}",
    "--config.grid.axes=(('arg', ('clip', 'cyclip')),)",
    "--config.train.steps=2",
    "--config.train.checkpoint_every=2",
  )
  assert again.returncode == 0 and "2 points, 2 finished" in again.stdout


def test_the_command_line_names_a_bad_grid(run_main, tmp_path):
  result = run_main(
    "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.grid.axes=(('seed', ()),)"
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.startswith("bdjax: error: config.grid.axes: axis 'seed' has no values")

"""launch/local.py: K processes of one multi-host run on this machine (CPU, gloo collectives).

- a 2-process run of configs/tiny.py (1 device each) ends with the parameters and metrics of a
  1-process run on 2 devices (same global batch: each process loads half of every batch);
- a process that fails ends the launcher with its status, and the other processes (and their
  children) are stopped; so are all of them when the launcher gets SIGTERM or is killed;
- bad arguments end with a one-line message and status 2.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bdjax.checkpoint import load_params
from tests.conftest import ROOT

LAUNCHER = str(ROOT / "launch" / "local.py")
TINY = "--config=configs/tiny.py"
TIMING = {"pairs_per_s", "data_wait"}  # metrics that measure the machine, not the model


def _env(**extra) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("BDJAX_", "SLURM_"))}
  return {**env, "PYTHONPATH": str(ROOT), **extra}


def launch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """`python launch/local.py ARGS...` in the repo root."""
  return subprocess.run(
    [sys.executable, LAUNCHER, *args],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def main_on_devices(devices: int, *args: str) -> subprocess.CompletedProcess:
  """`python -m bdjax.main ARGS...` as one process with `devices` CPU devices."""
  flags = f"--xla_force_host_platform_device_count={devices}"
  return subprocess.run(
    [sys.executable, "-m", "bdjax.main", *args],
    cwd=ROOT,
    env=_env(XLA_FLAGS=flags, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=600,
  )


def final_params(workdir) -> dict:
  """The train stage's newest parameters, whatever devices and processes saved them."""
  return load_params(str(workdir), "train")


def metrics(workdir, skip_stages=()) -> list[dict]:
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [
    {k: v for k, v in m.items() if k not in TIMING} for m in lines if m["stage"] not in skip_stages
  ]


def assert_same_run(got, want, skip_stages=()) -> None:
  """The same parameters (1e-5), metrics (each line but those of `skip_stages`, 1e-5) and
  report."""
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5),
    final_params(got),
    final_params(want),
  )
  got_metrics, want_metrics = metrics(got, skip_stages), metrics(want, skip_stages)
  assert [(m["stage"], m["step"], sorted(m)) for m in got_metrics] == [
    (m["stage"], m["step"], sorted(m)) for m in want_metrics
  ]
  for g, w in zip(got_metrics, want_metrics):
    for key in g.keys() - {"stage", "step"}:
      np.testing.assert_allclose(g[key], w[key], rtol=0, atol=1e-5, err_msg=f"{g['stage']} {key}")
  assert (got / "report.md").read_text() == (want / "report.md").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """configs/tiny.py as 1 process with 2 devices and as 2 processes with 1 device each."""
  base = tmp_path_factory.mktemp("launch_runs")
  one, two = base / "one_process", base / "two_processes"
  single = main_on_devices(2, TINY, f"--workdir={one}")
  assert single.returncode == 0, single.stderr[-3000:]
  multi = launch(
    "--num_processes=2",
    "--devices_per_process=1",
    "--",
    sys.executable,
    "-m",
    "bdjax.main",
    TINY,
    f"--workdir={two}",
  )
  assert multi.returncode == 0, multi.stdout[-2000:] + multi.stderr[-3000:]
  return one, two, multi


def test_two_processes_train_and_evaluate_like_one_process_on_two_devices(runs):
  one, two, multi = runs
  for i in (0, 1):
    assert f"[p{i}] bdjax: tiny (clip) -> {two}" in multi.stdout
    assert (two / "checkpoints" / "train" / "8" / "data" / f"process_{i}-of-2.json").exists()
  assert not any(line and not line.startswith("[p") for line in multi.stdout.splitlines())
  assert_same_run(two, one)


def test_a_one_process_checkpoint_resumes_in_two_processes(runs, tmp_path):
  one, _, _ = runs
  resumed = tmp_path / "resumed"
  shutil.copytree(one, resumed)
  shutil.rmtree(resumed / "checkpoints" / "train" / "8")  # as if stopped after step 4's save
  lines = (resumed / "metrics.jsonl").read_text().splitlines(keepends=True)
  (resumed / "metrics.jsonl").write_text("".join(lines[:2]))  # the train lines of steps 2, 4
  (resumed / "report.md").unlink()
  result = launch(
    "--num_processes=2", "--", sys.executable, "-m", "bdjax.main", TINY, f"--workdir={resumed}"
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert "Resuming stage train from its checkpoint at step 4" in result.stdout
  assert_same_run(resumed, one, skip_stages=("train/eval",))  # a resumed stage evaluates first


# A command whose process 1 fails with a bad flag (after a pause, while process 0 waits for it
# in jax.distributed.initialize); every process first starts a child that would sleep for 10
# minutes and writes "PID CHILD_PID" to DIR/pI.
FAILING = """
import os, runpy, subprocess, sys, time
pid_dir = sys.argv.pop(1)
i = os.environ["BDJAX_PROCESS_ID"]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.path.join(pid_dir, "p" + i), "w") as f:
  f.write(f"{os.getpid()} {child.pid}")
if i == "1":
  time.sleep(4)
  sys.argv.append("--config.train.lrr=1")
runpy.run_module("bdjax.main", run_name="__main__", alter_sys=True)
"""

# A command whose processes do nothing but sleep (and start a child that sleeps too).
SLEEPING = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.path.join(sys.argv[1], "p" + os.environ["BDJAX_PROCESS_ID"]), "w") as f:
  f.write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""


def alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def recorded_pids(pid_dir, count: int, timeout: float = 60) -> list[int]:
  deadline = time.monotonic() + timeout
  while len(list(pid_dir.iterdir())) < count or any(
    not p.read_text().strip() for p in pid_dir.iterdir()
  ):
    assert time.monotonic() < deadline, "the processes did not start"
    time.sleep(0.1)
  return [int(x) for p in sorted(pid_dir.iterdir()) for x in p.read_text().split()]


def assert_all_gone(pids: list[int], timeout: float = 10) -> None:
  deadline = time.monotonic() + timeout
  while any(alive(p) for p in pids) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not [p for p in pids if alive(p)], "processes left running"


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


@needs_proc
def test_a_failing_process_stops_the_others_and_sets_the_status(tmp_path):
  script, pid_dir = tmp_path / "failing.py", tmp_path / "pids"
  script.write_text(FAILING)
  pid_dir.mkdir()
  start = time.monotonic()
  result = launch(
    "--num_processes=2",
    "--grace=5",
    "--",
    sys.executable,
    str(script),
    str(pid_dir),
    TINY,
    f"--workdir={tmp_path / 'run'}",
    timeout=120,
  )
  assert result.returncode == 2, result.stdout + result.stderr
  assert "[p1] bdjax: error: Unknown config key 'train.lrr'" in result.stderr
  assert "process 1 exited with status 2; stopping the others" in result.stderr
  assert time.monotonic() - start < 60  # not the 300 s jax.distributed waits for process 1
  assert_all_gone(recorded_pids(pid_dir, 2, timeout=0))


@needs_proc
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_launcher_stops_every_process(tmp_path, sig, status):
  script, pid_dir = tmp_path / "sleeping.py", tmp_path / "pids"
  script.write_text(SLEEPING)
  pid_dir.mkdir()
  launcher = subprocess.Popen(
    [sys.executable, LAUNCHER, "--num_processes=3", "--", sys.executable, str(script), pid_dir],
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    pids = recorded_pids(pid_dir, 3)
    launcher.send_signal(sig)
    _, err = launcher.communicate(timeout=60)
  finally:
    launcher.kill()
  assert launcher.returncode == status, err
  assert f"{sig.name}; stopping the processes" in err
  assert_all_gone(pids)


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_processes_end_when_the_launcher_is_killed(tmp_path):
  script, pid_dir = tmp_path / "sleeping.py", tmp_path / "pids"
  script.write_text(SLEEPING)
  pid_dir.mkdir()
  launcher = subprocess.Popen(
    [sys.executable, LAUNCHER, "--num_processes=2", "--", sys.executable, str(script), pid_dir],
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  pids = recorded_pids(pid_dir, 2)
  launcher.kill()  # SIGKILL: no handler runs; the kernel sends the processes SIGTERM
  launcher.wait()
  direct = pids[0::2]  # the processes themselves; their own children are theirs to stop
  assert_all_gone(direct)
  for p in pids[1::2]:
    if alive(p):
      os.kill(p, signal.SIGKILL)


def test_every_process_gets_its_id_the_coordinator_and_its_devices(tmp_path):
  show = (
    "import os; print(*(os.environ[k] for k in ('BDJAX_COORDINATOR', 'BDJAX_NUM_PROCESSES', "
    "'BDJAX_PROCESS_ID', 'JAX_PLATFORMS', 'XLA_FLAGS')), sep='|')"
  )
  result = launch(
    "--num_processes=3", "--devices_per_process=4", "--port=12345", "--", sys.executable, "-c", show
  )
  assert result.returncode == 0, result.stderr
  lines = sorted(result.stdout.splitlines())
  flags = "--xla_force_host_platform_device_count=4"
  assert lines == [f"[p{i}] 127.0.0.1:12345|3|{i}|cpu|{flags}" for i in range(3)]


def test_the_device_count_flag_replaces_one_in_xla_flags():
  spec = importlib.util.spec_from_file_location("launch_local", LAUNCHER)
  local = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(local)
  base = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_dump_to=/tmp/x", "A": "b"}
  env = local.process_env(base, 999, 2, 1, 3)
  assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=3"
  assert env["A"] == "b" and env["BDJAX_COORDINATOR"] == "127.0.0.1:999"
  assert (env["BDJAX_NUM_PROCESSES"], env["BDJAX_PROCESS_ID"]) == ("2", "1")


@pytest.mark.parametrize(
  "args, message",
  [
    (["--", "true"], "the following arguments are required: --num_processes"),
    (["--num_processes=2"], "No command: put the command to run after `--`"),
    (["--num_processes=2", "--"], "The command after `--` is empty"),
    (["--num_processes=0", "--", "true"], "--num_processes must be at least 1, got 0"),
    (["--num_processes=two", "--", "true"], "invalid int value: 'two'"),
    (["--num_processes=2", "--devices_per_process=0", "--", "true"], "at least 1, got 0"),
    (["--num_processes=2", "--port=70000", "--", "true"], "--port must be in 1..65535"),
    (["--num_processes=2", "--grace=-1", "--", "true"], "--grace must not be negative"),
    (["--num_processes=2", "--procs=2", "--", "true"], "unrecognized arguments: --procs=2"),
    (["--num_processes=2", "--", "/no/such/program"], "cannot run '/no/such/program'"),
  ],
)
def test_argument_errors_end_with_one_message_and_status_2(args, message):
  result = launch(*args, timeout=60)
  assert result.returncode == 2
  assert result.stderr.startswith("launch/local.py: error: ") and message in result.stderr
  assert "Traceback" not in result.stderr and not result.stdout


def test_help_names_every_option():
  result = launch("--help", timeout=60)
  assert result.returncode == 0
  for option in ("--num_processes", "--devices_per_process", "--port", "--grace"):
    assert option in result.stdout


def test_the_tpu_pod_launcher_runs_the_command_on_every_worker():
  """`tpu_pod.sh -N` (dry run) prints the gcloud commands and the script every host runs."""
  script = str(ROOT / "launch" / "tpu_pod.sh")
  args = ["-N", "-n", "pod", "-z", "us-central2-b", "-w", "gs://b/run", "-c", "configs/tiny.py"]
  result = subprocess.run(
    ["bash", script, *args, "--", "--config.train.steps=2"], capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr
  ssh = [line for line in result.stdout.splitlines() if line.startswith("gcloud compute tpus")]
  assert len(ssh) == 3  # scp of this checkout, setup, run
  assert all("--worker=all" in line and "--zone=us-central2-b" in line for line in ssh)
  assert "pip install --quiet -e . 'jax[tpu]'" in result.stdout
  assert (
    "exec .venv/bin/python -m bdjax.main --config=configs/tiny.py --workdir=gs://b/run "
    "--config.train.steps=2" in result.stdout
  )
  assert "export BDJAX_PROCESS_ID=$(meta agent-worker-number)" in result.stdout
  missing = subprocess.run(["bash", script, "-n", "pod", "-z", "z"], capture_output=True, text=True)
  assert missing.returncode == 2 and "no workdir" in missing.stderr
  usage = subprocess.run(["bash", script, "-h"], capture_output=True, text=True)
  assert usage.returncode == 0 and "TPU_NAME" in usage.stdout


def test_the_slurm_template_is_valid_bash():
  result = subprocess.run(
    ["bash", "-n", str(ROOT / "launch" / "slurm.sbatch")], capture_output=True
  )
  assert result.returncode == 0, result.stderr

"""Runs one command as K processes of a multi-host JAX run on this machine (CPU, gloo collectives).

    python launch/local.py --num_processes=K [--devices_per_process=D] [--port=P] [--grace=S] \
        -- python -m bdjax.main --config=configs/tiny.py --workdir=/tmp/run

Starts K copies of the command after `--`, each with

    BDJAX_COORDINATOR=127.0.0.1:P   process 0 serves the JAX coordinator there (P: a free port
                                    unless --port is given)
    BDJAX_NUM_PROCESSES=K, BDJAX_PROCESS_ID=I
    JAX_PLATFORMS=cpu, XLA_FLAGS=... --xla_force_host_platform_device_count=D

so that `bdjax.distributed.initialize()` joins them into one run of K*D CPU devices: a way to
test multi-host code (per-process data loading, cross-process collectives, checkpoints written
by every process) on one machine. Each line a process prints is echoed prefixed with `[pI] ` (its
stdout to stdout, its stderr to stderr).

The launcher waits for all of them and exits with the first non-zero exit status (a process
killed by signal N counts as 128+N), or 0. When one process fails the others are terminated:
each process runs in its own process group, which gets SIGTERM, then SIGKILL after --grace
seconds, so their children (grain workers) go too; the same happens on Ctrl-C or SIGTERM to the
launcher, and on Linux the processes are also told to end if the launcher itself is killed
(SIGTERM, via PR_SET_PDEATHSIG). Children left behind by processes that succeeded get SIGTERM.
Bad arguments end with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time

USAGE = (
  "python launch/local.py --num_processes=K [--devices_per_process=D] [--port=P] [--grace=S] "
  "-- COMMAND [ARGS...]"
)
DEVICE_FLAG = "--xla_force_host_platform_device_count"


class LaunchError(Exception):
  """A mistake in the launcher's arguments."""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """Splits `argv` at the first `--` into the launcher's options and the command."""
  split = argv.index("--") if "--" in argv else len(argv)
  options, command = argv[:split], argv[split + 1 :]
  parser = _Parser(prog="launch/local.py", usage=USAGE, description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_processes", type=int, required=True, help="K: how many processes.")
  parser.add_argument(
    "--devices_per_process", type=int, default=1, help="D: CPU devices each process simulates."
  )
  parser.add_argument(
    "--port", type=int, default=0, help="The coordinator's port on 127.0.0.1 (default: a free one)."
  )
  parser.add_argument(
    "--grace",
    type=float,
    default=10.0,
    help="Seconds between SIGTERM and SIGKILL when the processes are stopped.",
  )
  args = parser.parse_args(options)
  if args.num_processes < 1:
    raise LaunchError(f"--num_processes must be at least 1, got {args.num_processes}.")
  if args.devices_per_process < 1:
    raise LaunchError(f"--devices_per_process must be at least 1, got {args.devices_per_process}.")
  if not 0 <= args.port <= 65535:
    raise LaunchError(f"--port must be in 1..65535 (or 0 for a free one), got {args.port}.")
  if args.grace < 0:
    raise LaunchError(f"--grace must not be negative, got {args.grace}.")
  if split == len(argv):
    raise LaunchError(
      "No command: put the command to run after `--`, e.g. "
      "`-- python -m bdjax.main --config=configs/tiny.py --workdir=/tmp/run`."
    )
  if not command:
    raise LaunchError("The command after `--` is empty.")
  return args, command


class _Parser(argparse.ArgumentParser):
  """argparse whose errors raise `LaunchError` (one message, no usage dump)."""

  def error(self, message: str) -> None:
    raise LaunchError(f"{message}. Usage: {USAGE}")


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict[str, str], port: int, count: int, index: int, devices: int) -> dict:
  """The environment of process `index` of `count`: `base` plus the variables bdjax reads."""
  flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
  return {
    **base,
    "BDJAX_COORDINATOR": f"127.0.0.1:{port}",
    "BDJAX_NUM_PROCESSES": str(count),
    "BDJAX_PROCESS_ID": str(index),
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": " ".join([*flags, f"{DEVICE_FLAG}={devices}"]),
    "PYTHONUNBUFFERED": "1",  # lines reach the launcher as they are printed
  }


def _die_with_parent() -> None:
  """In the child before exec (Linux): SIGTERM when the launcher dies, even by SIGKILL."""
  try:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
  except Exception:  # not Linux, or no prctl: the launcher's own handlers still stop them
    pass


def _echo(stream, out, prefix: str, lock: threading.Lock) -> None:
  """Copies `stream` (a child's pipe) line by line to `out`, each line prefixed. A line ends at
  \\n, \\r\\n or \\r (kept as they are, so progress bars still redraw in place)."""
  text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline="")
  for line in iter(text.readline, ""):
    if not line.endswith(("\n", "\r")):
      line += "\n"
    with lock:
      out.write(prefix + line)
      out.flush()
  text.close()


def _status(returncode: int) -> int:
  """A child's exit status as a shell reports it (128+N for a signal N)."""
  return 128 - returncode if returncode < 0 else returncode


class Launcher:
  """K child processes, their output threads, and how to stop them."""

  def __init__(self, command: list[str], envs: list[dict[str, str]], grace: float):
    self.command, self.envs, self.grace = command, envs, grace
    self.procs: list[subprocess.Popen] = []
    self.threads: list[threading.Thread] = []
    self.lock = threading.Lock()

  def start(self) -> None:
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    for env in self.envs:
      self.procs.append(
        subprocess.Popen(
          self.command,
          env=env,
          stdin=subprocess.DEVNULL,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          start_new_session=True,  # its own process group: stop() reaches its children too
          preexec_fn=preexec,
        )
      )
    for i, p in enumerate(self.procs):
      for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
        t = threading.Thread(target=_echo, args=(stream, out, f"[p{i}] ", self.lock), daemon=True)
        t.start()
        self.threads.append(t)

  def wait(self) -> int:
    """Waits until all processes end or one fails; the first non-zero status, or 0."""
    while True:
      running = False
      for i, p in enumerate(self.procs):
        code = p.poll()
        if code is None:
          running = True
        elif code != 0:
          self._say(f"process {i} exited with status {_status(code)}; stopping the others.")
          self.stop()
          return _status(code)
      if not running:
        for p in self.procs:  # children a process left behind in its group
          _signal_group(p, signal.SIGTERM)
        return 0
      time.sleep(0.1)

  def stop(self) -> None:
    """SIGTERM to every process group still there, SIGKILL to those left after the grace."""
    for p in self.procs:
      _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + self.grace
    for p in self.procs:
      try:
        p.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass
    for p in self.procs:  # the group, even if its leader is gone: stray children
      _signal_group(p, signal.SIGKILL)
      p.wait()

  def join_output(self) -> None:
    for t in self.threads:
      t.join(timeout=5)

  def _say(self, message: str) -> None:
    with self.lock:
      print(f"launch/local.py: {message}", file=sys.stderr, flush=True)


class _Interrupted(Exception):
  """The launcher got SIGINT or SIGTERM."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def _signal_group(p: subprocess.Popen, sig: int) -> None:
  try:
    os.killpg(p.pid, sig)  # the child leads its own group (start_new_session)
  except (ProcessLookupError, PermissionError):
    pass


def main(argv: list[str]) -> int:
  try:
    args, command = parse_args(argv)
  except LaunchError as e:
    print(f"launch/local.py: error: {e}", file=sys.stderr)
    return 2
  port = args.port or free_port()
  envs = [
    process_env(dict(os.environ), port, args.num_processes, i, args.devices_per_process)
    for i in range(args.num_processes)
  ]
  launcher = Launcher(command, envs, args.grace)

  def interrupted(signum, frame):
    raise _Interrupted(signum)

  signal.signal(signal.SIGTERM, interrupted)
  signal.signal(signal.SIGINT, interrupted)
  try:
    try:
      launcher.start()
    except OSError as e:  # the command does not exist or cannot be run
      launcher.stop()
      print(
        f"launch/local.py: error: cannot run {command[0]!r}: {e.strerror or e}.", file=sys.stderr
      )
      return 2
    status = launcher.wait()
  except _Interrupted as e:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    launcher._say(f"{signal.Signals(e.signum).name}; stopping the processes.")
    launcher.stop()
    status = 128 + e.signum
  launcher.join_output()
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))

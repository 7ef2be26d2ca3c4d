"""Shared fixtures: the repository root and a runner for `python -m bdjax.main`."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def run_main():
  """Runs `python -m bdjax.main ARGS...` in the repo root; returns the CompletedProcess."""

  def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
      [sys.executable, "-m", "bdjax.main", *args],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
    )

  return run

"""The caching-malloc check: what bdjax.main tells a CPU user, and when it stays quiet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bdjax import allocator

_PROBE = "from bdjax import allocator; print(allocator.tcmalloc_loaded())"


def _probe(env_extra: dict[str, str]) -> str:
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"} | env_extra
  result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env)
  assert result.returncode == 0, result.stderr
  return result.stdout.strip()


def test_without_preload_tcmalloc_is_not_loaded():
  assert _probe({}) == "False"


@pytest.mark.skipif(allocator.tcmalloc_path() is None, reason="libtcmalloc-minimal4 not installed")
def test_preloaded_tcmalloc_is_detected():
  assert _probe({"LD_PRELOAD": allocator.tcmalloc_path()}) == "True"


def test_maps_file_decides(tmp_path):
  maps = tmp_path / "maps"
  maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
  assert not allocator.tcmalloc_loaded(str(maps))
  maps.write_text("7f00-7f01 r-xp 0 08:01 2 /usr/lib/libtcmalloc_minimal.so.4.5.10\n")
  assert allocator.tcmalloc_loaded(str(maps))
  assert not allocator.tcmalloc_loaded(str(tmp_path / "missing"))


def test_note_only_on_cpu_without_tcmalloc(monkeypatch):
  assert allocator.cpu_note("gpu") is None
  assert allocator.cpu_note("tpu") is None
  monkeypatch.setattr(allocator, "tcmalloc_loaded", lambda: True)
  assert allocator.cpu_note("cpu") is None
  monkeypatch.setattr(allocator, "tcmalloc_loaded", lambda: False)
  monkeypatch.setattr(allocator, "tcmalloc_path", lambda: "/opt/lib/libtcmalloc_minimal.so.4")
  note = allocator.cpu_note("cpu")
  assert "LD_PRELOAD=/opt/lib/libtcmalloc_minimal.so.4 python -m bdjax.main" in note
  monkeypatch.setattr(allocator, "tcmalloc_path", lambda: None)
  assert "apt install libtcmalloc-minimal4" in allocator.cpu_note("cpu")

"""Whether this process runs with a caching malloc, which XLA:CPU needs to run at full speed.

XLA:CPU allocates an executable's temporary buffers afresh at every call. glibc's malloc serves
large blocks (above 32 MiB at most) with `mmap` and gives them back with `munmap`, so every
training step page-faults all its activations in again and the kernel zero-fills them. TCMalloc
keeps freed memory for the next step: with it the jitted train steps of bench/train_step.py ran
1.1-1.3x faster (bench/README.md, "Training step against open_clip"). A malloc can only be
swapped before the process starts:

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python -m bdjax.main ...

(Debian/Ubuntu: `apt install libtcmalloc-minimal4`). `make demo` and `make test` do this when
the library is installed; `bdjax.main` prints a note on the CPU when it is not in use. GPU and
TPU runs are unaffected: their device memory has its own caching allocator.
"""

from __future__ import annotations

import os

_LIBRARY = "libtcmalloc_minimal.so.4"
_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def tcmalloc_loaded(maps: str = "/proc/self/maps") -> bool:
  """Whether TCMalloc is mapped into this process (Linux; False where `maps` cannot be read)."""
  try:
    with open(maps) as f:
      return any("libtcmalloc" in line for line in f)
  except OSError:
    return False


def tcmalloc_path() -> str | None:
  """The installed TCMalloc library to put in `LD_PRELOAD`, or None."""
  paths = (os.path.join(directory, _LIBRARY) for directory in _DIRS)
  return next((path for path in paths if os.path.exists(path)), None)


def cpu_note(backend: str) -> str | None:
  """A one-line note for a CPU run without a caching malloc (None when there is nothing to say)."""
  if backend != "cpu" or tcmalloc_loaded():
    return None
  path = tcmalloc_path()
  how = (
    f"LD_PRELOAD={path} python -m bdjax.main ..."
    if path
    else "install TCMalloc (Debian/Ubuntu: apt install libtcmalloc-minimal4) and put it in "
    "LD_PRELOAD"
  )
  return (
    "bdjax: note: on the CPU, the training step runs 1.1-1.3x faster with a caching malloc: "
    f"{how} (bdjax/allocator.py)."
  )

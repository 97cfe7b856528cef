"""CPU threads for torch: one intra-op thread per process by default on a CPU-only machine.

Measured on the 2-core machines (``tatar bench threads``, figures in NOTES.md): the tiny model's matrices are too
small to gain from a second thread, and whenever anything else shares the cores (a teacher, a second stage, CI)
torch's default of one spinning thread per core made SFT steps several times slower. ``TATAR_CPU_THREADS``
overrides it (``0`` = torch's default); an environment variable rather than a param, because the thread count
does not change what a stage computes and must not make DVC re-run it. GPUs are untouched.
"""

from __future__ import annotations

import os

ENV = "TATAR_CPU_THREADS"
DEFAULT = 1


def cpu_threads() -> int:
    """The configured thread count; 0 means torch's own default."""
    raw = os.environ.get(ENV, str(DEFAULT))
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{ENV}={raw!r}: expected a whole number of threads (0 = torch's default)") from None
    if value < 0:
        raise SystemExit(f"{ENV}={raw!r}: expected 0 or more threads")
    return value


def configure_cpu_threads() -> int:
    """Apply ``cpu_threads()`` to torch unless a GPU is present; returns the threads torch now uses."""
    import torch

    n = cpu_threads()
    if n and not torch.cuda.is_available():
        torch.set_num_threads(n)
    return torch.get_num_threads()

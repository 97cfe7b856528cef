"""CPU threads for torch: one intra-op thread per process by default on a CPU-only machine.

Measured on the 2-core machines (``tatar bench threads``, figures in NOTES.md): idle, torch's default (2 threads) ran
an SFT step of the tiny model 1.7x faster than one thread; with one competing process on the cores (a teacher,
another job, a shared CI runner) one thread was 5.9x faster, and under the load of this project's shared machines
the default made whole stages several times slower. One thread is the robust choice; a dedicated idle machine
gains with ``TATAR_CPU_THREADS=0``. ``TATAR_CPU_THREADS``
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

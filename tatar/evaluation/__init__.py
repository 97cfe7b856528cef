"""Evaluation: correlations, the ``evaluate`` stage and its report."""

from tatar.evaluation.metrics import correlations

__all__ = ["correlations", "run"]


def run(params, checkpoint=None) -> None:
    """The ``evaluate`` stage (imported lazily: the metrics alone need no torch)."""
    from tatar.evaluation.stage import run as run_stage

    run_stage(params, checkpoint=checkpoint)

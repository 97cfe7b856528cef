"""Corpus validation (stage ``validate``): a Great Expectations column contract, hard rules with named
reasons, and an optional LLM judge turn teacher rationales into the SFT corpus plus a log of rejections.

Modules: ``expectations`` (GX suite, data docs), ``rules`` and ``aspects`` (hard rules), ``judge`` (verdicts via
the teacher's chat runner), ``verdict`` (the judge's contract with whoever answers, e.g. ``tatar.standins.judge``),
``report`` (metrics, summary, keep-rate policy), ``stage`` (the stage body).
"""

from tatar.validation.stage import run, validate_corpus

__all__ = ["run", "validate_corpus"]

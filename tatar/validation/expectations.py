"""The rationale table's column contract as a Great Expectations 1.x suite.

Non-null fields, unique ids, the task value set, the 0-100 score range, the ``NN.NN`` answer format, non-empty
rationales, rationales not repeated from an earlier record and per-task think length (a custom expectation)
run in an ephemeral GX context over one whole-dataframe batch. ``result_format=COMPLETE`` with
``unexpected_index_column_names=["id"]`` turns each failed expectation into the list of record ids that broke it,
so the stage rejects exactly those records and names the expectation. The validation result is saved as JSON and
rendered as GX data docs (HTML).

Great Expectations costs seconds to import: this module is imported only when the suite runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.expectations.row_conditions import Column

from tatar.config import ValidateConfig
from tatar.records import write_json
from tatar.validation.rules import Failure

SUITE = "rationale_corpus"
SITE = "corpus"
RESULT_FILE = "validation_result.json"
NOT_NULL = {
    "task": "task is present",
    "dataset": "dataset is present",
    "score_100": "ground truth is present and numeric",
    "think": "rationale is present",
    "answer": "answer is present",
    "raw": "raw teacher text is present",
    "teacher_model": "teacher identity is present",
}
ANSWER_FORMAT = r"^\d{1,3}\.\d{2}$"


# ------------------------------------------------------------------------------ custom expectation
class ColumnValuesWordCountBetween(ColumnMapMetricProvider):
    """Words (whitespace-separated tokens) per value; counted from the text, never trusted from a field."""

    condition_metric_name = "column_values.word_count_between"
    condition_value_keys = ("min_value", "max_value")

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, min_value, max_value, **kwargs):
        words = column.astype(str).str.split().str.len()
        return words.between(min_value, max_value)


class ExpectColumnValuesToHaveWordCountBetween(ColumnMapExpectation):
    """Expect each text in the column to have between min_value and max_value words (inclusive)."""

    min_value: int
    max_value: int
    map_metric = "column_values.word_count_between"
    success_keys = ("min_value", "max_value", "mostly")


# ---------------------------------------------------------------------------------------- the table
def normalise_rationale(text: str) -> str:
    """Case, punctuation and spacing folded away, so a re-punctuated copy still counts as a duplicate."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def rationale_table(rows: Sequence[dict]) -> pd.DataFrame:
    """One row per raw rationale dict (not yet schema-checked): missing keys become nulls, text stays text."""

    def text(value):
        return value if value is None or isinstance(value, str) else str(value)

    table = pd.DataFrame(
        {
            "id": [str(r["id"]) for r in rows],
            "task": [text(r.get("task")) for r in rows],
            "dataset": [text(r.get("dataset")) for r in rows],
            "score_100": pd.to_numeric(pd.Series([r.get("score_100") for r in rows], dtype=object),
                                       errors="coerce"),
            "think": [text(r.get("think")) for r in rows],
            "answer": [text(r.get("answer")) for r in rows],
            "raw": [text(r.get("raw")) for r in rows],
            "teacher_model": [text((r.get("teacher") or {}).get("model")) if isinstance(r.get("teacher"), dict)
                              else None for r in rows],
        }
    )
    # A rationale repeated for another image describes neither: the first copy stays, later ones point to it.
    first_seen: dict[str, str] = {}
    duplicate_of = []
    for id, think in zip(table["id"], table["think"]):
        key = normalise_rationale(think) if isinstance(think, str) and think.strip() else None
        duplicate_of.append(first_seen.setdefault(key, id) if key is not None else None)
    table["duplicate_of"] = [None if first == id else first for id, first in zip(table["id"], duplicate_of)]
    return table


def build_suite(cfg: ValidateConfig) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=SUITE)
    # Suite order is the order of reasons: a record is rejected for the first expectation it breaks.
    expectations = [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c, description=d) for c, d in NOT_NULL.items()),
        gxe.ExpectColumnValuesToBeUnique(column="id", description="one rationale per record id"),
        gxe.ExpectColumnValuesToBeInSet(column="task", value_set=["iqa", "iaa"], description="task is iqa or iaa"),
        gxe.ExpectColumnValuesToBeBetween(column="score_100", min_value=0, max_value=100,
                                          description="ground truth on the 0-100 scale"),
        gxe.ExpectColumnValuesToMatchRegex(column="answer", regex=ANSWER_FORMAT,
                                           description="answer formatted NN.NN"),
        gxe.ExpectColumnValuesToMatchRegex(column="think", regex=r"\S", description="rationale is not empty"),
        gxe.ExpectColumnValuesToBeNull(column="duplicate_of",
                                       description="rationale not already used for an earlier record"),
    ]
    for task, (lo, hi) in (("iqa", cfg.think_words_iqa), ("iaa", cfg.think_words_iaa)):
        expectations.append(ExpectColumnValuesToHaveWordCountBetween(
            column="think", min_value=lo, max_value=hi, row_condition=Column("task") == task,
            description=f"{task} rationale has {lo}-{hi} words",
        ))
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


# ------------------------------------------------------------------------------------------ running
@dataclass
class SuiteOutcome:
    failures: dict[str, Failure]  # record id -> first expectation it broke (suite order)
    success: bool
    result_path: Path
    docs_index: Path


def _context(docs_dir: Path):
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir.resolve())},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def check_name(config) -> str:
    """``expectation_type:column``: the check recorded for a record the expectation flags."""
    return f"{config.type}:{config.kwargs.get('column')}"


def run_suite(rows: Sequence[dict], cfg: ValidateConfig, out_dir: str | Path) -> SuiteOutcome:
    """Validate the table, save the result JSON and data docs under ``out_dir``, return per-id failures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = rationale_table(rows)
    context = _context(out_dir)
    batch = (
        context.data_sources.add_pandas("rationales")
        .add_dataframe_asset("rationale_table")
        .add_batch_definition_whole_dataframe("all_records")
    )
    suite = context.suites.add(build_suite(cfg))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="validate",
        validation_definitions=[definition],
        actions=[UpdateDataDocsAction(name="data_docs", site_names=[SITE])],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]},
    ))
    result = checkpoint.run(batch_parameters={"dataframe": table}, run_id=RunIdentifier(run_name="validate"))
    validation = next(iter(result.run_results.values()))

    # GX reports results grouped by column; walk them in suite order so a record's reason is its first failure.
    order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    failures: dict[str, Failure] = {}
    for item in sorted(validation.results, key=lambda r: order[r.expectation_config.id]):
        config = item.expectation_config
        if item.exception_info.get("raised_exception"):
            raise RuntimeError(f"GX expectation {check_name(config)} raised: "
                               f"{item.exception_info.get('exception_message')}")
        column = config.kwargs.get("column")
        for row in item.result.get("unexpected_index_list") or []:
            value = row.get(column)
            value = value.item() if hasattr(value, "item") else value  # numpy scalar -> plain repr
            detail = f"{config.description}: {column}={value!r}"[:200]
            failures.setdefault(row["id"], Failure(check_name(config), detail))

    result_path = out_dir / RESULT_FILE
    write_json(result_path, validation.to_json_dict())
    return SuiteOutcome(failures=failures, success=validation.success, result_path=result_path,
                        docs_index=out_dir / "index.html")

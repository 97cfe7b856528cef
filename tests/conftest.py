"""Shared test set-up: offline hubs, quiet and fast Prefect, and shared tiny fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


# ------------------------------------------------------------------------- tiny model (tatar.modeling)
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised Qwen2.5-VL (model + processor), built once per test session (~10 s)."""
    from tatar.config import ModelConfig
    from tatar.modeling import build_tiny_model

    cfg = ModelConfig()
    return build_tiny_model(cfg.tiny, tmp_path_factory.mktemp("tiny_model"), cfg.min_pixels, cfg.max_pixels)


# ------------------------------------------------------------------------ synthetic data (tatar.data)
def tiny_synthetic_config():
    """A very small embedded dataset: 2 training photographs, 1 test photograph, 64 px, 6 images per photograph
    and task (12 IQA + 12 IAA train records, 6 + 6 test records)."""
    from tatar.config import DataConfig, SyntheticConfig

    return DataConfig(synthetic=SyntheticConfig(
        image_size=64, sources=["astronaut", "retina", "chelsea"], test_sources=["chelsea"],
        iqa_per_source=6, iaa_variants_per_source=6, crops_per_source=1))


@pytest.fixture
def tiny_data_config():
    """A fresh ``DataConfig`` of ``tiny_synthetic_config()`` for tests that build or prepare data themselves."""
    return tiny_synthetic_config()


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """The synthetic dataset of ``tiny_synthetic_config()``, prepared once per session by the real ``prepare``
    stage into a temporary project dir (~2 s).

    Returns a ``tatar.data.prepare.Manifests`` with absolute paths:
    ``train`` (train.jsonl, IQA and IAA records), ``test`` ({"synthetic_iqa": Path, "synthetic_iaa": Path}),
    ``quarantine`` (empty) and ``report`` (report.md). Record roots are absolute, so
    ``read_records(synthetic_data.train, ManifestRecord)[0].path`` opens from any working directory.
    """
    from tatar.data.prepare import prepare

    return prepare(tiny_synthetic_config(), tmp_path_factory.mktemp("synthetic_project"))

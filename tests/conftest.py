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

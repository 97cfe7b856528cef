"""TATAR: one multimodal LLM scorer for image quality (IQA) and aesthetics (IAA).

``import tatar`` stays light: ``tatar.Scorer`` (which pulls in torch and transformers) loads on first use.
"""

__all__ = ["Scorer"]


def __getattr__(name: str):
    if name == "Scorer":
        from tatar.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'tatar' has no attribute {name!r}")

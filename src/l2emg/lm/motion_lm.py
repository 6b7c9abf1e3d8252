"""`MotionLM`: a backbone extended with motion tokens, and how a run stores and reloads it.

    lm = MotionLM.from_backbone(backbone_dir, motion_tokenizer.codebook, seed=config.lm.motion_embedding_seed)
    lm.save(run / "lm")                          # RUN/lm/backbone/ + RUN/lm/motion_vocab.json
    lm = MotionLM.load(run / "lm")
    generator = load_generator(run, method="esmoe")   # + RUN/tokenizer/ and that method's adapters
    joints = generator.motions(["a person jogs in a circle, sadly"])

On disk, `RUN/lm/`:

* `backbone/`: an ordinary Hugging Face causal-LM folder holding the extended model (resized
  embeddings with the motion rows) and the extended tokenizer, written atomically; or, for a big
  backbone saved with `save(lm_dir, base_dir=...)`, `backbone.json` naming the unmodified base folder
  plus `text_tokenizer/` (extended tokenizer) and `motion_embeddings.safetensors` (only the motion rows),
  so a 7B model is not copied into every run;
* `motion_vocab.json`: the `MotionVocab` (ids of `<som>`, `<eom>`, `<motion_0>`, K).

A trained continual method lives in a method folder `RUN/methods/<method>-<split>-o<order>/` whose
`adapter.json` says how to load it: `{"loader": "l2emg.module:function", …}`. `load_generator(run,
method=…)` imports that function (only from the `l2emg` package) and calls
`function(model, method_dir) -> prepare hook | None`: it injects the method's adapters into `model`,
loads their weights and returns the per-batch `prepare` hook for `generate_codes` (or None). Without a
method the plain backbone + motion vocabulary generates (untrained motion rows still give valid
motions).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from l2emg.config import LMConfig
from l2emg.errors import CheckpointError
from l2emg.lm.backbone import load_backbone
from l2emg.lm.generate import PrepareHook, codes_to_motion, generate_codes
from l2emg.lm.vocab import MotionVocab, add_motion_tokens, configure_motion_embeddings
from l2emg.utils.io import atomic_save_dir, atomic_write_bytes, load_json, save_json

BACKBONE_DIR = "backbone"
BACKBONE_REF = "backbone.json"
TEXT_TOKENIZER_DIR = "text_tokenizer"
MOTION_ROWS = "motion_embeddings.safetensors"
VOCAB_FILE = "motion_vocab.json"
ADAPTER_FILE = "adapter.json"


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
            save_json(lm_dir / BACKBONE_REF, {"path": str(Path(base_dir).resolve())})
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

    base = Path(load_json(lm_dir / BACKBONE_REF)["path"])
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


# ------------------------------------------------------------------------------------------------
# A run's generator
# ------------------------------------------------------------------------------------------------


METHODS_DIR = "methods"


def finished_methods(run_dir: Path) -> list[Path]:
    """Method folders of a run that hold an `adapter.json` (finished training), sorted by name."""
    root = run_dir / METHODS_DIR
    return sorted(p for p in root.iterdir() if (p / ADAPTER_FILE).exists()) if root.is_dir() else []


def find_method_dir(run_dir: Path, method: str | None) -> Path | None:
    """The method folder for `method` ("esmoe" or "esmoe-unseen-o1"); None = the plain backbone.

    Without `method`: the only finished method of the run, or None if there is none; several
    finished methods must be told apart.
    """
    finished = finished_methods(run_dir)
    names = ", ".join(p.name for p in finished) or "none"
    if method is None:
        if len(finished) > 1:
            raise CheckpointError(f"{run_dir}: several trained methods ({names}); choose one with --method")
        return finished[0] if finished else None
    matches = [p for p in finished if p.name == method] or [p for p in finished if p.name.startswith(f"{method}-")]
    if len(matches) != 1:
        what = "no finished method" if not matches else "several finished methods"
        raise CheckpointError(f"{run_dir / METHODS_DIR}: {what} named {method!r} (finished: {names})")
    return matches[0]


def adapter_loader(method_dir: Path) -> Callable[[nn.Module, Path], PrepareHook | None]:
    """The function named by `method_dir/adapter.json` (only inside the l2emg package)."""
    spec_path = method_dir / ADAPTER_FILE
    try:
        target = str(load_json(spec_path)["loader"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{spec_path}: expected {{\"loader\": \"l2emg.module:function\"}} ({err!r})") from err
    module_name, _, func_name = target.partition(":")
    if not module_name.startswith("l2emg.") or not func_name:
        raise CheckpointError(f"{spec_path}: loader {target!r} must look like l2emg.module:function")
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(f"{spec_path}: cannot import loader {target!r} ({err})") from err


@dataclass
class MotionGenerator:
    """Everything needed to turn captions into motions for one run."""

    lm: MotionLM
    motion_tokenizer: Any
    lm_config: LMConfig = field(default_factory=LMConfig)
    prepare: PrepareHook | None = None
    method_dir: Path | None = None

    def codes(self, captions: Sequence[str], **kwargs: Any) -> list[np.ndarray]:
        """Captions -> code arrays; keyword arguments override the run's `lm` generation settings."""
        settings = dict(max_codes=self.lm_config.max_codes, greedy=self.lm_config.greedy,
                        temperature=self.lm_config.temperature, top_k=self.lm_config.top_k,
                        batch_size=self.lm_config.generation_batch_size, prepare=self.prepare)
        settings.update({k: v for k, v in kwargs.items() if v is not None})
        return self.lm.generate(captions, **settings)

    def motions(self, captions: Sequence[str], **kwargs: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Captions -> (codes, raw features (T, 263), joints (T, 22, 3)) lists."""
        codes = self.codes(captions, **kwargs)
        features, joints = codes_to_motion(self.motion_tokenizer, codes)
        return codes, features, joints


def load_generator(run_dir: str | Path, method: str | None = None, device: str | torch.device = "cpu") -> MotionGenerator:
    """Load `RUN/lm/` (MotionLM), `RUN/tokenizer/` (MotionTokenizer), `RUN/config.yaml` (if present) and
    the adapters of a trained method (`find_method_dir`); see the module docstring."""
    from l2emg.config import read_saved_config
    from l2emg.tokenizer.api import MotionTokenizer

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    if not (run_dir / "lm" / VOCAB_FILE).exists():
        raise CheckpointError(f"{run_dir / 'lm' / VOCAB_FILE}: not found; this run has no language model yet "
                              "(run `l2emg train` first)")
    method_dir = find_method_dir(run_dir, method)
    lm_config = read_saved_config(run_dir / "config.yaml").lm if (run_dir / "config.yaml").exists() else LMConfig()
    lm = MotionLM.load(run_dir / "lm", dtype=lm_config.dtype)
    motion_tokenizer = MotionTokenizer.from_pretrained(run_dir / "tokenizer", device=device)
    if motion_tokenizer.codebook_size != lm.vocab.codebook_size:
        raise CheckpointError(f"{run_dir}: the motion tokenizer has {motion_tokenizer.codebook_size} codes, the language "
                              f"model's vocabulary {lm.vocab.codebook_size}")
    lm.model.to(device)
    prepare = adapter_loader(method_dir)(lm.model, method_dir) if method_dir is not None else None
    return MotionGenerator(lm, motion_tokenizer, lm_config, prepare, method_dir)

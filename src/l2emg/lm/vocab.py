"""Motion tokens in the language model's vocabulary: `<motion_0>` … `<motion_{K-1}>`, `<som>`, `<eom>`.

`add_motion_tokens` appends the K code tokens (contiguous ids, so code k is id `first_code_id + k`)
and the start/end-of-motion markers to the tokenizer and grows the model's embedding matrices.

How the new rows are made (docs/design.md, "Motion-token embeddings"): they must not become a hidden
shared parameter that every continual method overwrites, so they are *built*, not learned:

* code rows: the VQ codebook (K, D), centred, times a fixed seeded Gaussian projection D → hidden,
  each row scaled to the mean norm of the model's existing (text) rows. Codes close in the codebook
  get close embeddings, and every row has a typical text-token norm. The same directions fill the
  output (lm_head) rows, scaled to the mean norm of the existing output rows (for tied embeddings the
  one shared matrix is set once).
* `<som>` / `<eom>`: their own seeded random directions, scaled the same way.

They stay frozen for every method (`configure_motion_embeddings(..., train=False)`, the default): the
backbone is frozen under LoRA anyway. With `LMConfig.train_motion_embeddings` they train instead:
the embedding matrices get `requires_grad=True` and a gradient hook that zeroes every row that is
not a motion token, so the text rows never change. Put these parameters in an optimizer group with
`weight_decay=0`: decoupled weight decay (AdamW) would otherwise shrink the text rows even though
their gradient is zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tokenizers import AddedToken
from torch import Tensor, nn

from l2emg.errors import CheckpointError
from l2emg.utils.io import load_json, save_json
from l2emg.utils.seeding import seeded_generator

FORMAT = "l2emg-motion-vocab"
FORMAT_VERSION = 1
SOM, EOM = "<som>", "<eom>"


def code_token(k: int) -> str:
    return f"<motion_{k}>"


@dataclass(frozen=True)
class MotionVocab:
    """Where the motion tokens live in the LM vocabulary."""

    som_id: int
    eom_id: int
    first_code_id: int
    codebook_size: int
    seed: int = 0

    @property
    def code_ids(self) -> range:
        return range(self.first_code_id, self.first_code_id + self.codebook_size)

    def codes_to_ids(self, codes: Sequence[int] | np.ndarray | Tensor) -> Tensor:
        """Motion codes (N,) in [0, K) -> LM token ids (N,) int64."""
        c = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes, dtype=torch.long)
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.codebook_size):
            raise ValueError(f"motion codes must lie in [0, {self.codebook_size}), got {int(c.min())}..{int(c.max())}")
        return c + self.first_code_id

    def ids_to_codes(self, ids: Sequence[int] | np.ndarray | Tensor) -> np.ndarray:
        """LM token ids (N,) that are all code tokens -> motion codes (N,) int64."""
        i = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids, dtype=np.int64).reshape(-1)
        codes = i - self.first_code_id
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"ids {i.tolist()[:8]}… are not all motion-code tokens")
        return codes

    def motion_token_mask(self, vocab_size: int, device: torch.device | str | None = None) -> Tensor:
        """(vocab_size,) bool: True for the ids generation may emit (the K codes and `<eom>`)."""
        if self.first_code_id + self.codebook_size > vocab_size or self.eom_id >= vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the motion vocabulary")
        mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        mask[self.first_code_id : self.first_code_id + self.codebook_size] = True
        mask[self.eom_id] = True
        return mask

    def token_ids(self) -> list[int]:
        """All motion-vocabulary ids (codes, then som, eom)."""
        return [*self.code_ids, self.som_id, self.eom_id]

    # ---- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        save_json(path, {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self),
                         "som_token": SOM, "eom_token": EOM, "code_token": code_token(0).replace("0", "{k}")})

    @classmethod
    def load(cls, path: str | Path) -> "MotionVocab":
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path}: motion vocabulary file not found")
        try:
            raw = load_json(path)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an l2emg motion vocabulary file")
        try:
            return cls(int(raw["som_id"]), int(raw["eom_id"]), int(raw["first_code_id"]),
                       int(raw["codebook_size"]), int(raw.get("seed", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: malformed motion vocabulary ({err!r})") from err

    def check_tokenizer(self, tokenizer: Any, source: str | Path = "tokenizer") -> None:
        """Refuse a tokenizer whose motion-token ids differ from this vocabulary's."""
        expected = {SOM: self.som_id, EOM: self.eom_id, code_token(0): self.first_code_id,
                    code_token(self.codebook_size - 1): self.first_code_id + self.codebook_size - 1}
        actual = dict(zip(expected, tokenizer.convert_tokens_to_ids(list(expected))))
        wrong = [f"{t}: {actual[t]} (expected {i})" for t, i in expected.items() if actual[t] != i]
        if wrong:
            raise CheckpointError(f"{source}: tokenizer does not match the motion vocabulary ({'; '.join(wrong)})")


# ------------------------------------------------------------------------------------------------
# Building the rows
# ------------------------------------------------------------------------------------------------


def _unit_rows(x: Tensor, generator: torch.Generator) -> Tensor:
    """Rows scaled to unit norm; (near-)zero rows replaced by random unit directions."""
    norms = x.norm(dim=1, keepdim=True)
    degenerate = norms.squeeze(1) < 1e-8 * max(float(norms.max()), 1e-30)
    if bool(degenerate.any()):
        x = x.clone()
        x[degenerate] = torch.randn(int(degenerate.sum()), x.shape[1], generator=generator, dtype=x.dtype)
        norms = x.norm(dim=1, keepdim=True)
    return x / norms


def motion_directions(codebook: Tensor, hidden: int, seed: int) -> tuple[Tensor, Tensor]:
    """codebook (K, D) -> unit code directions (K, hidden) and unit som/eom directions (2, hidden).

    A fixed seeded Gaussian map D -> hidden of the centred codebook; float64 on the CPU so the result
    depends only on (codebook, seed), not on the device or thread count.
    """
    generator = seeded_generator(seed)
    codes = codebook.detach().to("cpu", torch.float64)
    projection = torch.randn(codes.shape[1], hidden, generator=generator, dtype=torch.float64)
    markers = torch.randn(2, hidden, generator=generator, dtype=torch.float64)
    code_dirs = _unit_rows((codes - codes.mean(0, keepdim=True)) @ projection, generator)
    return code_dirs, _unit_rows(markers, generator)


def add_motion_tokens(model: nn.Module, tokenizer: Any, codebook: Tensor, seed: int = 0) -> MotionVocab:
    """Add `<motion_0..K-1>`, `<som>`, `<eom>` to `tokenizer` and `model` (in place); return the vocab.

    Existing embedding rows are left bit-identical; new rows are built from `codebook` (K, D) as the
    module docstring says, and frozen (call `configure_motion_embeddings` to train them).
    """
    if codebook.ndim != 2 or codebook.shape[0] < 1:
        raise ValueError(f"codebook must be (K, D), got shape {tuple(codebook.shape)}")
    num_codes = int(codebook.shape[0])
    tokens = [code_token(k) for k in range(num_codes)] + [SOM, EOM]
    present = [t for t in (code_token(0), SOM, EOM) if t in tokenizer.get_vocab()]
    if present:
        raise ValueError(f"tokenizer already holds motion tokens ({', '.join(present)}); load its motion_vocab.json "
                         "instead of adding them again")
    input_embeddings = model.get_input_embeddings()
    output_embeddings = model.get_output_embeddings()
    old_rows = input_embeddings.weight.shape[0]
    text_rows = min(len(tokenizer), old_rows)  # rows that belong to real text tokens
    added = tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in tokens], special_tokens=True)
    if added != len(tokens):
        raise ValueError(f"tokenizer accepted {added} of {len(tokens)} motion tokens")
    ids = tokenizer.convert_tokens_to_ids(tokens)
    first = ids[0]
    if ids[:num_codes] != list(range(first, first + num_codes)):
        raise ValueError("motion-code tokens did not receive contiguous ids")
    vocab = MotionVocab(som_id=ids[-2], eom_id=ids[-1], first_code_id=first, codebook_size=num_codes, seed=int(seed))

    new_rows = max(old_rows, max(ids) + 1)
    if new_rows != old_rows:
        model.resize_token_embeddings(new_rows, mean_resizing=False)
    input_embeddings = model.get_input_embeddings()
    output_embeddings = model.get_output_embeddings()
    hidden = input_embeddings.weight.shape[1]
    code_dirs, marker_dirs = motion_directions(codebook, hidden, seed)
    new_ids = torch.tensor(vocab.token_ids())
    directions = torch.cat([code_dirs, marker_dirs])  # (K + 2, hidden), unit rows, in token_ids() order
    matrices = [input_embeddings.weight]
    if output_embeddings is not None and output_embeddings.weight is not input_embeddings.weight:
        matrices.append(output_embeddings.weight)
    with torch.no_grad():
        for weight in matrices:
            scale = weight[:text_rows].float().norm(dim=1).mean().item()
            weight[new_ids.to(weight.device)] = (directions * scale).to(weight.device, weight.dtype)
    configure_motion_embeddings(model, vocab, train=False)
    return vocab


# ------------------------------------------------------------------------------------------------
# Frozen or trainable
# ------------------------------------------------------------------------------------------------


def _embedding_matrices(model: nn.Module) -> list[nn.Parameter]:
    params = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not params[0]:
        params.append(out.weight)
    return params


def configure_motion_embeddings(model: nn.Module, vocab: MotionVocab, train: bool) -> list[nn.Parameter]:
    """Freeze the embedding matrices (train=False) or let only their motion-token rows learn.

    Returns the parameters to hand to the optimizer (empty when frozen); give them weight_decay=0.
    Hooks from an earlier call are removed first, so calling it again switches cleanly.
    """
    params = _embedding_matrices(model)
    for p in params:
        for handle in getattr(p, "_l2emg_row_hooks", []):
            handle.remove()
        p._l2emg_row_hooks = []  # type: ignore[attr-defined]
        p.requires_grad_(train)
    if not train:
        return []
    for p in params:
        row_mask = torch.zeros(p.shape[0], 1, dtype=p.dtype, device=p.device)
        row_mask[torch.tensor(vocab.token_ids(), device=p.device)] = 1
        p._l2emg_row_hooks.append(p.register_hook(lambda g, m=row_mask: g * m.to(device=g.device, dtype=g.dtype)))  # type: ignore[attr-defined]
    return params

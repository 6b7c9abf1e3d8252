"""The output layer restricted to the motion vocabulary, for decoding and (optionally) for training.

    with restricted_head(model, ids):            # ids (R,): the token ids whose logits are computed
        logits = model(...).logits               # (…, R) instead of (…, V)

A pretrained LLM's output layer has tens of thousands of word rows (SmolLM2: 49 152). Decoding a
motion never emits a word, so `l2emg.lm.generate` computes only the K code rows and `<eom>`. With
`lm.motion_softmax` the training loss does the same: its softmax runs over the motion targets' own
vocabulary (`training_ids`: the K codes, `<eom>`, the EOS after it) and the labels are re-indexed into
it (`to_row_labels`). Without it a pretrained LLM starts with a loss of ~27 nats on motion targets
(every fresh motion row scores far below the words the LLM expects at an assistant's turn), and the
adapters spend their first updates pushing 49 k word logits down instead of learning motion.

While restricted, `model.config.vocab_size` is R (Hugging Face's causal-LM loss reshapes logits by it).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2emg.lm.prompts import IGNORE_INDEX
from l2emg.lm.vocab import MotionVocab


class RowHead(nn.Module):
    """An output layer that computes only the logits of `rows` (R,) token ids: (…, R).

    A plain `nn.Linear` head is read through its weight rows (sliced on every call, so it follows a
    trained or merged weight); a head with its own `forward_rows(x, rows)` (a LoRA-wrapped `lm_head`,
    `l2emg.continual.lora.ExpertLinear`) does it itself, so its adapters apply to the same rows."""

    def __init__(self, head: nn.Module, rows: Tensor):
        super().__init__()
        self.head, self.rows = head, rows

    @property
    def weight(self) -> Tensor:
        return self.head.weight

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self.head, "forward_rows"):
            return self.head.forward_rows(x, self.rows)
        bias = getattr(self.head, "bias", None)
        return F.linear(x, self.head.weight[self.rows], None if bias is None else bias[self.rows])


@contextmanager
def restricted_head(model: nn.Module, rows: Tensor):
    """While inside, `model`'s logits are those of the token ids `rows` (R,) only, in that order."""
    head = model.get_output_embeddings()
    if isinstance(head, RowHead):  # already restricted (e.g. generation inside a training step)
        head = head.head
    vocab_size = model.config.vocab_size
    model.set_output_embeddings(RowHead(head, rows))
    model.config.vocab_size = len(rows)
    try:
        yield
    finally:
        model.set_output_embeddings(head)
        model.config.vocab_size = vocab_size


def decoding_ids(vocab: MotionVocab, device: torch.device | str | None = None) -> Tensor:
    """(K + 1,): the ids decoding may emit: the K codes, then `<eom>`."""
    return torch.tensor([*vocab.code_ids, vocab.eom_id], device=device)


def training_ids(vocab: MotionVocab, eos_id: int | None, device: torch.device | str | None = None) -> Tensor:
    """The ids a motion target is made of: the K codes, `<eom>`, and the EOS after it (if any)."""
    ids = [*vocab.code_ids, vocab.eom_id] + ([int(eos_id)] if eos_id is not None and eos_id != vocab.eom_id else [])
    return torch.tensor(ids, device=device)


def to_row_labels(labels: Tensor, ids: Tensor) -> Tensor:
    """Labels (token ids, IGNORE_INDEX elsewhere) -> positions in `ids`; a label outside `ids` is an error."""
    lookup = torch.full((int(ids.max()) + 1,), -1, dtype=torch.long, device=labels.device)
    lookup[ids.to(labels.device)] = torch.arange(len(ids), device=labels.device)
    keep = labels != IGNORE_INDEX
    if bool((labels[keep] > int(ids.max())).any()) or bool((lookup[labels[keep]] < 0).any()):
        raise ValueError("a training label is not a motion-target token (lm.motion_softmax needs motion-only targets)")
    out = labels.clone()
    out[keep] = lookup[labels[keep]]
    return out

"""Training data for the tokenizer: normalised feature arrays and random fixed-length windows.

Like T2M-GPT, a batch is built by choosing motions uniformly at random and cropping a random
window of `window` frames out of each; motions shorter than the window are not used for training
(they are still encoded and evaluated whole). All draws come from a `torch.Generator` that the
trainer checkpoints, so a resumed run draws the same windows as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from l2emg.errors import DataError
from l2emg.motion.features import FEATURE_DIM
from l2emg.utils.seeding import seeded_generator


@dataclass
class FeatureBank:
    """All motions of a split, normalised, stored end to end: frames (ΣT, F), starts (M,), lengths (M,)."""

    frames: Tensor
    starts: Tensor
    lengths: Tensor
    motion_ids: list[str]

    @classmethod
    def from_dataset(cls, dataset, split: str, mean: np.ndarray, std: np.ndarray) -> "FeatureBank":
        """Load every motion of `split` from a `MotionDataset`, normalised with mean/std."""
        records = dataset.split(split)
        arrays, ids = [], []
        for record in records:
            features = dataset.features(record.motion_id)
            if not np.all(np.isfinite(features)):
                raise DataError(f"{dataset.root}: motion {record.motion_id!r} has NaN or inf features")
            arrays.append((features - mean) / std)
            ids.append(record.motion_id)
        return cls.from_arrays(arrays, ids)

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], ids: list[str]) -> "FeatureBank":
        lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        starts = torch.zeros_like(lengths)
        if len(arrays) > 1:
            starts[1:] = torch.cumsum(lengths, 0)[:-1]
        frames = (
            torch.from_numpy(np.concatenate(arrays, axis=0).astype(np.float32))
            if arrays
            else torch.zeros(0, FEATURE_DIM)
        )
        return cls(frames, starts, lengths, list(ids))

    def __len__(self) -> int:
        return len(self.motion_ids)

    def motion(self, index: int) -> Tensor:
        """(T_i, F) normalised features of motion `index`."""
        start = int(self.starts[index])
        return self.frames[start : start + int(self.lengths[index])]


class WindowSampler:
    """Random (B, window, F) crops from the motions of a bank that are at least `window` long."""

    def __init__(self, bank: FeatureBank, window: int, batch_size: int, source: str = "training split"):
        eligible = torch.nonzero(bank.lengths >= window).flatten()
        if eligible.numel() == 0:
            longest = int(bank.lengths.max()) if len(bank) else 0
            raise DataError(
                f"{source}: no motion has at least {window} feature frames (longest: {longest}); "
                f"lower tokenizer.window"
            )
        self.bank = bank
        self.window = window
        self.batch_size = batch_size
        self.eligible = eligible  # (M',) motion indices
        self.offsets = torch.arange(window)

    @property
    def num_motions(self) -> int:
        return int(self.eligible.numel())

    def sample(self, generator: torch.Generator, batch_size: int | None = None) -> Tensor:
        """-> (B, window, F) windows; consumes the generator deterministically."""
        b = batch_size or self.batch_size
        pick = self.eligible[torch.randint(0, self.eligible.numel(), (b,), generator=generator)]
        room = self.bank.lengths[pick] - self.window + 1  # (B,) possible start offsets
        offset = (torch.rand(b, generator=generator) * room).long().clamp(max=room - 1)
        index = (self.bank.starts[pick] + offset)[:, None] + self.offsets[None, :]  # (B, window)
        return self.bank.frames[index]


def fixed_windows(bank: FeatureBank, window: int, count: int, seed: int) -> Tensor | None:
    """`count` windows drawn once with their own seed (validation); None when no motion is long enough."""
    if len(bank) == 0 or int(bank.lengths.max()) < window:
        return None
    sampler = WindowSampler(bank, window, count)
    return sampler.sample(seeded_generator(seed))

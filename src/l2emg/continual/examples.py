"""Instruction examples for the language model: (instruction + caption) -> motion tokens."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from l2emg.data.stream import InstructionSample
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS
from l2emg.lm.prompts import IGNORE_INDEX, collate, encode_example

EMOTION_INDEX = {e: k for k, e in enumerate(EMOTIONS)}
UNLABELLED = -100  # emotion label of motions without one (ignored by the emotion loss)


def build_examples(samples: Sequence[InstructionSample], codes: dict[str, Sequence[int]], tokenizer: Any,
                   vocab: Any, max_length: int) -> list[dict[str, Any]]:
    """One tokenised example per instruction sample; each keeps its emotion label and scenario."""
    examples = []
    for sample in samples:
        if sample.motion_id not in codes:
            raise DataError(f"codes.json: no motion codes for motion {sample.motion_id!r}")
        example = encode_example(tokenizer, vocab, sample.caption, codes[sample.motion_id], max_length,
                                 motion_id=sample.motion_id, instruction=sample.instruction)
        example["emotion"] = EMOTION_INDEX.get(sample.emotion, UNLABELLED) if sample.emotion else UNLABELLED
        example["scenario"] = sample.scenario
        example["motion_id"] = sample.motion_id
        examples.append(example)
    return examples


def corrupt_motion_codes(input_ids: Tensor, vocab: Any, probability: float,
                         generator: torch.Generator | None = None) -> Tensor:
    """Replace each motion-code input token by a uniformly random code with `probability` (B, L) -> (B, L).

    T2M-GPT's input corruption (`pkeep` in its training script; its official setting keeps 50 %):
    the labels are not touched, so the model still has to predict the true next code, but it can no
    longer copy it from a reliable motion context and has to read the caption. Without it a small
    model learns that codes repeat and ignores the text. Prompt tokens, markers and padding are kept.
    """
    if probability <= 0:
        return input_ids
    first, size = vocab.first_code_id, vocab.codebook_size
    is_code = (input_ids >= first) & (input_ids < first + size)
    # Drawn on the generator's (CPU) device, so a run's corruption does not depend on where it trains.
    hit = (torch.rand(input_ids.shape, generator=generator) < probability).to(input_ids.device)
    random_codes = torch.randint(first, first + size, input_ids.shape, generator=generator).to(input_ids.device)
    return torch.where(is_code & hit, random_codes, input_ids)


def drop_captions(examples: Sequence[dict[str, Any]], unconditional_prompt: Sequence[int], probability: float,
                  generator: torch.Generator | None = None) -> list[dict[str, Any]]:
    """Replace the prompt of each example by the caption-less one with `probability` (caption dropout).

    The model then also learns p(motion | instruction alone), the unconditional half of classifier-free
    guidance (`lm.generate`, `guidance_scale`). A dropped example loses its emotion label too: nothing
    in its prompt says which emotion it is. The target (motion tokens) is kept.
    """
    if probability <= 0:
        return list(examples)
    hit = torch.rand(len(examples), generator=generator) < probability
    prompt = list(unconditional_prompt)
    out = []
    for example, drop in zip(examples, hit.tolist()):
        if drop:
            target = example["input_ids"][example["prompt_length"]:]
            example = {**example, "input_ids": prompt + target,
                       "labels": [IGNORE_INDEX] * len(prompt) + example["labels"][example["prompt_length"]:],
                       "prompt_length": len(prompt), "emotion": UNLABELLED}
        out.append(example)
    return out


def collate_examples(examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """`lm.prompts.collate` plus the emotion labels (B,)."""
    batch = collate(examples, pad_id)
    batch["emotion"] = torch.tensor([e["emotion"] for e in examples], dtype=torch.long)
    return batch


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of examples of similar length (Hugging Face's `group_by_length`), reshuffled every epoch.

    Each epoch draws a permutation from `generator`, cuts it into mega-batches of `megabatch` batches,
    sorts each mega-batch by length and cuts it into batches, then shuffles the batch order. Every
    example is seen once per epoch as with `shuffle=True`, but a batch pads to a length its examples
    nearly share: on the default profile 24 % of a random batch's positions are padding, 3 % of a
    grouped one's (benchmarks/stream_profile.py).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator, megabatch: int = 50):
        super().__init__()
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator
        self.megabatch = megabatch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        size = self.batch_size * self.megabatch
        batches = []
        for start in range(0, len(order), size):
            group = sorted(order[start:start + size], key=lambda i: self.lengths[i])
            batches += [group[k:k + self.batch_size] for k in range(0, len(group), self.batch_size)]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]

"""Prompts and targets: what the language model reads and what it learns to write.

    prompt  = "{INSTRUCTION}\\n{caption}\\n"  tokenised (with the tokenizer's own BOS, if any), then <som>
    target  = <motion_c1> … <motion_cN> <eom> </s>

A tokenizer with a chat template (an instruction-tuned LLM such as SmolLM2-Instruct) gets the prompt
in its own template instead: the instruction as the system message, the caption as the user message,
then the assistant's turn, whose answer is `<som>` + the motion (its EOS, `<|im_end|>`, closes it):

    <|im_start|>system\\n{INSTRUCTION}<|im_end|>\\n<|im_start|>user\\n{caption}<|im_end|>\\n<|im_start|>assistant\\n

The instruction is the paper's ("Generate a motion sequence that aligns with the following
emotional text description."). The loss is taken on the target only (labels are -100 on the
prompt). `<som>` is appended by id rather than written into the text, so the layout is the same for
every tokenizer (the embedded BPE, LLaMA's SentencePiece, Qwen's …).

Training batches are right-padded; generation prompts are left-padded (every prompt then ends in
`<som>` at the last position, so one decoding step serves the whole batch). `prompt_mask` marks the
prompt tokens (BOS + instruction + caption + `<som>`), exactly the tokens a generation prompt holds:
ES-MoE's emotion block reads their embeddings (X) in training and generation alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from l2emg.data.stream import INSTRUCTION
from l2emg.errors import DataError
from l2emg.lm.vocab import MotionVocab

PROMPT_TEMPLATE = "{instruction}\n{caption}\n"
IGNORE_INDEX = -100

__all__ = ["INSTRUCTION", "PROMPT_TEMPLATE", "IGNORE_INDEX", "format_prompt", "uses_chat_template", "chat_prompt", "prompt_ids", "encode_example",
           "collate", "encode_prompts", "position_ids"]


def format_prompt(caption: str, instruction: str = INSTRUCTION) -> str:
    """The prompt text for a caption (without the `<som>` marker)."""
    return PROMPT_TEMPLATE.format(instruction=instruction, caption=caption.strip())


def uses_chat_template(tokenizer: Any) -> bool:
    """True for a tokenizer that carries a chat template (its prompts are written in it)."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer: Any, caption: str, instruction: str = INSTRUCTION) -> str:
    """The prompt text in the tokenizer's chat template (system: instruction, user: caption)."""
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": caption.strip()}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, vocab: MotionVocab, caption: str, instruction: str = INSTRUCTION) -> list[int]:
    """Token ids of the prompt, ending in `<som>`."""
    if uses_chat_template(tokenizer):  # the template writes its own special tokens
        ids = tokenizer(chat_prompt(tokenizer, caption, instruction), add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(format_prompt(caption, instruction), add_special_tokens=True)["input_ids"]
    return list(ids) + [vocab.som_id]


def encode_example(
    tokenizer: Any,
    vocab: MotionVocab,
    caption: str,
    codes: Sequence[int] | np.ndarray,
    max_length: int,
    motion_id: str | None = None,
    instruction: str = INSTRUCTION,
) -> dict[str, Any]:
    """One training example -> {input_ids (L,), labels (L,), prompt_length} (lists of ints).

    labels are -100 on the `prompt_length` prompt tokens and equal the target ids after them.
    Raises `DataError` (naming the caption and motion) when the codes are empty or
    prompt + target exceed `max_length`.
    """
    where = f"motion {motion_id!r}, caption {caption!r}" if motion_id is not None else f"caption {caption!r}"
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0:
        raise DataError(f"{where}: no motion codes")
    prompt = prompt_ids(tokenizer, vocab, caption, instruction)
    try:
        target = vocab.codes_to_ids(codes).tolist() + [vocab.eom_id]
    except ValueError as err:
        raise DataError(f"{where}: {err}") from err
    if tokenizer.eos_token_id is not None:
        target.append(tokenizer.eos_token_id)
    total = len(prompt) + len(target)
    if total > max_length:
        raise DataError(
            f"{where}: prompt ({len(prompt)} tokens) + motion target ({len(target)} tokens) = {total} tokens "
            f"exceeds the context of {max_length} tokens (lm.max_length); shorten the caption or the motion"
        )
    return {"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target,
            "prompt_length": len(prompt)}


def collate(examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Right-pad examples -> input_ids, attention_mask, labels, prompt_mask, each (B, L).

    attention_mask is int64 (1 = token), prompt_mask bool (True on prompt tokens), labels -100 on
    the prompt and the padding.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    length = max(len(e["input_ids"]) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, length), int(pad_id), dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    prompt_mask = torch.zeros((batch, length), dtype=torch.bool)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[row, :n] = torch.as_tensor(e["input_ids"])
        labels[row, :n] = torch.as_tensor(e["labels"])
        attention_mask[row, :n] = 1
        prompt_mask[row, : e["prompt_length"]] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "prompt_mask": prompt_mask}


def encode_prompts(
    tokenizer: Any, vocab: MotionVocab, captions: Sequence[str], instruction: str = INSTRUCTION,
    max_length: int | None = None,
) -> dict[str, Tensor]:
    """Left-padded generation prompts -> input_ids (B, L) and attention_mask (B, L) int64.

    Every row ends in `<som>`. With `max_length`, a prompt longer than that raises `DataError`.
    """
    if not captions:
        raise ValueError("encode_prompts needs at least one caption")
    rows = [prompt_ids(tokenizer, vocab, c, instruction) for c in captions]
    if max_length is not None:
        for caption, ids in zip(captions, rows):
            if len(ids) >= max_length:
                raise DataError(f"caption {caption!r}: prompt has {len(ids)} tokens, the context holds "
                                f"{max_length} (lm.max_length) and needs room for motion tokens")
    length = max(len(r) for r in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), length), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, length - len(ids):] = torch.as_tensor(ids)
        attention_mask[row, length - len(ids):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counting only real tokens (left padding gets 0): (B, L) int64."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

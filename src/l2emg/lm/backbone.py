"""The language-model backbone: any local Hugging Face causal LM, or the embedded tiny LLaMA.

    path = build_tiny_backbone(config.lm, captions, "runs/default/lm/base")   # once; reused after
    model, tokenizer = load_backbone(path)                                    # or LLaMA-2-7B's folder

The embedded backbone (docs/design.md, "The embedded backbone"): no pretrained weights can be downloaded here, so we build a
`transformers` `LlamaForCausalLM` (RMSNorm, rotary positions, SwiGLU, untied input/output embeddings
as LLaMA-2) from `LMConfig.tiny_*`, with its own byte-level BPE tokenizer trained on the texts, and
give it a short language warm-up on instruction + caption text only (next-token prediction, no motion
tokens) so that, like a pretrained LLM, it knows the words but not the motions. It is saved as an
ordinary HF model folder (`config.json`, `model.safetensors`, tokenizer files) plus `warmup.json` (loss
before/after, steps, seconds), so it loads exactly like any other backbone.

The folder is written to a temporary sibling and renamed into place, so an interrupted build never
looks finished; a finished folder is reused without any work.
"""

from __future__ import annotations

import pickle
import random
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from torch import nn

from l2emg.config import LMConfig
from l2emg.errors import CheckpointError
from l2emg.utils.hf import quiet_transformers
from l2emg.utils.io import atomic_save_dir, load_json, save_json
from l2emg.utils.precision import use_cpu_attention
from l2emg.utils.progress import progress_bar
from l2emg.utils.schedule import make_optimizer, make_scheduler

WARMUP_FILE = "warmup.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ------------------------------------------------------------------------------------------------
# Loading any backbone folder
# ------------------------------------------------------------------------------------------------


def missing_backbone_files(path: Path) -> list[str]:
    """What a HF causal-LM folder lacks: config.json, weights, tokenizer."""
    missing = []
    if not (path / "config.json").exists():
        missing.append("config.json")
    if not any((path / f).exists() for f in WEIGHT_FILES) and not list(path.glob("model-*.safetensors")):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    return missing


def weights_file(path: Path) -> Path:
    """The weights file of a backbone folder that transformers loads (safetensors first), or the folder."""
    for name in WEIGHT_FILES:
        if (path / name).exists():
            return path / name
    shards = sorted(path.glob("model-*.safetensors"))
    return shards[0] if shards else path


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def load_backbone(path: str | Path, dtype: torch.dtype | str | None = None) -> tuple[nn.Module, Any]:
    """Load a local HF causal-LM folder -> (model in eval mode, tokenizer). Nothing is downloaded.

    A folder that is missing, or lacks config.json / weights / tokenizer files, is refused with a
    `CheckpointError` naming the folder and what is missing.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: backbone folder not found (expected a Hugging Face causal-LM directory)")
    missing = missing_backbone_files(path)
    if missing:
        raise CheckpointError(f"{path}: not a usable Hugging Face causal-LM folder; missing {', '.join(missing)}")
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:  # tokenizers raises a bare Exception for a corrupt tokenizer.json
        raise CheckpointError(f"{path}: could not load the backbone's tokenizer ({_first_line(err)})") from err
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or torch.float32)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{weights_file(path)}: a pickle checkpoint that torch refuses to load safely "
                              f"(weights_only: it holds more than tensors, or is corrupt); convert it to "
                              f"model.safetensors with save_pretrained where you trust it") from err
    except (SafetensorError, EOFError) as err:  # a corrupt or truncated weights file
        raise CheckpointError(f"{weights_file(path)}: corrupt or truncated weights ({_first_line(err)}); "
                              f"copy the backbone folder again") from err
    except RuntimeError as err:  # torch: a damaged zip archive, tensors that do not fit the config
        raise CheckpointError(f"{weights_file(path)}: cannot load these weights ({_first_line(err)})") from err
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: could not load the backbone ({_first_line(err)})") from err
    if tokenizer.pad_token_id is None:  # LLaMA-2 has no pad token; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    return use_cpu_attention(model).eval(), tokenizer


# ------------------------------------------------------------------------------------------------
# The embedded tiny LLaMA
# ------------------------------------------------------------------------------------------------


def tiny_llama_config(lm: LMConfig, vocab_size: int, tokenizer: Any) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=lm.tiny_hidden,
        intermediate_size=lm.tiny_intermediate,
        num_hidden_layers=lm.tiny_layers,
        num_attention_heads=lm.tiny_heads,
        num_key_value_heads=lm.tiny_heads,
        max_position_embeddings=lm.max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def warmup_texts(texts: Sequence[str], max_texts: int, seed: int) -> list[str]:
    """The warm-up corpus: instruction + caption prompts (the prompt template), distinct, seeded sample."""
    from l2emg.lm.prompts import format_prompt

    unique = sorted({t.strip() for t in texts if t and t.strip()})
    if len(unique) > max_texts:
        unique = sorted(random.Random(seed).sample(unique, max_texts))
    return [format_prompt(t) for t in unique]


def _batches(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    return [ids[:max_length] + [tokenizer.eos_token_id]
            for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad token lists -> input_ids, attention_mask, labels (-100 on padding), each (B, L)."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1
    return ids, mask, ids.masked_fill(mask == 0, -100)


@torch.no_grad()
def text_loss(model: nn.Module, seqs: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy of `model` on token sequences (eval mode)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        ids, mask, labels = _pad(seqs[start : start + batch_size], pad_id)
        n = int((labels[:, 1:] != -100).sum())
        total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def warm_up(model: nn.Module, tokenizer: Any, texts: list[str], lm: LMConfig, progress: bool = True) -> dict[str, Any]:
    """Next-token training on `texts` (already formatted prompts); returns the loss record.

    AdamW, linear warm-up over the first 10 % of steps then cosine decay; a seeded sampler; the
    held-out loss (a seeded 10 % of the texts, at most 128) is measured before and after.
    """
    rng = random.Random(lm.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    held = max(1, min(128, len(texts) // 10)) if len(texts) > 1 else 0
    eval_seqs = _batches(tokenizer, [texts[i] for i in order[:held]] or texts[:1], lm.max_positions - 1)
    train_seqs = _batches(tokenizer, [texts[i] for i in order[held:]] or texts, lm.max_positions - 1)
    pad_id = tokenizer.pad_token_id
    record: dict[str, Any] = {"steps": lm.warmup_steps, "batch_size": lm.warmup_batch_size, "lr": lm.warmup_lr,
                              "texts": len(texts), "held_out_texts": len(eval_seqs),
                              "loss_before": text_loss(model, eval_seqs, pad_id)}
    optimizer = make_optimizer(model.parameters(), lm.warmup_lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = make_scheduler(optimizer, "warmup_cosine", total=lm.warmup_steps, warmup=max(1, lm.warmup_steps // 10),
                               min_lr_ratio=0.1, form="peak")
    start = time.perf_counter()
    model.train()
    losses = []
    pool: list[int] = []
    with progress_bar("LM warm-up", lm.warmup_steps, enabled=progress and lm.warmup_steps > 0) as bar:
        for _step in range(lm.warmup_steps):
            if len(pool) < lm.warmup_batch_size:
                fresh = list(range(len(train_seqs)))
                rng.shuffle(fresh)
                pool += fresh
            batch, pool = pool[: lm.warmup_batch_size], pool[lm.warmup_batch_size :]
            ids, mask, labels = _pad([train_seqs[i] for i in batch], pad_id)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.advance(info=f"loss {losses[-1]:.3f}")
    model.eval()
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["train_loss_first"] = losses[0] if losses else None
    record["train_loss_last"] = sum(losses[-10:]) / len(losses[-10:]) if losses else None
    record["loss_after"] = text_loss(model, eval_seqs, pad_id)
    return record


def build_tiny_backbone(lm: LMConfig, texts: Sequence[str], out_dir: str | Path, progress: bool = True) -> Path:
    """Build, warm up and save the embedded tiny LLaMA with its own text tokenizer; return its folder.

    `texts` are captions (the instruction is added by the prompt template). A finished folder
    (config, weights, tokenizer and `warmup.json` present) is returned as is.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir() and not missing_backbone_files(out_dir) and (out_dir / WARMUP_FILE).exists():
        return out_dir
    quiet_transformers()
    from transformers import LlamaForCausalLM

    from l2emg.lm.prompts import INSTRUCTION
    from l2emg.lm.text_tokenizer import build_text_tokenizer

    corpus = warmup_texts(texts, lm.warmup_max_texts, lm.seed)
    if not corpus:
        raise ValueError("build_tiny_backbone needs caption texts for the tokenizer and the warm-up")
    tokenizer = build_text_tokenizer(corpus + [INSTRUCTION], lm.text_vocab_size)
    torch.manual_seed(lm.seed)
    model = LlamaForCausalLM(tiny_llama_config(lm, len(tokenizer), tokenizer)).float()
    record = warm_up(model, tokenizer, corpus, lm, progress=progress)
    record["parameters"] = sum(p.numel() for p in model.parameters())

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_json(tmp / WARMUP_FILE, record)

    return atomic_save_dir(out_dir, write)


def read_warmup_record(path: str | Path) -> dict[str, Any] | None:
    """The warm-up record of an embedded backbone folder (None for other backbones)."""
    file = Path(path) / WARMUP_FILE
    return load_json(file) if file.exists() else None

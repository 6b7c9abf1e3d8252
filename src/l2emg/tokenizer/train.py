"""Stage 1 of the paper: train the VQ-VAE motion tokenizer on every scenario's training split.

    summary = train_tokenizer(config, "runs/default/data", "runs/default/tokenizer")
    tokenizer = MotionTokenizer.from_pretrained("runs/default/tokenizer")

Random windows of the union of all scenarios' training motions, AdamW with linear warm-up and step
decay, periodic validation on fixed windows of the val split, and resumable checkpoints.

Resuming is exact: `train_state.safetensors` holds the model (with the codebook's EMA buffers),
AdamW's moments, the window/reset generator's state, torch's global RNG state, the step and the
running log, so a run that is stopped and started again ends with bit-for-bit the same weights
as one that never stopped. The learning rate is a pure function of the step, so the schedule
needs no state of its own. Re-running a finished training returns at once; a checkpoint written
with another tokenizer config (or another dataset) is refused, naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from l2emg.config import Config, TokenizerConfig
from l2emg.errors import CheckpointError, DataError
from l2emg.motion.features import recover_joints
from l2emg.tokenizer.api import CONFIG_FILE, MODEL_FILE, MotionTokenizer, config_differences, load_model_state
from l2emg.tokenizer.checks import group_rms
from l2emg.tokenizer.losses import tokenizer_loss
from l2emg.tokenizer.vqvae import VQVAE
from l2emg.tokenizer.windows import FeatureBank, WindowSampler, fixed_windows
from l2emg.utils.io import atomic_write_bytes, load_json, save_json
from l2emg.utils.progress import progress_bar
from l2emg.utils.schedule import make_optimizer, make_scheduler, step_decay
from l2emg.utils.seeding import seeded_generator

STATE_FILE = "train_state.safetensors"
HISTORY_FILE = "history.json"
STATE_FORMAT = "l2emg-tokenizer-train-state"
# Fields that may change between a checkpoint and its resumption (they do not alter the weights'
# trajectory up to the checkpoint's step); every other field must match.
RESUMABLE_FIELDS = {"iterations", "val_interval", "val_windows", "checkpoint_interval", "eval_batch_size"}
VAL_SEED_OFFSET = 12345  # validation windows use their own generator (seed + this)


def learning_rate(cfg: TokenizerConfig, step: int) -> float:
    """lr at optimisation step `step` (0-based): linear warm-up, then × gamma at each decay step."""
    return step_decay(step, cfg.warmup_steps, cfg.lr_decay_steps, cfg.lr_decay_gamma, peak=cfg.lr)


def feature_bounds(bank: FeatureBank) -> dict[str, float]:
    """Largest per-motion RMS of each feature group among the (normalised) training motions."""
    worst: dict[str, float] = {}
    for i in range(len(bank)):
        x = bank.motion(i)[None]  # (1, T, F)
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        for name, rms in group_rms(x, mask).items():
            worst[name] = max(worst.get(name, 0.0), float(rms[0]))
    return worst


def dataset_fingerprint(dataset, train_ids: list[str]) -> dict[str, Any]:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.mean, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(dataset.std, dtype=np.float32).tobytes())
    digest.update("\n".join(train_ids).encode())
    return {"root": str(dataset.root), "train_motions": len(train_ids), "sha256": digest.hexdigest()[:16]}


# ---- checkpoints ------------------------------------------------------------------------------


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    out = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            out[f"optim/{index}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], path: Path) -> None:
    state_dict = optimizer.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        _, index, key = name.split("/", 2)
        state.setdefault(int(index), {})[key] = value
    num_params = len(state_dict["param_groups"][0]["params"])
    if state and sorted(state) != list(range(num_params)):
        raise CheckpointError(f"{path}: optimizer state has {len(state)} parameters, the model {num_params}")
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)


def save_train_state(
    path: Path,
    model: VQVAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    log: dict[str, Any],
    dataset: dict[str, Any],
) -> None:
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update(_optimizer_tensors(optimizer))
    tensors["rng/windows"] = generator.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    metadata = {
        "format": STATE_FORMAT,
        "step": str(step),
        "config": json.dumps(model.cfg.model_dump(mode="json")),
        "log": json.dumps(log),
        "dataset": json.dumps(dataset),
    }
    atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))


def load_train_state(
    path: Path,
    cfg: TokenizerConfig,
    model: VQVAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    dataset: dict[str, Any],
) -> tuple[int, dict[str, Any]]:
    """Restore everything `save_train_state` wrote; returns (step, log)."""
    try:
        raw = path.read_bytes()
        tensors = load_safetensors(raw)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable training checkpoint ({err}); delete it to start over") from err
    if metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a tokenizer training checkpoint")
    try:
        saved = TokenizerConfig.model_validate(json.loads(metadata["config"]))
    except (KeyError, json.JSONDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: training checkpoint has no valid config ({err})") from err
    fields = [f for f in TokenizerConfig.model_fields if f not in RESUMABLE_FIELDS]
    diffs = config_differences(saved, cfg, fields)
    if diffs:
        raise CheckpointError(
            f"{path}: training checkpoint is from another tokenizer config ({'; '.join(diffs)}); "
            f"use another output folder or the same settings"
        )
    saved_data = json.loads(metadata.get("dataset", "{}"))
    if saved_data.get("sha256") != dataset["sha256"]:
        raise CheckpointError(
            f"{path}: training checkpoint was made on another dataset ({saved_data.get('root')}, "
            f"{saved_data.get('train_motions')} training motions; now {dataset['root']}, "
            f"{dataset['train_motions']}); use another output folder"
        )
    model_tensors = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    load_model_state(model, model_tensors, path)
    _load_optimizer(optimizer, {k: v for k, v in tensors.items() if k.startswith("optim/")}, path)
    generator.set_state(tensors["rng/windows"])
    torch.set_rng_state(tensors["rng/torch"])
    return int(metadata["step"]), json.loads(metadata["log"])


# ---- validation -------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: VQVAE, windows: Tensor, mean: Tensor, std: Tensor, batch_size: int = 64) -> dict[str, float]:
    """Reconstruction loss and pelvis-aligned MPJPE (mm; joints recovered per window) on fixed windows."""
    was_training = model.training
    model.eval()
    rec_sum, err_sum, count = 0.0, 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        x = windows[start : start + batch_size]
        recon = model(x).reconstruction
        rec_sum += float(F.smooth_l1_loss(recon, x, reduction="sum")) / x.shape[-1]
        joints_rec = recover_joints(recon * std + mean)  # (B, T, 22, 3)
        joints_ref = recover_joints(x * std + mean)
        aligned = (joints_rec - joints_rec[..., :1, :]) - (joints_ref - joints_ref[..., :1, :])
        err_sum += float(aligned.norm(dim=-1).mean(dim=(1, 2)).sum())
        count += x.shape[0]
    model.train(was_training)
    frames = windows.shape[0] * windows.shape[1]
    return {"val_recon": rec_sum / frames, "val_mpjpe_mm": 1000.0 * err_sum / count}


# ---- the training loop ------------------------------------------------------------------------


def is_trained(out_dir: str | Path, cfg: TokenizerConfig) -> bool:
    """True when `out_dir` holds a finished tokenizer trained for at least cfg.iterations steps."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.exists() or not (Path(out_dir) / MODEL_FILE).exists():
        return False
    meta = load_json(path)
    return int(meta.get("training", {}).get("steps", 0)) >= cfg.iterations


def train_tokenizer(
    config: Config,
    dataset_dir: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train (or resume, or reuse) the tokenizer in `out_dir`; returns the training summary.

    `stop_after` ends the process-level loop after that many total steps *without* writing a
    checkpoint, as a crash would (for tests of resumption); the next call resumes from the last
    periodic checkpoint.
    """
    from l2emg.data.reader import load_dataset

    cfg = config.tokenizer
    out = Path(out_dir)
    if is_trained(out, cfg):
        MotionTokenizer.from_pretrained(out, cfg)  # refuses a different model config
        meta = load_json(out / CONFIG_FILE)
        saved = TokenizerConfig.model_validate(meta["tokenizer"])
        diffs = config_differences(saved, cfg, [f for f in TokenizerConfig.model_fields if f not in RESUMABLE_FIELDS])
        if diffs:
            raise CheckpointError(f"{out / CONFIG_FILE}: trained with another tokenizer config ({'; '.join(diffs)})")
        return meta["training"]

    dataset = load_dataset(dataset_dir)
    train_records = dataset.split("train")
    if not train_records:
        raise DataError(f"{dataset.root}: the train split is empty")
    mean = np.asarray(dataset.mean, dtype=np.float32)
    std = np.asarray(dataset.std, dtype=np.float32)
    train_bank = FeatureBank.from_dataset(dataset, "train", mean, std)
    sampler = WindowSampler(train_bank, cfg.window, cfg.batch_size, source=f"{dataset.root} (train split)")
    val_bank = FeatureBank.from_dataset(dataset, "val", mean, std)
    val_windows = fixed_windows(val_bank, cfg.window, cfg.val_windows, cfg.seed + VAL_SEED_OFFSET)
    fingerprint = dataset_fingerprint(dataset, train_bank.motion_ids)
    mean_t, std_t = torch.from_numpy(mean), torch.from_numpy(std)

    torch.manual_seed(cfg.seed)
    model = VQVAE(cfg).train()
    optimizer = make_optimizer(model.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    generator = seeded_generator(cfg.seed)
    step = 0
    log: dict[str, Any] = {"history": [], "pending": {}, "elapsed_s": 0.0}
    state_path = out / STATE_FILE
    if state_path.exists():
        step, log = load_train_state(state_path, cfg, model, optimizer, generator, fingerprint)
    # the lr of `step` (the same `step_decay` as `learning_rate`), also when resuming at a checkpoint's step
    scheduler = make_scheduler(optimizer, "step", warmup=cfg.warmup_steps, milestones=cfg.lr_decay_steps,
                               gamma=cfg.lr_decay_gamma, form="peak", start=step)
    out.mkdir(parents=True, exist_ok=True)

    started = time.time() - float(log.get("elapsed_s", 0.0))
    keys = ("loss", "recon", "velocity", "joints", "heading", "commit", "perplexity", "resets")
    with progress_bar("tokenizer", cfg.iterations, enabled=progress) as bar:
        bar.advance(step)  # a resumed run starts where it stopped
        while step < cfg.iterations:
            if stop_after is not None and step >= stop_after:
                return {"steps": step, "stopped": True}
            batch = sampler.sample(generator)  # (B, window, 263)
            output = model(batch, generator=generator)
            terms = tokenizer_loss(
                output.reconstruction, batch, output.commit_loss, cfg.velocity_weight, cfg.commit_beta,
                joint_weight=cfg.joint_weight, mean=mean_t, std=std_t, root_weight=cfg.root_weight,
                heading_weight=cfg.heading_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            scheduler.step()
            step += 1

            values = (terms.total, terms.reconstruction, terms.velocity, terms.joints, terms.heading, terms.commitment,
                      output.perplexity, output.num_reset)
            pending = log["pending"]
            for key, value in zip(keys, values):
                pending[key] = pending.get(key, 0.0) + float(value.detach() if isinstance(value, Tensor) else value)
            pending["n"] = pending.get("n", 0) + 1

            if step % cfg.val_interval == 0 or step == cfg.iterations:
                n = pending.pop("n")
                entry = {"step": step, "lr": learning_rate(cfg, step - 1)}
                entry.update({k: pending[k] / n for k in keys})
                if val_windows is not None:
                    entry.update(validate(model, val_windows, mean_t, std_t))
                log["history"].append(entry)
                log["pending"] = {}
                status = f"loss {entry['loss']:.4f}"
                if "val_mpjpe_mm" in entry:
                    status += f" · val MPJPE {entry['val_mpjpe_mm']:.1f} mm"
                bar.info = status + f" · ppl {entry['perplexity']:.0f}"
            if step % cfg.checkpoint_interval == 0 or step == cfg.iterations:
                log["elapsed_s"] = time.time() - started
                save_train_state(state_path, model, optimizer, generator, step, log, fingerprint)
            bar.advance()

    elapsed = time.time() - started
    last = log["history"][-1] if log["history"] else {}
    summary = {
        "steps": step,
        "elapsed_s": round(elapsed, 1),
        "dataset": fingerprint,
        "train_motions": len(train_bank),
        "train_motions_used": sampler.num_motions,
        "val_windows": 0 if val_windows is None else int(val_windows.shape[0]),
        "final": last,
    }
    tokenizer = MotionTokenizer(model.eval(), mean, std, feature_bounds(train_bank))
    save_json(out / HISTORY_FILE, log["history"])
    tokenizer.save_pretrained(out, training=summary)
    return summary

"""Training the evaluator, once, on the train splits of all scenarios (then it is frozen).

    evaluator = train_evaluator(config, "runs/default/data", "runs/default/evaluator")

Text and motion embeddings are L2-normalised and trained with a symmetric InfoNCE loss (TMR,
temperature 0.1), ignoring in-batch "negatives" whose caption is nearly the same as the positive's.
Corrupted copies of a quarter of each batch (noised or frame-shuffled) are added as negatives for
every text, and pushed below cosine 0.5 to their clean motion: captions alone never teach an
evaluator that jitter or broken temporal order make a motion worse — without this term, FID
between real and noised (0.5 std) real motions was no larger than between two halves of the
real test set. The emotion classifier is trained alongside (cross-entropy on the labelled motions).
Batches group motions of similar length, each cropped at random; AdamW with linear warm-up and
cosine decay; the weights of the best validation pass (R-Precision top-1 + emotion F1) are kept.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from l2emg.config import Config
from l2emg.errors import DataError
from l2emg.eval.evaluator.api import Evaluator
from l2emg.eval.evaluator.net import MIN_FRAMES, EvaluatorNet, evaluator_statistics, offset_deviation, pad_motions
from l2emg.eval.text_encoder import FrozenTextEncoder
from l2emg.labels import EMOTIONS
from l2emg.utils.progress import progress_bar
from l2emg.utils.schedule import make_optimizer, make_scheduler


def info_nce(text: torch.Tensor, motion: torch.Tensor, temperature: float,
             same_caption: torch.Tensor | None = None, extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over unit embeddings (B, D); same_caption (B, B) bool marks off-diagonal
    pairs that are not true negatives (near-identical captions) and are left out of the softmax.
    extra_negatives (K, D): motions that match no text (corrupted copies), added to every text's
    softmax over motions."""
    logits = text @ motion.T / temperature  # (B, B)
    if same_caption is not None:
        logits = logits.masked_fill(same_caption & ~torch.eye(len(text), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(text))
    text_to_motion = logits if extra_negatives is None else torch.cat(
        [logits, text @ extra_negatives.T / temperature], dim=1)  # (B, B + K)
    return 0.5 * (F.cross_entropy(text_to_motion, target) + F.cross_entropy(logits.T, target))


def corrupt_motion(motion: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a raw motion that no caption describes: Gaussian noise of 0.25–1 evaluator std on
    every feature, or its frames shuffled. Used as extra negatives, so that the evaluator's embedding
    (and hence FID and R-Precision) reacts to jitter and to broken temporal order, which captions
    alone never teach it."""
    if rng.random() < 0.5:
        sigma = rng.uniform(0.25, 1.0)
        return (motion + sigma * std * rng.standard_normal(motion.shape)).astype(np.float32)
    return motion[rng.permutation(len(motion))]


def _random_crop(motion: np.ndarray, rng: np.random.Generator, min_fraction: float) -> np.ndarray:
    n = len(motion)
    keep = int(rng.integers(max(MIN_FRAMES, int(math.ceil(min_fraction * n))), n + 1)) if n > MIN_FRAMES else n
    start = int(rng.integers(0, n - keep + 1))
    return motion[start:start + keep]


def _length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches (len(lengths) // batch_size of them) of similar lengths, to pad little:
    shuffle, sort within windows of 8 batches by length, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = 8 * batch_size
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(len(order) // batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def _validation_scores(evaluator: Evaluator, motions: list[np.ndarray], captions: list[str],
                       labels: np.ndarray, batch: int) -> dict[str, float]:
    from l2emg.eval.metrics import r_precision_hits, weighted_f1

    evaluator.net.eval()
    emb, probs = evaluator.embed_motion_and_emotion(motions)
    text = evaluator.embed_text(captions)
    scores: dict[str, float] = {}
    if len(motions) >= batch:
        hits = [r_precision_hits(text, emb, np.random.default_rng(seed), batch)[0] for seed in range(5)]
        stacked = np.concatenate(hits)
        scores["r_precision_top1"] = float(np.nanmean(stacked[:, 0]))
        scores["r_precision_top3"] = float(np.nanmean(stacked[:, 2]))
    known = labels >= 0
    if known.any():
        scores["emotion_f1"] = weighted_f1(labels[known], probs.argmax(1)[known])
    return scores


def train_evaluator_on(config: Config, dataset: Any, out_dir: str | Path, progress: bool = True) -> Evaluator:
    """Train the evaluator on `dataset`'s train split (validating on val), save it to out_dir."""
    cfg = config.evaluator
    started = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = dataset.split("train")
    val = dataset.split("val")
    if len(train) < 2:
        raise DataError(f"{dataset.root}: the evaluator needs at least 2 training motions, found {len(train)}")
    emotions = list(EMOTIONS)
    emotion_index = {e: i for i, e in enumerate(emotions)}

    # Arrays, statistics, and a self-calibrated threshold for the "normalised already" check.
    train_features = [np.asarray(dataset.features(r.motion_id), dtype=np.float32) for r in train]
    stats = evaluator_statistics(train_features, cfg.root_std_divisor)
    per_motion = [offset_deviation([f], stats["raw_mean"], stats["raw_std"])[0] for f in train_features]
    normalised = [offset_deviation([(f - stats["mean"]) / stats["std"]], stats["raw_mean"], stats["raw_std"])[0]
                  for f in train_features[:64]]
    # Between the largest offset of a single raw train motion and the smallest of a normalised one.
    raw_max, normalised_min = float(np.max(per_motion)), float(np.min(normalised))
    check_effective = normalised_min > 1.5 * raw_max
    threshold = math.sqrt(raw_max * normalised_min) if check_effective else max(10.0, 2.0 * raw_max)

    timings = {"load_and_stats": time.time() - started}
    text_encoder = FrozenTextEncoder(cfg.text_model)
    all_captions = sorted({c.text for r in [*train, *val] for c in r.captions})
    text_encoder.encode(all_captions)  # cache every caption once
    text_dim = int(text_encoder.encode([all_captions[0]]).shape[1])

    timings["caption_encoding"] = time.time() - started - timings["load_and_stats"]
    net = EvaluatorNet(cfg, text_dim, len(emotions))
    for name, value in stats.items():
        getattr(net, name).copy_(torch.from_numpy(value))
    meta: dict[str, Any] = {"offset_threshold": threshold, "dataset": str(dataset.root),
                            "train_motions": len(train), "val_motions": len(val)}
    evaluator = Evaluator(net, cfg, emotions, meta, text_encoder)

    labels = np.array([emotion_index.get(r.emotion, -1) if r.emotion else -1 for r in train])
    val_features = [np.asarray(dataset.features(r.motion_id), dtype=np.float32) for r in val]
    val_captions = [r.captions[0].text for r in val]
    val_labels = np.array([emotion_index.get(r.emotion, -1) if r.emotion else -1 for r in val])

    train_lengths = np.array([len(f) for f in train_features])
    eval_std = stats["std"]
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, cfg.lr, weight_decay=cfg.weight_decay)
    batch_size = min(cfg.batch_size, len(train))
    steps_per_epoch = max(1, len(train) // batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, "warmup_cosine", total=total_steps, warmup=cfg.warmup_steps)
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor], dict[str, float]] | None = None
    step = 0
    train_started, cpu_started = time.time(), time.process_time()
    with progress_bar("evaluator", total_steps, enabled=progress) as bar:
        for epoch in range(cfg.epochs):
            net.train()
            epoch_loss = []
            for idx in _length_buckets(train_lengths, batch_size, rng):
                crops = [_random_crop(train_features[i], rng, cfg.crop_min_fraction) for i in idx]
                motion, lengths = pad_motions(crops)
                texts = [train[i].captions[int(rng.integers(len(train[i].captions)))].text for i in idx]
                sentences = torch.from_numpy(text_encoder.encode(texts))  # (B, 384)
                same = (sentences @ sentences.T) > cfg.false_negative_threshold
                num_corrupt = int(round(cfg.corrupt_fraction * len(idx)))
                if num_corrupt:
                    corrupted = [corrupt_motion(c, eval_std, rng) for c in crops[:num_corrupt]]
                    motion, lengths = pad_motions([*crops, *corrupted])
                all_pooled = net.motion_features(motion, lengths)  # (B + K, W)
                pooled = all_pooled[: len(idx)]
                motion_emb = net.embed_motion(pooled)
                negatives = net.embed_motion(all_pooled[len(idx):]) if num_corrupt else None
                loss_match = info_nce(net.embed_text(sentences), motion_emb, cfg.temperature, same, negatives)
                if num_corrupt:
                    # A corrupted copy must land away from its clean motion (cosine below the margin).
                    similarity = (negatives * motion_emb[:num_corrupt]).sum(-1)
                    loss_match = loss_match + F.relu(similarity - cfg.corrupt_margin).mean()
                target = torch.from_numpy(labels[idx])
                loss_emotion = F.cross_entropy(net.emotion_head(pooled), target, ignore_index=-1) \
                    if (target >= 0).any() else torch.zeros(())
                loss = loss_match + cfg.emotion_weight * loss_emotion
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                epoch_loss.append((loss_match.item(), loss_emotion.item()))
                bar.advance(info=f"match {epoch_loss[-1][0]:.3f} · emo {epoch_loss[-1][1]:.3f}")
            record = {"epoch": epoch + 1, "match_loss": float(np.mean([pair[0] for pair in epoch_loss])),
                      "emotion_loss": float(np.mean([pair[1] for pair in epoch_loss]))}
            if val_features and ((epoch + 1) % cfg.val_interval == 0 or epoch + 1 == cfg.epochs):
                scores = _validation_scores(evaluator, val_features, val_captions, val_labels, cfg.r_precision_batch)
                record.update({f"val_{k}": v for k, v in scores.items()})
                score = scores.get("r_precision_top1", 0.0) + scores.get("emotion_f1", 0.0)
                if best is None or score > best[0]:
                    best = (score, {k: v.detach().clone() for k, v in net.state_dict().items()}, {**record})
            history.append(record)
    if best is not None:
        net.load_state_dict(best[1])
    net.eval()
    meta.update({
        "history": history,
        "best": best[2] if best is not None else history[-1],
        "normalised_offset_min": normalised_min,
        "raw_offset_max": raw_max,
        "normalised_check_effective": check_effective,
        "train_seconds": round(time.time() - started, 1),
        "timings_s": {**{k: round(v, 1) for k, v in timings.items()},
                      "training_loop": round(time.time() - train_started, 1),
                      "training_loop_cpu": round(time.process_time() - cpu_started, 1),
                      "torch_threads": torch.get_num_threads()},
        "steps": total_steps,
    })
    evaluator.meta = meta
    evaluator.save(out_dir)
    evaluator.meta["path"] = str(out_dir)
    evaluator.source = str(out_dir)
    return evaluator


def train_evaluator(config: Config, dataset_dir: str | Path, out_dir: str | Path, progress: bool = True) -> Evaluator:
    """Train the evaluator on the dataset folder's train split and save it into out_dir."""
    from l2emg.data.reader import load_dataset

    return train_evaluator_on(config, load_dataset(dataset_dir), out_dir, progress)

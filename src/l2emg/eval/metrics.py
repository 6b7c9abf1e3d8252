"""The text-to-motion metrics of Guo et al. (2022), computed on evaluator embeddings.

All functions take plain numpy arrays of embeddings (rows = samples) and an explicit
`numpy.random.Generator`, so that a repeated evaluation is reproducible from one seed.

- FID: Fréchet distance between Gaussian fits of two embedding sets.
- R-Precision: in shuffled batches of 32 (last partial batch dropped), the share of texts whose
  own motion is among the k nearest motions (Euclidean), k = 1, 2, 3.
- MM-Dist: mean Euclidean distance between a text and its motion.
- Diversity: mean distance over 300 random pairs of motions.
- MultiModality: mean distance between random pairs of motions generated from the same text.
- Weighted F1 of the emotion predicted from a motion against the intended emotion.
- `mean_ci95`: the field's repeated-evaluation summary, mean ± 1.96·σ/√R.
- `mean_ci`: mean ± the t-distribution 95 % half-width over a few runs (Table 2 over scenario orders);
  `kendall_tau`: rank agreement of our values with the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.metrics import f1_score

R_PRECISION_BATCH = 32
TOP_K = 3


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> mean (D,), covariance (D, D), in float64."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings of shape (N, D) for a Gaussian fit, got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    The matrix square root of a product of (nearly) singular covariances can come back with
    non-finite entries or a small imaginary part from round-off; as is usual, a tiny ridge is added
    in the first case and the imaginary part is dropped in the second (it is refused if large).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched shapes: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def fid(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> float:
    """FID between two embedding sets (N_a, D) and (N_b, D)."""
    return frechet_distance(*gaussian_statistics(embeddings_a), *gaussian_statistics(embeddings_b))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between rows of a (N, D) and b (M, D)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def r_precision_hits(text_embeddings: np.ndarray, motion_embeddings: np.ndarray, rng: np.random.Generator,
                     batch_size: int = R_PRECISION_BATCH, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample top-k hits of the R-Precision protocol.

    Row i of both arrays is a matching (text, motion) pair. Samples are shuffled and cut into
    batches of `batch_size`, the last partial batch is dropped; in each batch, the batch_size ×
    batch_size distance matrix ranks every motion for each text.
    Returns (hits (N, top_k) float with NaN for samples of the dropped batch, scored mask (N,)).
    Hit[i, k-1] = 1 if sample i's own motion is among its k nearest.
    """
    t = np.asarray(text_embeddings, dtype=np.float64)
    m = np.asarray(motion_embeddings, dtype=np.float64)
    if t.shape != m.shape or t.ndim != 2:
        raise ValueError(f"text and motion embeddings must both be (N, D), got {t.shape} and {m.shape}")
    n = len(t)
    hits = np.full((n, top_k), np.nan)
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        dist = pairwise_distances(t[idx], m[idx])  # (B, B): text i vs motion j
        # Rank of the true motion: how many motions are strictly closer than it.
        true = np.diagonal(dist)[:, None]
        rank = (dist < true).sum(axis=1)  # (B,) 0 = nearest
        for k in range(top_k):
            hits[idx, k] = (rank <= k).astype(np.float64)
    return hits, ~np.isnan(hits[:, 0])


def r_precision(text_embeddings: np.ndarray, motion_embeddings: np.ndarray, rng: np.random.Generator,
                batch_size: int = R_PRECISION_BATCH, top_k: int = TOP_K) -> np.ndarray:
    """Top-1..top-k R-Precision, (top_k,). Needs at least one full batch."""
    if len(text_embeddings) < batch_size:
        raise ValueError(f"R-Precision needs at least {batch_size} samples, got {len(text_embeddings)}")
    hits, scored = r_precision_hits(text_embeddings, motion_embeddings, rng, batch_size, top_k)
    return hits[scored].mean(axis=0)


def matching_distances(text_embeddings: np.ndarray, motion_embeddings: np.ndarray) -> np.ndarray:
    """Per-sample distance between a text and its own motion (N,); MM-Dist is its mean."""
    diff = np.asarray(text_embeddings, np.float64) - np.asarray(motion_embeddings, np.float64)
    return np.linalg.norm(diff, axis=1)


def _random_pairs(n: int, num_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i != j. As Guo et al.: two draws without replacement when n allows it;
    with fewer samples, pairs are drawn with replacement (still never pairing a sample with itself)."""
    if n < 2:
        raise ValueError(f"need at least 2 samples to form pairs, got {n}")
    if n >= num_pairs:
        first = rng.choice(n, num_pairs, replace=False)
        second = rng.choice(n, num_pairs, replace=False)
        same = first == second
        second[same] = (second[same] + 1) % n  # a self-pair has distance 0 and would bias the mean
        return first, second
    first = rng.integers(0, n, num_pairs)
    second = (first + rng.integers(1, n, num_pairs)) % n
    return first, second


def diversity(embeddings: np.ndarray, rng: np.random.Generator, num_pairs: int = 300) -> float:
    """Mean Euclidean distance over `num_pairs` random pairs of motions."""
    x = np.asarray(embeddings, dtype=np.float64)
    first, second = _random_pairs(len(x), num_pairs, rng)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(groups: Sequence[np.ndarray], rng: np.random.Generator, num_pairs: int = 10,
                  max_texts: int = 100) -> float:
    """Mean distance between motions generated from the same text.

    groups: one (K_i, D) array per text (K_i >= 2 generations). Up to `max_texts` texts are drawn;
    for each, `num_pairs` random pairs of its generations are compared.
    """
    usable = [np.asarray(g, dtype=np.float64) for g in groups if len(g) >= 2]
    if not usable:
        raise ValueError("MultiModality needs at least one text with 2 or more generations")
    chosen = rng.permutation(len(usable))[:max_texts]
    values = []
    for index in chosen:
        g = usable[index]
        first, second = _random_pairs(len(g), num_pairs, rng)
        values.append(np.linalg.norm(g[first] - g[second], axis=1).mean())
    return float(np.mean(values))


def weighted_f1(true_labels: Sequence[int | str], predicted_labels: Sequence[int | str]) -> float:
    """Weighted F1 (per-class F1 weighted by true support), the emotion score of Yu et al. 2024.

    Averaged over the classes that occur among the true labels: a class that was never intended
    has weight 0 anyway, and predicting it still costs the recall of the intended class."""
    true = list(true_labels)
    if not true or len(true) != len(predicted_labels):
        raise ValueError(f"need equally many true and predicted labels, got {len(true)} and {len(predicted_labels)}")
    return float(f1_score(true, list(predicted_labels), labels=sorted(set(true)), average="weighted",
                          zero_division=0))


def mean_ci95(values: Sequence[float]) -> dict[str, float]:
    """Summary of R repeated evaluations: mean and the 95 % half-width 1.96·σ/√R (σ with ddof 0,
    as Guo et al.'s `get_metric_statistics`)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to summarise")
    return {"mean": float(x.mean()), "ci95": float(1.96 * x.std() / np.sqrt(x.size)), "repeats": int(x.size)}


def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """{"mean", "ci95", "n", "values"} over a few independent runs (e.g. the scenario orders of Table 2;
    None and NaN skipped): the t-distribution 95 % half-width t_{0.975, n−1} · s / √n (s with ddof 1);
    ci95 None for fewer than two values, mean None for none."""
    from scipy import stats

    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(kept)
    mean = float(np.mean(kept)) if kept else None
    ci = float(stats.t.ppf(0.975, n - 1) * np.std(kept, ddof=1) / math.sqrt(n)) if n >= 2 else None
    return {"mean": mean, "ci95": ci, "n": n, "values": kept}


def kendall_tau(ours: dict[str, float | None], paper: dict[str, float | None]) -> dict[str, Any]:
    """Kendall τ between our values and the paper's over the methods both have (rankings of the
    same metric, so the metric's direction does not matter); τ None for fewer than two methods."""
    from scipy.stats import kendalltau

    common = sorted(m for m in ours if ours[m] is not None and paper.get(m) is not None)
    if len(common) < 2:
        return {"tau": None, "p": None, "methods": common}
    result = kendalltau([ours[m] for m in common], [paper[m] for m in common])
    tau, p = float(result.statistic), float(result.pvalue)
    return {"tau": None if math.isnan(tau) else tau, "p": None if math.isnan(p) else p, "methods": common}

"""Text-to-motion metrics: FID against the closed form, R-Precision of perfect and random matchers,
diversity/multimodality on known geometry, weighted F1, and the repeated-evaluation summary."""

import numpy as np
import pytest

from l2emg.eval import metrics as M


def closed_form_diag(mu1, var1, mu2, var2):
    """Fréchet distance of two Gaussians with diagonal covariances."""
    return float(((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum())


def test_frechet_distance_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    value = M.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(closed_form_diag(mu1, var1, mu2, var2), rel=1e-9)
    # 1-D: (μ1-μ2)² + (σ1-σ2)²; identical Gaussians: 0; symmetric in its arguments.
    assert M.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    b = rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    m = rng.normal(size=5)
    assert M.frechet_distance(m, s1, m, s1) == pytest.approx(0.0, abs=1e-6)
    assert M.frechet_distance(m, s1, 0 * m, s2) == pytest.approx(M.frechet_distance(0 * m, s2, m, s1), rel=1e-6)


def test_fid_of_gaussian_samples_matches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0, -1.0])
    var1, var2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.5, 3.0])
    x = mu1 + np.sqrt(var1) * rng.standard_normal((40000, 4))
    y = mu2 + np.sqrt(var2) * rng.standard_normal((40000, 4))
    expected = closed_form_diag(mu1, var1, mu2, var2)
    assert M.fid(x, y) == pytest.approx(expected, rel=0.03)
    # Two samples of one distribution: near 0, far below the distance between the two Gaussians.
    assert M.fid(x[:20000], x[20000:]) < 0.01 < expected


def test_fid_handles_singular_covariances():
    rng = np.random.default_rng(2)
    low_rank = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 16))  # rank 2 in 16 dims
    value = M.fid(low_rank, low_rank + 0.5)
    assert np.isfinite(value) and value == pytest.approx(16 * 0.25, rel=0.05)


def test_r_precision_perfect_and_random_matchers():
    rng = np.random.default_rng(3)
    text = rng.normal(size=(3200, 16))
    perfect = M.r_precision(text, text.copy(), rng)
    assert perfect == pytest.approx([1.0, 1.0, 1.0])
    random_motion = rng.normal(size=(3200, 16))
    chance = M.r_precision(text, random_motion, rng)
    assert chance == pytest.approx([1 / 32, 2 / 32, 3 / 32], abs=0.012)
    assert chance[0] < chance[1] < chance[2]


def test_r_precision_drops_last_partial_batch():
    rng = np.random.default_rng(4)
    text = rng.normal(size=(70, 8))
    hits, scored = M.r_precision_hits(text, text, rng)
    assert scored.sum() == 64 and np.isnan(hits[~scored]).all()
    with pytest.raises(ValueError, match="at least 32"):
        M.r_precision(text[:31], text[:31], rng)


def test_r_precision_ranks_the_true_motion():
    # Even texts get a decoy (motion i+1 moved next to text i) closer than their own motion: top-1
    # miss, top-2 hit. Odd texts' own motion, though moved, is still their nearest one.
    rng = np.random.default_rng(5)
    text = np.eye(32) * 10.0
    motion = text + 0.1
    decoy_rows = np.arange(0, 32, 2)
    motion[decoy_rows + 1] = text[decoy_rows] + 0.05
    top = M.r_precision(text, motion, rng)
    assert top[0] == pytest.approx(0.5) and top[1] == pytest.approx(1.0)


def test_mm_dist_diversity_multimodality_on_known_geometry():
    rng = np.random.default_rng(6)
    text = np.zeros((10, 3))
    motion = np.tile([3.0, 4.0, 0.0], (10, 1))
    assert M.matching_distances(text, motion).mean() == pytest.approx(5.0)
    # Two points 2 apart: every non-self pair has distance 2.
    two = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert M.diversity(two, rng, 300) == pytest.approx(2.0)
    # Unit vectors ±e_k in 50 dims: pairs are never self-pairs, so the mean is above √2·0.9.
    points = np.concatenate([np.eye(50), -np.eye(50)])
    assert M.diversity(points, rng, 300) > 1.3
    groups = [np.array([[0.0], [1.0]]), np.array([[5.0], [8.0]])]
    assert M.multimodality(groups, rng, num_pairs=10) == pytest.approx((1.0 + 3.0) / 2)
    with pytest.raises(ValueError):
        M.multimodality([np.zeros((1, 2))], rng)


def test_weighted_f1():
    assert M.weighted_f1([0, 1, 2, 2], [0, 1, 2, 2]) == 1.0
    # Class 0 (support 3): P=1, R=2/3 -> F1 .8; class 1 (support 1): P=.5, R=1 -> .667.
    value = M.weighted_f1([0, 0, 0, 1], [0, 0, 1, 1])
    assert value == pytest.approx((3 * 0.8 + 1 * (2 / 3)) / 4)
    # Predicting a class that is never intended only costs recall of the intended ones.
    assert M.weighted_f1(["sad", "sad"], ["sad", "happy"]) == pytest.approx(2 / 3)


def test_mean_ci95():
    summary = M.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5
    assert summary["ci95"] == pytest.approx(1.96 * np.std([1, 2, 3, 4]) / 2)
    assert M.mean_ci95([0.3] * 5)["ci95"] == 0.0

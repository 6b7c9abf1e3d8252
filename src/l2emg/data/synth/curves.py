"""Time curves for procedural animation: easing, keyframe splines, envelopes and smooth noise.

Everything works on whole arrays of frame times so a motion is built without per-frame Python loops.
"""

from __future__ import annotations

import numpy as np


def smoothstep(x: np.ndarray) -> np.ndarray:
    """C1 ease 0 -> 1 on [0, 1] (clamped outside)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def min_jerk(x: np.ndarray) -> np.ndarray:
    """C2 ease 0 -> 1 on [0, 1]: the minimum-jerk profile 10x³ − 15x⁴ + 6x⁵ (clamped outside)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (10.0 + x * (-15.0 + 6.0 * x))


def bump(x: np.ndarray) -> np.ndarray:
    """Smooth hump on [0, 1]: 0 at both ends, 1 in the middle, 0 outside (sin² shape)."""
    inside = (x > 0.0) & (x < 1.0)
    return np.where(inside, np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 2, 0.0)


def window(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """1 on [start, end], easing in and out over `ramp` seconds on either side, 0 elsewhere."""
    ramp = max(ramp, 1e-6)
    return smoothstep((t - start + ramp) / ramp) * smoothstep((end + ramp - t) / ramp)


def hermite(t: np.ndarray, times, values, slopes=None) -> np.ndarray:
    """Cubic Hermite spline through keyframes, held constant before the first and after the last key.

    times: (K,) increasing key times; values: (K,) or (K, D); slopes: same shape as values
    (derivatives at the keys; Catmull-Rom style finite differences when None, zero at the ends).
    Returns (T,) or (T, D).
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if slopes is None:
        slopes = np.zeros_like(values)
        if len(times) > 2:
            slopes[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2]).reshape(
                (-1,) + (1,) * (values.ndim - 1)
            )
    slopes = np.asarray(slopes, dtype=np.float64)
    t = np.clip(np.asarray(t, dtype=np.float64), times[0], times[-1])
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    t0, t1 = times[k], times[k + 1]
    h = t1 - t0
    u = (t - t0) / h
    shape = (-1,) + (1,) * (values.ndim - 1)
    u = u.reshape(shape)
    h = h.reshape(shape)
    u2, u3 = u * u, u * u * u
    h00, h10, h01, h11 = 2 * u3 - 3 * u2 + 1, u3 - 2 * u2 + u, -2 * u3 + 3 * u2, u3 - u2
    return h00 * values[k] + h10 * h * slopes[k] + h01 * values[k + 1] + h11 * h * slopes[k + 1]


def smooth_noise(rng: np.random.Generator, t: np.ndarray, freq: float, octaves: int = 3) -> np.ndarray:
    """Smooth zero-mean noise of unit-ish amplitude around `freq` Hz (a sum of random sinusoids)."""
    out = np.zeros_like(t, dtype=np.float64)
    for i in range(octaves):
        f = freq * (1.6 ** i) * rng.uniform(0.8, 1.25)
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / (1.0 + i)
    return out / 1.5


def sharpen(wave: np.ndarray, sharpness: float) -> np.ndarray:
    """Make a [-1, 1] oscillation more square (sharp, abrupt) for sharpness > 0; identity at 0."""
    if sharpness <= 0:
        return wave
    return np.tanh(wave * (1.0 + 3.0 * sharpness)) / np.tanh(1.0 + 3.0 * sharpness)


def soft_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum that never exceeds min(a, b) (log-sum-exp with softness k)."""
    m = np.minimum(a, b)
    return m - k * np.log(np.exp(-(a - m) / k) + np.exp(-(b - m) / k))


def cumulative(rate: np.ndarray, dt: float) -> np.ndarray:
    """Trapezoid integral of a per-frame rate, starting at 0 (T,) -> (T,)."""
    out = np.zeros_like(rate, dtype=np.float64)
    out[1:] = np.cumsum(0.5 * (rate[1:] + rate[:-1]) * dt)
    return out

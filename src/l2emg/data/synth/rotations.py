"""Vectorised rotation matrices and frames used by the procedural body (all angles in radians).

Conventions follow the skeleton: Y up, the body faces +Z, the character's left is +X.
`rot_x(a)` with a > 0 tips +Y towards +Z (a forward bend); `rot_y(a)` with a > 0 turns +Z towards +X
(a turn to the character's left); `rot_z(a)` with a > 0 tips +Y towards -X (a lean to the right).
"""

from __future__ import annotations

import numpy as np


def _empty(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angle = np.asarray(angle, dtype=np.float64)
    out = np.zeros(angle.shape + (3, 3))
    return out, np.cos(angle), np.sin(angle)


def rot_x(angle: np.ndarray) -> np.ndarray:
    """(...,) -> (..., 3, 3) rotation about +X."""
    out, c, s = _empty(angle)
    out[..., 0, 0] = 1.0
    out[..., 1, 1], out[..., 1, 2] = c, -s
    out[..., 2, 1], out[..., 2, 2] = s, c
    return out


def rot_y(angle: np.ndarray) -> np.ndarray:
    """(...,) -> (..., 3, 3) rotation about +Y."""
    out, c, s = _empty(angle)
    out[..., 1, 1] = 1.0
    out[..., 0, 0], out[..., 0, 2] = c, s
    out[..., 2, 0], out[..., 2, 2] = -s, c
    return out


def rot_z(angle: np.ndarray) -> np.ndarray:
    """(...,) -> (..., 3, 3) rotation about +Z."""
    out, c, s = _empty(angle)
    out[..., 2, 2] = 1.0
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    return out


def mirror_rotation(rot: np.ndarray) -> np.ndarray:
    """M R M with M = diag(-1, 1, 1): the same rotation seen in the left-right mirror."""
    out = rot.copy()
    out[..., 0, 1] *= -1
    out[..., 0, 2] *= -1
    out[..., 1, 0] *= -1
    out[..., 2, 0] *= -1
    return out


def normalize(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """(..., 3) unit vectors (zero vectors stay near zero instead of becoming NaN)."""
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


def frame_from_axes(x_axis: np.ndarray, y_axis: np.ndarray) -> np.ndarray:
    """(..., 3) x and y directions -> (..., 3, 3) rotation whose columns are x, y, z = x × y.

    y is kept exactly (normalised); x is made orthogonal to it.
    """
    y = normalize(y_axis)
    x = normalize(x_axis - np.sum(x_axis * y, axis=-1, keepdims=True) * y)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def matvec(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(..., 3, 3) @ (..., 3) -> (..., 3)."""
    return np.einsum("...ij,...j->...i", rot, v)

"""Small rotation helpers for the motion layer.

Conventions:
- Quaternions are scalar-first ``(w, x, y, z)`` as in HumanML3D (scipy's are scalar-last; the
  conversions here translate). They act on column vectors: ``v' = q v q*``.
- Rotation matrices act on column vectors: ``v' = R @ v``; batches are ``(..., 3, 3)``.
- The continuous 6D representation (Zhou et al. 2019) is the first two *columns* of the matrix,
  concatenated: ``[R[:,0], R[:,1]]`` -> ``(..., 6)``, as HumanML3D's ``quaternion_to_cont6d``.
- Euler angles follow BVH channel semantics: an order string such as ``"ZYX"`` means
  ``R = Rz(a0) @ Ry(a1) @ Rx(a2)`` (intrinsic rotations, scipy's upper-case orders), in degrees.

Functions marked *generic* accept numpy arrays or torch tensors and return the same type (torch
versions are differentiable); the others are numpy-only and delegate to scipy where it already
does the maths.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

Array = Any  # np.ndarray or torch.Tensor

_EPS = 1e-12


def _is_torch(x: Array) -> bool:
    return isinstance(x, torch.Tensor)


def _stack(parts: list[Array], axis: int = -1) -> Array:
    if _is_torch(parts[0]):
        return torch.stack(parts, dim=axis)
    return np.stack(parts, axis=axis)


def _cat(parts: list[Array], axis: int = -1) -> Array:
    if _is_torch(parts[0]):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def _sqrt(x: Array) -> Array:
    return torch.sqrt(x) if _is_torch(x) else np.sqrt(x)


def _norm(x: Array, keepdims: bool = True) -> Array:
    if _is_torch(x):
        return torch.linalg.norm(x, dim=-1, keepdim=keepdims)
    return np.linalg.norm(x, axis=-1, keepdims=keepdims)


def cross(a: Array, b: Array) -> Array:
    """Generic cross product over the last axis (broadcasting)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return _stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx])


# ----------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z)
# ----------------------------------------------------------------------------------------------


def quat_mul(q: Array, r: Array) -> Array:
    """Generic Hamilton product q * r (apply r first, then q). Shapes (..., 4), broadcasting."""
    w1, x1, y1, z1 = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    w2, x2, y2, z2 = r[..., 0], r[..., 1], r[..., 2], r[..., 3]
    return _stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def quat_conjugate(q: Array) -> Array:
    """Generic conjugate (the inverse of a unit quaternion)."""
    return _stack([q[..., 0], -q[..., 1], -q[..., 2], -q[..., 3]])


def quat_inverse(q: Array) -> Array:
    """Generic inverse of any non-zero quaternion."""
    return quat_conjugate(q) / (q * q).sum(-1)[..., None]


def quat_normalize(q: Array) -> Array:
    return q / (_norm(q) + _EPS)


def quat_rotate(q: Array, v: Array) -> Array:
    """Generic rotation of vectors v (..., 3) by unit quaternions q (..., 4)."""
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * cross(u, v)
    return v + w * t + cross(u, t)


def quat_between(u: Array, v: Array) -> Array:
    """Generic unit quaternion of the minimal rotation taking direction u to direction v.

    u, v: (..., 3), need not be unit length. When u and v are opposite, any 180° rotation about
    an axis perpendicular to u is returned (the minimal rotation is not unique there).
    """
    u = u / (_norm(u) + _EPS)
    v = v / (_norm(v) + _EPS)
    w = 1.0 + (u * v).sum(-1, keepdims=True)
    axis = cross(u, v)
    # Opposite directions: rotate by pi about u x e, with e the basis axis least aligned with u.
    if _is_torch(u):
        e_x = torch.zeros_like(u)
        e_x[..., 0] = 1.0
        e_z = torch.zeros_like(u)
        e_z[..., 2] = 1.0
        use_z = u[..., :1].abs() > 0.9
        perp = cross(u, torch.where(use_z, e_z, e_x))
        opposite = w < 1e-9
        axis = torch.where(opposite, perp / (_norm(perp) + _EPS), axis)
        w = torch.where(opposite, torch.zeros_like(w), w)
    else:
        e = np.where(np.abs(u[..., :1]) > 0.9, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
        perp = cross(u, e)
        opposite = w < 1e-9
        axis = np.where(opposite, perp / (_norm(perp) + _EPS), axis)
        w = np.where(opposite, 0.0, w)
    return quat_normalize(_cat([w, axis]))


def quat_to_matrix(q: Array) -> Array:
    """Generic (..., 4) unit quaternions -> (..., 3, 3) rotation matrices."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        _stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        _stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        _stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ]
    return _stack(rows, axis=-2)


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """numpy (..., 3, 3) -> (..., 4) unit quaternions (w, x, y, z) with w >= 0 (via scipy)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    lead = matrix.shape[:-2]
    xyzw = Rotation.from_matrix(matrix.reshape(-1, 3, 3)).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1.0, 1.0)
    return wxyz.reshape(*lead, 4)


def matrix_between(u: Array, v: Array) -> Array:
    """Generic (..., 3, 3) minimal rotation taking direction u to direction v."""
    return quat_to_matrix(quat_between(u, v))


# ----------------------------------------------------------------------------------------------
# Continuous 6D representation (first two columns)
# ----------------------------------------------------------------------------------------------


def matrix_to_cont6d(matrix: Array) -> Array:
    """Generic (..., 3, 3) -> (..., 6): column 0 then column 1."""
    return _cat([matrix[..., :, 0], matrix[..., :, 1]])


def cont6d_to_matrix(cont6d: Array) -> Array:
    """Generic (..., 6) -> (..., 3, 3) by Gram-Schmidt on the two columns (Zhou et al.)."""
    a1 = cont6d[..., 0:3]
    a2 = cont6d[..., 3:6]
    b1 = a1 / (_norm(a1) + _EPS)
    a2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = a2 / (_norm(a2) + _EPS)
    b3 = cross(b1, b2)
    return _stack([b1, b2, b3], axis=-1)


# ----------------------------------------------------------------------------------------------
# Rotations about Y (heading) and Euler angles
# ----------------------------------------------------------------------------------------------


def rot_y(angle: Array) -> Array:
    """Generic (...,) angles in radians -> (..., 3, 3) rotations about +Y.

    rot_y(a) @ (0, 0, 1) = (sin a, 0, cos a): a positive angle turns +Z towards +X.
    """
    c = torch.cos(angle) if _is_torch(angle) else np.cos(angle)
    s = torch.sin(angle) if _is_torch(angle) else np.sin(angle)
    zero = c * 0.0
    one = zero + 1.0
    return _stack(
        [_stack([c, zero, s]), _stack([zero, one, zero]), _stack([-s, zero, c])], axis=-2
    )


def rotate_y(vectors: Array, angle: Array) -> Array:
    """Generic rotation of vectors (..., 3) about +Y by angle (...,) radians (= rot_y(angle) @ v)."""
    if _is_torch(angle) or _is_torch(vectors):
        c, s = torch.cos(angle), torch.sin(angle)
    else:
        c, s = np.cos(angle), np.sin(angle)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return _stack([c * x + s * z, y, -s * x + c * z])


def heading_angle(direction: np.ndarray) -> np.ndarray:
    """numpy yaw (radians) of horizontal directions (..., 3): the a with rot_y(a) @ +Z ∥ direction."""
    return np.arctan2(direction[..., 0], direction[..., 2])


def euler_to_matrix(angles_deg: np.ndarray, order: str = "ZYX") -> np.ndarray:
    """numpy (..., 3) Euler angles in degrees, BVH order (R = R_order[0] R_order[1] R_order[2])."""
    angles_deg = np.asarray(angles_deg, dtype=np.float64)
    lead = angles_deg.shape[:-1]
    mats = Rotation.from_euler(order.upper(), angles_deg.reshape(-1, 3), degrees=True).as_matrix()
    return mats.reshape(*lead, 3, 3)


def matrix_to_euler(matrix: np.ndarray, order: str = "ZYX") -> np.ndarray:
    """numpy (..., 3, 3) -> (..., 3) Euler angles in degrees, BVH order (inverse of euler_to_matrix).

    At gimbal lock scipy picks one of the equivalent angle triples; the matrix is still exact.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    lead = matrix.shape[:-2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Gimbal lock detected"
        angles = Rotation.from_matrix(matrix.reshape(-1, 3, 3)).as_euler(order.upper(), degrees=True)
    return angles.reshape(*lead, 3)


def best_fit_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """numpy batched Kabsch: the rotation R (..., 3, 3) minimising sum_i |R s_i - t_i|^2.

    source, target: (..., N, 3) vector sets (not centred: they are bone offsets from one joint).
    Vectorised over the leading axes (scipy's align_vectors handles one set at a time).
    """
    h = np.einsum("...ni,...nj->...ij", target, source)  # (..., 3, 3) = sum t s^T
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones(h.shape[:-1])
    fix[..., 2] = d
    return (u * fix[..., None, :]) @ vt

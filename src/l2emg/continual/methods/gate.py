"""The scenario-adapted expert gate (paper Eq. 4): one weight vector per sample over the LoRA experts.

    q   = LayerNorm(SiLU(Up(Down(pooled h))))         (B, key_dim)   the query embedding (as SAPT)
    l_j = q · K_j / (√key_dim · temperature)           j = 0 … E−1    one key per expert
    W   = Softmax(l) over the selected experts, 0 elsewhere

Keys: `max_experts` mutually orthogonal rows are drawn once from a seeded generator
(`torch.nn.init.orthogonal_`, Saxe et al. 2014; SLM) and scaled to norm √key_dim, the typical norm of a
LayerNorm'd query, so l_j starts as √key_dim · cos(q, K_j). Key j becomes a Parameter when expert j is
added and starts at row j; each key is its own Parameter, so freezing old keys is `requires_grad`.

Selection:
- training (`current` = the expert being trained): every OLD expert is masked independently with
  probability p (the current expert never is) — p = `mask_prob` at every step (`mask_schedule`
  "constant"), or, as the paper's "depending on the training time point", p_i = 1 − (1 − mask_prob) / i
  at step i ≥ 1 ("step"): the i old experts then keep 1 − mask_prob unmasked on average at every
  step (p = 0.3, 0.65, 0.77, … 0.9 for mask_prob 0.3), so the growing crowd of old experts does not
  take more and more of the current expert's place; the current expert and the top (top_k − 1)
  unmasked old experts are kept and their logits renormalised by a softmax. The current expert is
  always kept so that it receives a gradient from every sample (a fresh expert is a no-op, and a
  gate free to drop it would never let it learn);
- inference: the top_k experts of all E are kept and renormalised.

Attentive reflection (after SAPT): the gate sees only scenario i's prompts at step i while its shared
query network keeps training, so without help it forgets how to route older scenarios. After each
scenario j a few pseudo-inputs (K-means centroids of scenario j's pooled gate inputs — never raw
samples) and their target distributions (scenario j's average gate at the end of step j, over the
experts 0 … j) are stored as buffers (`add_reflection`). `reflection_loss` replays them through the
CURRENT query network and keys: KL(target ‖ softmax over all current experts), averaged over the
points; the target is zero on experts added after scenario j, so old inputs are kept off them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from l2emg.utils.seeding import seeded_generator

__all__ = ["ExpertGate", "orthogonal_keys", "select_top_k", "INIT_GAIN"]

INIT_GAIN = 0.3  # initial LayerNorm gain of the query: initial gate logits have about this std


def orthogonal_keys(count: int, dim: int, seed: int) -> Tensor:
    """(count, dim) rows that are mutually orthogonal, each of norm √dim (count ≤ dim)."""
    if count > dim:
        raise ValueError(f"{count} orthogonal keys need key_dim ≥ {count}, got {dim}")
    generator = seeded_generator(seed)
    keys = torch.empty(count, dim)
    nn.init.orthogonal_(keys, generator=generator)  # orthonormal rows
    return keys * math.sqrt(dim)


def select_top_k(logits: Tensor, k: int, available: Tensor | None = None, forced: int | None = None) -> Tensor:
    """Softmax over the selected experts, zero elsewhere: logits (B, E) -> weights (B, E).

    `available` (B, E) bool marks experts that may be chosen (False = masked); `forced` is an expert
    index always selected (it counts towards k). The top k (or fewer if fewer are available) of the
    available experts by logit are selected.
    """
    batch, count = logits.shape
    allowed = torch.ones_like(logits, dtype=torch.bool) if available is None else available.clone()
    scores = logits.detach().masked_fill(~allowed, float("-inf"))
    if forced is not None:
        scores[:, forced] = float("inf")  # picked first
        allowed[:, forced] = True
    k = min(k, count)
    top = scores.topk(k, dim=-1).indices  # (B, k)
    selected = torch.zeros_like(allowed).scatter_(1, top, True) & allowed  # -inf picks of rows with < k allowed drop
    masked_logits = logits.masked_fill(~selected, float("-inf"))
    return torch.softmax(masked_logits, dim=-1)  # exact zeros where not selected


class ExpertGate(nn.Module):
    """Pooled features (B, d_in) -> expert weights (B, E); keys grow with the experts."""

    def __init__(self, d_in: int, key_dim: int = 64, query_rank: int = 64, max_experts: int = 32,
                 temperature: float = 1.0, top_k: int = 2, mask_prob: float = 0.3, seed: int = 0,
                 mask_schedule: str = "constant", point_dim: int | None = None):
        super().__init__()
        if mask_schedule not in ("constant", "step"):
            raise ValueError(f"mask_schedule must be 'constant' or 'step', got {mask_schedule!r}")
        self.key_dim, self.max_experts = key_dim, max_experts
        self.temperature, self.top_k, self.mask_prob = float(temperature), int(top_k), float(mask_prob)
        self.mask_schedule = mask_schedule
        # The down/up query projection (SAPT: Linear(d→r) → Linear(r→d_key) → SiLU → LayerNorm).
        self.query = nn.Sequential(nn.Linear(d_in, query_rank), nn.Linear(query_rank, key_dim), nn.SiLU(),
                                   nn.LayerNorm(key_dim))
        # The initial logits then have std ≈ INIT_GAIN: the gate starts near uniform (as SAPT's does) and
        # sharpens by learning the gain. A gate that starts peaked sends a fresh (no-op) expert almost no
        # weight, hence almost no gradient, and collapses onto the first trained expert.
        nn.init.constant_(self.query[-1].weight, INIT_GAIN)
        # Every key the gate can ever use, fixed by the seed; key j starts from row j.
        self.register_buffer("key_init", orthogonal_keys(max_experts, key_dim, seed))
        self.keys = nn.ParameterList()  # key j: (key_dim,)
        # Attentive-reflection memory: pseudo-inputs (N, d_in), their target gates (N, max_experts) with
        # zeros for experts added later, and `reflection_sizes[j]` = how many points scenario j stored.
        # The points live in `point_dim` (default d_in); `reflection_loss(encode=...)` maps them to
        # gate inputs with the CURRENT encoder when the gate reads a trained representation.
        self.d_in = d_in
        self.point_dim = d_in if point_dim is None else int(point_dim)
        self.register_buffer("reflection_points", torch.zeros(0, self.point_dim))
        self.register_buffer("reflection_targets", torch.zeros(0, max_experts))
        self.reflection_sizes: list[int] = []

    @property
    def num_experts(self) -> int:
        return len(self.keys)

    def add_key(self) -> int:
        """Add the key of the next expert (trainable) and return its index."""
        j = self.num_experts
        if j >= self.max_experts:
            raise ValueError(f"the gate has orthogonal keys for {self.max_experts} experts (esmoe.max_experts); "
                             f"expert {j + 1} does not fit — raise esmoe.max_experts (and key_dim)")
        self.keys.append(nn.Parameter(self.key_init[j].detach().clone()))
        return j

    def set_trainable(self, expert: int | None) -> None:
        """Only key `expert` trains (None: no key trains)."""
        for j, key in enumerate(self.keys):
            key.requires_grad_(j == expert)

    def logits(self, pooled: Tensor) -> Tensor:
        """(B, d_in) -> (B, E) scaled dot products between the query and each key."""
        q = self.query(pooled.to(self.key_init.dtype))  # (B, key_dim)
        keys = torch.stack(list(self.keys), dim=0)  # (E, key_dim)
        return q @ keys.t() / (math.sqrt(self.key_dim) * self.temperature)

    def routing_loss(self, pooled: Tensor, current: int) -> Tensor:
        """Cross-entropy of the (unmasked) gate logits toward the current expert: at step i every training
        sample belongs to scenario i, so its prompt should select expert i."""
        logits = self.logits(pooled)
        target = torch.full((logits.shape[0],), current, dtype=torch.long, device=logits.device)
        return nn.functional.cross_entropy(logits, target)

    # -- attentive reflection ---------------------------------------------------------------------------
    @torch.no_grad()
    def add_reflection(self, points: Tensor, targets: Tensor) -> None:
        """Store scenario j = len(reflection_sizes)'s pseudo-inputs (K, d_in) and target gates (K, j + 1)."""
        scenario = len(self.reflection_sizes)
        if points.dim() != 2 or points.shape[1] != self.point_dim:
            raise ValueError(f"reflection points must have shape (K, {self.point_dim}), got {tuple(points.shape)}")
        if targets.shape != (points.shape[0], scenario + 1):
            raise ValueError(f"reflection targets of scenario {scenario} must have shape "
                             f"({points.shape[0]}, {scenario + 1}), got {tuple(targets.shape)}")
        full = torch.zeros(points.shape[0], self.max_experts, dtype=self.reflection_targets.dtype,
                           device=self.reflection_targets.device)
        full[:, : scenario + 1] = targets.to(full)
        self.reflection_points = torch.cat([self.reflection_points, points.to(self.reflection_points)], dim=0)
        self.reflection_targets = torch.cat([self.reflection_targets, full], dim=0)
        self.reflection_sizes.append(int(points.shape[0]))

    def resize_reflection(self, sizes: list[int]) -> None:
        """Recreate (zero) reflection buffers with the given per-scenario sizes, for loading a checkpoint."""
        total = sum(int(s) for s in sizes)
        self.reflection_points = torch.zeros(total, self.point_dim, device=self.reflection_points.device,
                                             dtype=self.reflection_points.dtype)
        self.reflection_targets = torch.zeros(total, self.max_experts, device=self.reflection_targets.device,
                                              dtype=self.reflection_targets.dtype)
        self.reflection_sizes = [int(s) for s in sizes]

    def reflection_owners(self) -> Tensor:
        """(N,) the scenario each stored point belongs to."""
        return torch.repeat_interleave(torch.arange(len(self.reflection_sizes)),
                                       torch.tensor(self.reflection_sizes, dtype=torch.long))

    def reflection_loss(self, before: int, encode=None) -> Tensor | None:
        """Mean KL(target ‖ gate) over the stored points of scenarios < `before` (None if there are none).
        `encode` maps the stored points (N, point_dim) to gate inputs (N, d_in) (default: they are).

        The gate of a point is the softmax over ALL current experts, and its target is 0 on experts added
        after its scenario: that is what pushes old scenarios' inputs away from the newer experts (a
        softmax restricted to the experts that existed then would be trivially 1 for scenario 0)."""
        owners = self.reflection_owners().to(self.reflection_points.device)
        keep = owners < min(before, self.num_experts)
        if not bool(keep.any()):
            return None
        count = self.num_experts
        targets = self.reflection_targets[keep, :count]  # (N, E)
        points = self.reflection_points[keep]
        log_gate = torch.log_softmax(self.logits(points if encode is None else encode(points)), dim=-1)  # (N, E)
        kl = (targets * (targets.clamp(min=1e-12).log() - log_gate)).sum(-1)  # (N,), 0 · log 0 = 0
        return kl.mean()

    def masking_probability(self, current: int) -> float:
        """The probability of masking each old expert while expert `current` trains (module docstring)."""
        if self.mask_schedule == "constant" or current < 1:
            return self.mask_prob
        return 1.0 - (1.0 - self.mask_prob) / current

    def forward(self, pooled: Tensor, current: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Expert weights (B, E). With `current` (training): random masking of old experts, the current
        one always kept; without (inference): top_k of all experts."""
        if self.num_experts == 0:
            raise RuntimeError("the gate has no experts yet")
        logits = self.logits(pooled)
        if current is None:
            return select_top_k(logits, self.top_k)
        available = torch.ones_like(logits, dtype=torch.bool)
        prob = self.masking_probability(current)
        if prob > 0 and current > 0:
            draw = torch.rand(logits.shape, generator=generator, device="cpu").to(logits.device)
            available = draw >= prob
        available[:, current] = True
        return select_top_k(logits, self.top_k, available, forced=current)

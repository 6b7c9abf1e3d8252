"""Expert layers: a frozen `nn.Linear` or `nn.Embedding` plus a growable bank of LoRA experts, one fused product.

`ExpertLinear` wraps one frozen `nn.Linear` (kept untouched as `.base`) and holds a bank of LoRA
experts for it: expert e is the pair A_e (r, in), B_e (out, r). Its output is

    y = base(x) + (alpha / r) · Σ_e w[b, e] · B_e A_e x

computed as ONE low-rank product: the active experts' A's are stacked to (K·r, in) and their B's
to (out, K·r), so the mixture costs two matrix products whatever the number of experts.
`ExpertEmbedding` does the same for an `nn.Embedding` (the input token embeddings): "in" is the
vocabulary, A_e x is a column lookup A_e[:, id] instead of a product (PEFT's `lora_embedding_A/B`;
as there, A starts at zero and B Gaussian, and no dropout is applied to token ids). Both are
`ExpertLayer`s: routing (a shared `RoutingState`, `l2emg.continual.lora.routing`), merging, saving
and the per-sample expert selection are shared.

Storage choice: every expert is its own (A, B) Parameter pair, and freezing is `requires_grad`.
A frozen expert then gets no gradient at all, so no optimizer (not even one with weight decay or
momentum) can move it: "older experts stay bit-identical" holds by construction rather than by
masking gradients of a stacked tensor. The stacking for the fused product happens on the fly
(`torch.cat`, O(K·r·(in+out)) copies, small next to the O(tokens·K·r·(in+out)) products).

Only experts that matter are computed: those with a non-zero weight for some sample of the batch
(masked or not-top-k experts carry exactly zero weight, so dropping them changes neither the
output nor any gradient) plus the trainable ones (kept so that every trainable parameter always
receives a gradient, zero if unused — distributed data parallel requires that). With per-sample
top-k routing a batch may use many experts while each sample uses only k of them; then every sample
computes just its own k (the selected experts' A and B gathered per sample, one batched product),
which costs k/K of the fused product over the batch's K experts — but the gather itself copies every
selected A and B for every sample, so it only pays for inputs long enough to amortise it (training
sequences; not one decoding step, where the fused product is 2–25× faster per layer): `gather_pays` decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2emg.continual.lora.routing import RoutingState

__all__ = ["GATHER_COST", "ExpertEmbedding", "ExpertLayer", "ExpertLinear"]

# What gathering one value of a sample's own A or B costs, in multiply-adds of the fused product.
# Measured on the 2-core CPU at K = 8, k = 2: a q_proj layer's crossover lies near 20 tokens in
# inference and 64 in training, an lm_head's (4,000 outputs) below 32 in inference and above 96 in
# training; an embedding lookup never gains. One batched decoding step of the default model is 1.8×
# faster fused (benchmarks/expert_bank.py). 64 sits between; either side of a crossover the two paths
# differ by a few percent.
GATHER_COST = 64


class ExpertLayer(nn.Module):
    """A frozen layer (`.base`) plus a growable bank of LoRA experts mixed by per-sample weights.

    Subclasses say how the base is read (`_down`, `_down_selected`: x -> A x), how a merged delta maps
    onto the base weight (`_as_weight`) and how experts are initialised (`_init_expert`)."""

    base_type: type[nn.Module] = nn.Module

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "kaiming",
        routing: RoutingState | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, self.base_type):
            raise TypeError(f"{type(self).__name__} wraps {self.base_type.__name__}, got {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if init not in ("kaiming", "gaussian"):
            raise ValueError(f"init must be 'kaiming' or 'gaussian', got {init!r}")
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.init = init
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterList()  # expert e: (r, in)
        self.lora_B = nn.ParameterList()  # expert e: (out, r)
        self.routing = routing if routing is not None else RoutingState()
        # The pristine base weight while experts are merged into it (restored bit-exactly by unmerge).
        self._unmerged_weight: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        """The base layer's weight (what Hugging Face code reads from an embedding or `lm_head`)."""
        return self.base.weight

    @property
    def pristine_weight(self) -> Tensor:
        """The base weight without any merged expert (the live weight when nothing is merged)."""
        return self._unmerged_weight if self._unmerged_weight is not None else self.base.weight

    # -- shape facts --------------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        raise NotImplementedError

    @property
    def num_experts(self) -> int:
        return len(self.lora_A)

    @property
    def adapter_dtype(self) -> torch.dtype:
        """Experts are float32 when the base is half precision (stable training), else the base dtype."""
        dtype = self.base.weight.dtype
        return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    @property
    def merged(self) -> bool:
        return self._unmerged_weight is not None

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, experts={self.num_experts}, merged={self.merged}"

    # -- experts ------------------------------------------------------------------------------------
    def add_expert(self, trainable: bool = True, generator: torch.Generator | None = None) -> int:
        """Append an expert (A random, B zero: it starts as a no-op) and return its index."""
        device = self.base.weight.device
        a = torch.empty(self.rank, self.in_features, device=device, dtype=self.adapter_dtype)
        b = torch.empty(self.out_features, self.rank, device=device, dtype=self.adapter_dtype)
        self._init_expert(a, b, generator)
        self.lora_A.append(nn.Parameter(a, requires_grad=trainable))
        self.lora_B.append(nn.Parameter(b, requires_grad=trainable))
        return self.num_experts - 1

    def _init_expert(self, a: Tensor, b: Tensor, generator: torch.Generator | None) -> None:
        """Fill a new expert's A and B in place so that B A = 0."""
        raise NotImplementedError

    def set_trainable(self, experts: Iterable[int]) -> None:
        """Only the listed experts' A and B receive gradients; all others are frozen."""
        wanted = set(experts)
        for e in wanted:
            self._check_index(e)
        for e in range(self.num_experts):
            self.lora_A[e].requires_grad_(e in wanted)
            self.lora_B[e].requires_grad_(e in wanted)

    @property
    def trainable_experts(self) -> tuple[int, ...]:
        return tuple(e for e in range(self.num_experts) if self.lora_A[e].requires_grad)

    def expert_parameters(self, expert: int) -> tuple[nn.Parameter, nn.Parameter]:
        self._check_index(expert)
        return self.lora_A[expert], self.lora_B[expert]

    def _check_index(self, expert: int) -> None:
        if not 0 <= expert < self.num_experts:
            raise IndexError(f"expert {expert} does not exist (the bank has {self.num_experts})")

    # -- forward ------------------------------------------------------------------------------------
    def _active_experts(self) -> tuple[tuple[int, ...], Tensor | None]:
        """(experts to compute, their weights (K,) | (B, K) | None meaning a single expert of weight 1)."""
        count = self.num_experts
        # Trainable experts take part even at weight 0 (so they always get a gradient) — only when
        # gradients are being recorded; under no_grad a zero weight is simply skipped.
        trainable = self.trainable_experts if torch.is_grad_enabled() else ()
        weights = self.routing.weights
        if weights is None:  # plain LoRA: all weight on the newest expert
            newest = count - 1
            active = tuple(sorted({newest, *trainable}))
            if len(active) == 1:
                return active, None
            one_hot = torch.zeros(len(active), device=self.base.weight.device, dtype=self.adapter_dtype)
            one_hot[active.index(newest)] = 1.0
            return active, one_hot
        if weights.shape[-1] != count:
            raise ValueError(f"routing weights have {weights.shape[-1]} experts but the layer has {count}")
        active = tuple(sorted({*self.routing.used, *trainable}))
        if len(active) == count:
            return active, weights
        index = torch.tensor(active, device=weights.device, dtype=torch.long)
        return active, weights.index_select(-1, index)

    def stacked_experts(self, experts: Sequence[int]) -> tuple[Tensor, Tensor]:
        """A_cat (K·r, in) and B_cat (out, K·r) of the given experts, in that order."""
        if len(experts) == 1:
            return self.lora_A[experts[0]], self.lora_B[experts[0]]
        a = torch.cat([self.lora_A[e] for e in experts], dim=0)
        b = torch.cat([self.lora_B[e] for e in experts], dim=1)
        return a, b

    def _low_rank(self, x: Tensor, experts: Sequence[int], weights: Tensor | None, out: Tensor,
                  rows: Tensor | None = None) -> Tensor:
        """out + scaling · Σ_k w[b,k] B_k A_k x over `experts` as one fused product (the sum is
        accumulated into `out` by the second product itself).

        x: the layer input; weights: (K,), (B, K) or None (a single expert of weight 1); out: the base
        output, (B, T, out) or (B, out), or only its output `rows` (R,) when given."""
        a_cat, b_cat = self.stacked_experts(experts)  # (K·r, in), (out, K·r)
        if rows is not None:
            b_cat = b_cat[rows]  # (R, K·r)
        h = self._down(x, a_cat)  # (B, T, K·r) or (B, K·r)
        if weights is None:
            h = h * self.scaling
        else:
            columns = weights.to(h.dtype).repeat_interleave(self.rank, dim=-1) * self.scaling  # (K·r,) | (B, K·r)
            if columns.dim() == 2:
                batch = columns.shape[0]
                if h.dim() < 2 or (batch != h.shape[0] and batch != 1):
                    raise ValueError(
                        f"routing weights are set for a batch of {batch} but the layer input has shape "
                        f"{tuple(x.shape)}; set the routing for the batch actually fed (e.g. after "
                        f"expanding it for num_return_sequences or beams)")
                columns = columns.view(batch, *([1] * (h.dim() - 2)), columns.shape[-1])  # (B, 1, K·r)
            h = h * columns
        flat = torch.addmm(out.reshape(-1, out.shape[-1]).to(h.dtype), h.reshape(-1, h.shape[-1]), b_cat.t())
        return flat.view(out.shape)  # (B, T, out)

    def _selected_low_rank(self, x: Tensor, experts: tuple[int, ...], positions: Tensor, weights: Tensor,
                           out: Tensor) -> Tensor:
        """out + scaling · Σ_k w[b,k] B_k A_k x where sample b computes only ITS selected experts.

        positions (B, k): sample b's experts as positions into `experts`; weights (B, k) their weights.
        With top-k routing a sample uses k of the batch's K experts, and the batched product over each
        sample's own k experts costs k/K of the fused one. Gradients reach the trainable experts through
        the gather (a zero gradient for one that no sample selected). out: (B, T, out) or (B, out)."""
        (batch, k), r = positions.shape, self.rank
        # Gathered from contiguous (K, r, ·) stacks: every picked expert is one block copy (a gather from
        # a permuted (out, K·r) view of the B's is strided and ~3x slower for lm_head).
        a = torch.stack([self.lora_A[e] for e in experts])[positions].reshape(batch, k * r, -1)  # (B, k·r, in)
        b = torch.stack([self.lora_B[e].t() for e in experts])[positions].reshape(batch, k * r, -1)  # (B, k·r, out)
        h = self._down_selected(x, a)  # (B, T, k·r)
        columns = weights.to(h.dtype).repeat_interleave(r, dim=-1) * self.scaling  # (B, k·r)
        out3 = out if out.dim() == 3 else out.unsqueeze(1)
        y = torch.baddbmm(out3.to(h.dtype), h * columns.unsqueeze(1), b)  # (B, T, out)
        return y if out.dim() == 3 else y.squeeze(1)

    def gather_pays(self, x: Tensor, experts: int, k: int) -> bool:
        """Whether each sample computing only its own k of the batch's `experts` experts (gathered per
        sample) is cheaper than the fused product over all of them for the input x (B, T, …) or (B, …).

        Fused: B·T·K·r·(read + out) multiply-adds; selected: B·T·k·r·(read + out) plus B·k·r·(in + out)
        gathered values at GATHER_COST each (read = in for a product, 1 for an embedding lookup)."""
        if k >= experts:
            return False
        tokens = x.numel() // (x.shape[0] * self._read_width)
        saved = tokens * (experts - k) * (self._read_width + self.out_features)
        return saved > GATHER_COST * k * (self.in_features + self.out_features)

    @property
    def _read_width(self) -> int:
        """Values of x per token (the layer input's last size; 1 token id for an embedding)."""
        raise NotImplementedError

    def _down(self, x: Tensor, a_cat: Tensor) -> Tensor:
        """A_cat x for every expert at once: (…, K·r)."""
        raise NotImplementedError

    def _down_selected(self, x: Tensor, a: Tensor) -> Tensor:
        """Per-sample A x with each sample's own stacked A (B, k·r, in): (B, T, k·r)."""
        raise NotImplementedError

    def _adapter_input(self, x: Tensor) -> Tensor:
        """What the experts read (dropout applies here)."""
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.add_experts(x, self.base(x))

    def add_experts(self, x: Tensor, out: Tensor, rows: Tensor | None = None) -> Tensor:
        """`out` (the base output for input x, or anything of its shape) plus the routed experts' update;
        with `rows` (R,), `out` holds only those output rows (see `ExpertLinear.forward_rows`)."""
        if self.merged or self.num_experts == 0:
            return out
        active, weights = self._active_experts()
        if not active:  # every weight is zero and nothing trains
            return out
        x = self._adapter_input(x)
        per_sample = (weights is not None and weights.dim() == 2 and x.dim() in (2, 3)
                      and weights.shape[0] == x.shape[0] > 1)  # per-sample routing of the batch as fed
        # Frozen and trainable experts form two groups: autograd then computes weight gradients for the
        # trainable group only (one stacked group would get an (out, K·r) gradient, or a gathered
        # (B, k·r, out) one, all but the trainable slices thrown away). Each group is one fused pair of
        # matrix products, or, where samples use fewer of the group's experts than the batch does and
        # the gather pays, each sample's own experts gathered into one batched product.
        trainable = set(self.trainable_experts) if torch.is_grad_enabled() else set()
        result = out
        for positions in ([i for i, e in enumerate(active) if e not in trainable],
                          [i for i, e in enumerate(active) if e in trainable]):
            if not positions:
                continue
            experts = tuple(active[i] for i in positions)
            if per_sample and rows is None:
                picks, pick_weights = self.routing.row_selection(experts)
                if self.gather_pays(x, len(experts), picks.shape[1]):
                    result = self._selected_low_rank(x, experts, picks, pick_weights, result)
                    continue
            group_weights = weights if weights is None or len(positions) == len(active) else weights[..., positions]
            result = self._low_rank(x, list(experts), group_weights, result, rows)
        return result.to(out.dtype)

    # -- merging ------------------------------------------------------------------------------------
    @torch.no_grad()
    def delta_weight(self, weights: Tensor) -> Tensor:
        """scaling · Σ_e w_e B_e A_e as an (out, in) matrix in the adapter dtype; weights: (E,)."""
        if weights.shape != (self.num_experts,):
            raise ValueError(f"merge weights must have shape ({self.num_experts},), got {tuple(weights.shape)}")
        active = tuple(int(i) for i in torch.nonzero(weights).flatten().tolist())
        delta = torch.zeros(self.out_features, self.in_features, device=self.base.weight.device, dtype=self.adapter_dtype)
        if not active:
            return delta
        a_cat, b_cat = self.stacked_experts(active)
        w = weights.to(device=delta.device, dtype=delta.dtype)[list(active)]
        columns = w.repeat_interleave(self.rank) * self.scaling  # (K·r,)
        return delta.addmm_(b_cat * columns, a_cat)

    @torch.no_grad()
    def merge(self, weights: Tensor) -> None:
        """Fold the weighted experts into the base weight; the fused path is skipped while merged.

        Merging again replaces the previous merge (it starts from the pristine weight)."""
        delta = self.delta_weight(weights)
        if self._unmerged_weight is None:
            self._unmerged_weight = self.base.weight.detach().clone()
        merged = self._unmerged_weight.to(delta.dtype) + self._as_weight(delta)
        self.base.weight.copy_(merged.to(self.base.weight.dtype))

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact original base weight (a kept copy, not a subtraction)."""
        if self._unmerged_weight is not None:
            self.base.weight.copy_(self._unmerged_weight)
            self._unmerged_weight = None

    def _as_weight(self, delta: Tensor) -> Tensor:
        """An (out, in) delta in the layout of the base weight."""
        return delta


class ExpertLinear(ExpertLayer):
    """LoRA experts on a frozen `nn.Linear`: A_e x is a matrix product; dropout on the input."""

    base_type = nn.Linear

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def _init_expert(self, a: Tensor, b: Tensor, generator: torch.Generator | None) -> None:
        if self.init == "kaiming":  # PEFT's / nn.Linear's default
            nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        else:
            nn.init.normal_(a, std=1.0 / self.rank, generator=generator)
        nn.init.zeros_(b)

    @property
    def _read_width(self) -> int:
        return self.base.in_features

    def _adapter_input(self, x: Tensor) -> Tensor:
        return self.dropout(x.to(self.adapter_dtype))  # one dropout mask shared by all experts

    def _down(self, x: Tensor, a_cat: Tensor) -> Tensor:
        return F.linear(x, a_cat)

    def _down_selected(self, x: Tensor, a: Tensor) -> Tensor:
        x3 = x if x.dim() == 3 else x.unsqueeze(1)  # (B, T, in)
        return torch.bmm(x3, a.transpose(1, 2))

    def forward_rows(self, x: Tensor, rows: Tensor) -> Tensor:
        """Only the output features `rows` (R,) of `forward(x)`: (…, R). Decoding restricted to the
        motion vocabulary reads an `lm_head` this way (`l2emg.lm.generate.RowHead`), so a 49 k-row
        output layer costs R rows per step; the experts' B's are sliced the same way."""
        bias = None if self.base.bias is None else self.base.bias[rows]
        return self.add_experts(x, F.linear(x, self.base.weight[rows], bias), rows)


class ExpertEmbedding(ExpertLayer):
    """LoRA experts on a frozen `nn.Embedding` (vocabulary V = "in", embedding size = "out").

    Expert e adds scaling · B_e A_e[:, id] to the embedding of token `id`. As in PEFT, A starts at
    zero and B Gaussian (a lookup of a Kaiming-initialised (r, V) matrix would be tiny and learn
    slowly), and token ids get no dropout. `frozen(ids)` reads the pristine table, merged or not.
    `limit_rows(ids)`: only those rows get the experts' update (the others read the base table, and
    their columns of A get no gradient), e.g. the motion tokens a run added to a pretrained vocabulary."""

    base_type = nn.Embedding
    row_mask: Tensor | None = None  # (V, 1) 1.0 for the rows the experts update; None: every row

    def limit_rows(self, ids: Sequence[int] | None) -> None:
        """Let the experts update only the rows `ids` (None: every row again)."""
        if ids is None:
            self.row_mask = None
            return
        mask = torch.zeros(self.in_features, 1, dtype=self.adapter_dtype, device=self.base.weight.device)
        mask[torch.tensor(list(ids), dtype=torch.long, device=mask.device)] = 1.0
        self.row_mask = mask

    def _masked(self, x: Tensor, h: Tensor) -> Tensor:
        """The down-projection h (…, k·r) of ids x, zero for the rows the experts do not update."""
        return h if self.row_mask is None else h * F.embedding(x, self.row_mask).to(h.dtype)

    @property
    def in_features(self) -> int:
        return self.base.num_embeddings

    @property
    def out_features(self) -> int:
        return self.base.embedding_dim

    def _init_expert(self, a: Tensor, b: Tensor, generator: torch.Generator | None) -> None:
        nn.init.zeros_(a)
        nn.init.normal_(b, generator=generator)

    @property
    def _read_width(self) -> int:
        return 1  # a token id: A_e x is a column lookup

    def frozen(self, ids: Tensor) -> Tensor:
        """The base embeddings of `ids` without any expert (even while experts are merged)."""
        base = self.base
        return F.embedding(ids, self.pristine_weight, base.padding_idx, base.max_norm, base.norm_type,
                           base.scale_grad_by_freq, base.sparse)

    def _down(self, x: Tensor, a_cat: Tensor) -> Tensor:
        return self._masked(x, F.embedding(x, a_cat.t()))  # (…, K·r)

    def _down_selected(self, x: Tensor, a: Tensor) -> Tensor:
        ids = x if x.dim() == 2 else x.unsqueeze(1)  # (B, T)
        h = torch.gather(a, 2, ids.unsqueeze(1).expand(-1, a.shape[1], -1)).transpose(1, 2)  # (B, T, k·r)
        return self._masked(ids, h)

    def _as_weight(self, delta: Tensor) -> Tensor:
        delta = delta.t()  # (V, d)
        return delta if self.row_mask is None else delta * self.row_mask.to(delta.dtype)

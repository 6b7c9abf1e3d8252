"""MTL: one LoRA adapter trained on the union of every scenario's training data at once — the
non-continual upper bound of Table 2 (it has no forgetting to measure, so no FR)."""

from __future__ import annotations

from l2emg.continual.methods.seqlora import SeqLoRA


class MTL(SeqLoRA):
    name = "mtl"
    label = "MTL"
    paper_row = "mtl"
    joint_training = True

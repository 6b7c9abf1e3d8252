"""One global train/val/test split per motion, stratified by (scenario, emotion).

Why global: the motion tokenizer and the evaluator are trained once on the global train split, and
every L²-EMG stream subset takes its train/val/test parts from these same labels, so no model ever
sees a motion it is later tested on.

How: motions are grouped by (scenario, emotion). Groups named in `holdout_pairs` go entirely to
`test` (they measure emotion transfer to a pair never trained on). Every other group is shuffled
with a seeded generator and cut by `ratios` (train, val, test); the fractional remainders are
carried from group to group (systematic allocation), so even groups of 2–3 motions add up to the
requested totals instead of all rounding to train. The result depends only on the ids, labels,
ratios, hold-out pairs and seed — never on the order the motions were generated in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from l2emg.data.layout import SPLITS


def _stable_seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def assign_splits(
    items: Iterable[tuple[str, str | None, str | None]],
    ratios: Sequence[float] = (0.8, 0.05, 0.15),
    holdout_pairs: Iterable[Sequence[str]] = (),
    seed: int = 0,
) -> dict[str, str]:
    """{motion_id: 'train'|'val'|'test'} for items (motion_id, scenario, emotion).

    Held-out (scenario, emotion) pairs go entirely to 'test'; other groups follow `ratios`.
    """
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {tuple(ratios)}")
    holdout = {(str(s), str(e)) for s, e in holdout_pairs}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    seen: set[str] = set()
    for motion_id, scenario, emotion in items:
        if motion_id in seen:
            raise ValueError(f"duplicate motion id {motion_id!r}")
        seen.add(motion_id)
        groups[(str(scenario), str(emotion))].append(motion_id)

    out: dict[str, str] = {}
    # Groups in a seeded order, so the carried remainders do not always favour the same groups.
    keys = sorted(groups)
    order = np.random.default_rng(_stable_seed(seed, "group-order")).permutation(len(keys))
    expected = np.zeros(3)   # running expected count per split (train, val, test)
    assigned = np.zeros(3, dtype=np.int64)
    for index in order:
        key = keys[index]
        ids = sorted(groups[key])
        if key in holdout:
            out.update({motion_id: "test" for motion_id in ids})
            continue
        rng = np.random.default_rng(_stable_seed(seed, *key))
        ids = [ids[i] for i in rng.permutation(len(ids))]
        expected += len(ids) * np.asarray(ratios, dtype=np.float64)
        # val and test take their carried quota; train gets the rest of the group.
        n_val = int(min(len(ids), max(0, round(expected[1]) - assigned[1])))
        n_test = int(min(len(ids) - n_val, max(0, round(expected[2]) - assigned[2])))
        n_train = len(ids) - n_val - n_test
        for i, motion_id in enumerate(ids):
            out[motion_id] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
        assigned += (n_train, n_val, n_test)
    return out


def split_counts(assignment: dict[str, str]) -> dict[str, int]:
    return {s: sum(v == s for v in assignment.values()) for s in SPLITS}

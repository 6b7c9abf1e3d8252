"""Write motions of a dataset as a folder of takes, the input of `l2emg data import`.

    python scripts/export_takes.py DATASET OUT [--scenario S] [--count N] [--split test]

Each motion becomes OUT/<id>.bvh (our skeleton's BVH, `l2emg.motion.bvh.write_bvh`) with its
captions in OUT/<id>.txt, and OUT/labels.csv holds `id,emotion,scenario`. docs/guide.md's "Bring your
own data" walkthrough uses it to make demonstration takes anyone can reproduce; with your own mocap
you start from your files instead.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from l2emg.data.reader import load_dataset
from l2emg.motion.bvh import write_bvh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scenario", default=None, help="only this scenario's motions")
    parser.add_argument("--count", type=int, default=None, help="at most this many motions")
    parser.add_argument("--split", default=None, help="only this split (train, val, test)")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    records = [r for r in dataset.records if (args.scenario in (None, r.scenario))
               and (args.split in (None, r.split))][: args.count]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "emotion", "scenario"])
        for record in records:
            write_bvh(args.out / f"{record.motion_id}.bvh", np.asarray(dataset.joints(record.motion_id)))
            (args.out / f"{record.motion_id}.txt").write_text("".join(c.text + "\n" for c in record.captions))
            writer.writerow([record.motion_id, record.emotion or "", record.scenario or ""])
    print(f"{len(records)} takes written to {args.out}")


if __name__ == "__main__":
    main()

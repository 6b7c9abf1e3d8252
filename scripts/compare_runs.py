"""Compare two run folders file by file: are they the same run, up to timings and absolute paths?

    python scripts/compare_runs.py RUN_A RUN_B

Used to check that a refactor changed nothing: run the same profile, commands and thread count on
the tree before and after, then compare. Weights (safetensors) must hold bit-identical tensors and equal metadata, other binary files
(arrays, images) must be byte-identical;
JSON files must be equal after dropping timing fields and fields that hold the run folder's own path;
Markdown reports must be equal after the same normalisation of their text. Lock files (who held
the folder, when) and method runs' train.log (how the run went: its times, and a resumed run's
extra lines) are not compared. Exit code 1 lists every
difference.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# JSON keys that record when or how long, or where the run folder was: they differ between two
# otherwise identical runs.
VOLATILE_KEYS = {"finished_at", "seconds", "elapsed_s", "train_seconds", "timings_s", "timing", "torch_threads",
                 "path", "out_dir", "root", "source", "backbone", "created_at", "elapsed"}
VOLATILE_SUFFIXES = ("_s", "_seconds")
TEXT_FILES = {".md", ".yaml", ".txt", ".csv"}
NOT_COMPARED = {".lock", "train.log"}


def _clean(value, root: str):
    if isinstance(value, dict):
        return {k: _clean(v, root) for k, v in value.items()
                if k not in VOLATILE_KEYS and not k.endswith(VOLATILE_SUFFIXES)}
    if isinstance(value, list):
        return [_clean(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "RUN")
    return value


def _text(path: Path, root: str) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").replace(root, "RUN")
    return re.sub(r"took \d+ s|\(\d{4}-\d\d-\d\dT[\d:]+\)|finished_at=[^,]*|\w*seconds=[\d.]+,?", "", text)


def _safetensors(path: Path, root: str) -> tuple[dict, dict]:
    """(tensor bytes by name, metadata with JSON values cleaned): weights must match bit for bit."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        tensors = {k: f.get_tensor(k).tobytes() for k in f.keys()}
        meta = {}
        for key, value in (f.metadata() or {}).items():
            try:
                meta[key] = _clean(json.loads(value), root)
            except ValueError:
                meta[key] = value.replace(root, "RUN")
    return tensors, _clean(meta, root)


def compare(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in NOT_COMPARED}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name not in NOT_COMPARED}
    problems = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    problems += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if rel.suffix == ".safetensors":
            same = _safetensors(pa, str(a)) == _safetensors(pb, str(b))
        elif rel.suffix == ".json":
            same = _clean(json.loads(pa.read_text()), str(a)) == _clean(json.loads(pb.read_text()), str(b))
        elif rel.suffix in TEXT_FILES:
            same = _text(pa, str(a)) == _text(pb, str(b))
        else:
            same = pa.read_bytes() == pb.read_bytes()
        if not same:
            problems.append(f"differs: {rel}")
    return problems


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    problems = compare(a, b)
    for line in problems:
        print(line)
    count = sum(1 for p in a.rglob("*") if p.is_file())
    print(f"{count} files compared: " + ("identical" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

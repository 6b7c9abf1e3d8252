"""Start a run folder of another profile from a finished run's data, tokenizer and evaluator.

    python scripts/share_stages.py runs/default runs/smollm2 --profile smollm2

Two profiles that differ only in their language model (`lm`, `lora`, `train`, ...) measure with the
same instrument when they share the dataset, the motion tokenizer (and so the codes) and the
evaluator. This copies those stages (hard links where the file system allows), records them in the new
run's manifest and saves the new profile's config; `l2emg run --profile P --run-dir DST` then builds
only the backbone and language-model stages. Refused when the two configs differ in data, tokenizer or
evaluator settings.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from l2emg.config import load_config, read_saved_config
from l2emg.runs import RunDir, config_differences

STAGES = ("data", "previews", "tokenizer", "evaluator", "reference", "codes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a run folder whose shared stages are done")
    parser.add_argument("target", type=Path, help="the new run folder (must not hold these stages yet)")
    parser.add_argument("--profile", required=True, help="profile of the new run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, as l2emg run")
    args = parser.parse_args(argv)
    source, target = RunDir(args.source), RunDir(args.target)
    config = load_config(args.profile, args.overrides)
    changed = config_differences(read_saved_config(source.config_path), config, ("data", "tokenizer", "evaluator"))
    if changed:
        print(f"{source.config_path}: differs from profile {args.profile} in {', '.join(changed)}; nothing copied")
        return 1
    missing = [s for s in STAGES if not source.is_done(s)]
    if missing:
        print(f"{source.path}: stages not done yet: {', '.join(missing)}")
        return 1
    target.init(config)
    paths = [(source.data_dir, target.data_dir), (source.previews_dir, target.previews_dir),
             (source.tokenizer_dir, target.tokenizer_dir), (source.evaluator_dir, target.evaluator_dir),
             (source.codes_path, target.codes_path)]
    for _src, dst in paths:
        if dst.exists():
            print(f"{dst}: exists; nothing copied")
            return 1
    for src, dst in paths:
        if src.is_dir():
            shutil.copytree(src, dst, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)
    for stage in STAGES:
        target.mark_done(stage, **{**source.stage_info(stage), "shared_from": str(source.path)})
    print(f"{target.path}: {', '.join(STAGES)} shared from {source.path}")
    return 0


def _link_or_copy(src, dst) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


if __name__ == "__main__":
    sys.exit(main())

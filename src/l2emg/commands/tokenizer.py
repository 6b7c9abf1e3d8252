"""`l2emg tokenizer …`: train, apply and evaluate the VQ-VAE motion tokenizer.

    l2emg tokenizer train  --data DIR --out TOKDIR [--profile default] [--set window=64]
    l2emg tokenizer encode --tokenizer TOKDIR --data DIR --out codes.json
    l2emg tokenizer decode --tokenizer TOKDIR --codes codes.json --out DIR
    l2emg tokenizer eval   --tokenizer TOKDIR --data DIR [--split test]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from l2emg.commands import PROFILE_HELP
from l2emg.data.layout import SPLITS
from l2emg.errors import DataError

app = typer.Typer(help="Train, apply and evaluate the VQ-VAE motion tokenizer.", no_args_is_help=True)
console = Console()

CODES_FORMAT = "l2emg-motion-codes"


def _overrides(values: list[str]) -> list[str]:
    """`--set key=value`: a bare key is a field of the `tokenizer` section."""
    from l2emg.config import qualify_overrides

    return qualify_overrides(values, "tokenizer")


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title=f"tokenizer reconstruction on the {metrics['split']} split ({metrics['num_motions']} motions)")
    table.add_column("group")
    table.add_column("MPJPE (mm)", justify="right")
    table.add_column("global MPJPE (mm)", justify="right")
    table.add_column("frames", justify="right")
    table.add_row("[bold]all[/bold]", f"{metrics['mpjpe_mm']:.1f}", f"{metrics['mpjpe_global_mm']:.1f}", str(metrics["frames"]))
    for kind in ("per_scenario", "per_emotion"):
        for name, row in metrics[kind].items():
            table.add_row(name, f"{row['mpjpe_mm']:.1f}", f"{row['mpjpe_global_mm']:.1f}", str(row["frames"]))
        table.add_section()
    table.caption = (
        f"codebook usage {100 * metrics['codebook_usage']:.1f}% ({metrics['codes_used']}/{metrics['codebook_size']} codes), "
        f"perplexity {metrics['perplexity']:.1f}"
        + (f", reconstruction FID {metrics['reconstruction_fid']:.3f}" if "reconstruction_fid" in metrics else "")
    )
    return table


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="dataset folder (HumanML3D layout)"),
    out: Path = typer.Option(..., "--out", help="tokenizer folder to write (re-running resumes)"),
    profile: str = typer.Option("default", help=PROFILE_HELP),
    set_: list[str] = typer.Option([], "--set", help="override key=value, e.g. iterations=2000 or "
                                                     "tokenizer.width=128 (repeatable; bare keys mean tokenizer.<key>)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    evaluate: bool = typer.Option(True, help="evaluate on the test split afterwards"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice; use 1 on a "
                                                     "machine shared with other jobs)"),
) -> None:
    """Train the VQ-VAE on the union of all scenarios' training splits (stage 1).

    Checkpoints every tokenizer.checkpoint_interval steps; an interrupted run resumes exactly
    where it stopped when the same command is run again.
    """
    from l2emg.config import load_config, save_config
    from l2emg.data.reader import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.tokenizer.evaluate import evaluate_tokenizer
    from l2emg.tokenizer.train import train_tokenizer
    from l2emg.utils.io import save_json

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    config = load_config(profile, _overrides(set_))
    summary = train_tokenizer(config, data, out, progress=progress)
    save_config(config, out / "run_config.yaml")
    final = summary.get("final", {})
    console.print(
        f"[green]tokenizer[/green] {out}: {summary['steps']} steps in {summary['elapsed_s']:.0f} s; "
        + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k not in ("step",))
    )
    if evaluate:
        tokenizer = MotionTokenizer.from_pretrained(out, config.tokenizer)
        metrics = evaluate_tokenizer(tokenizer, load_dataset(data), "test", progress=progress)
        save_json(out / "eval_test.json", metrics)
        console.print(_metrics_table(metrics))
        console.print(f"saved {out / 'eval_test.json'}")


@app.command()
def encode(
    tokenizer_dir: Path = typer.Option(..., "--tokenizer", help="trained tokenizer folder"),
    data: Path = typer.Option(..., "--data", help="dataset folder (HumanML3D layout)"),
    out: Path = typer.Option(..., "--out", help="codes JSON file to write"),
    split: Optional[str] = typer.Option(None, help="only this split (train/val/test); default: all"),
) -> None:
    """Encode every motion of a dataset into codes: a JSON file mapping each motion id to its code list."""
    from l2emg.data.reader import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.utils.io import save_json

    if split is not None and split not in SPLITS:
        raise DataError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    tokenizer = MotionTokenizer.from_pretrained(tokenizer_dir)
    dataset = load_dataset(data)
    records = dataset.records if split is None else dataset.split(split)
    ids = [r.motion_id for r in records]
    with console.status(f"encoding {len(ids)} motions"):
        codes = tokenizer.encode_motions([dataset.features(i) for i in ids], names=ids)
    save_json(out, {
        "format": CODES_FORMAT,
        "tokenizer": str(tokenizer_dir),
        "dataset": str(data),
        "codebook_size": tokenizer.codebook_size,
        "frames_per_code": tokenizer.downsample,
        "num_frames": {i: int(len(dataset.features(i))) for i in ids},
        "codes": {i: c.tolist() for i, c in zip(ids, codes)},
    })
    total = sum(len(c) for c in codes)
    console.print(f"[green]encoded[/green] {len(ids)} motions into {total} codes -> {out}")


def _read_codes(path: Path) -> tuple[dict[str, list[int]], dict[str, int]]:
    from l2emg.utils.io import load_json

    try:
        payload = load_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: codes file not found") from None
    except ValueError as err:
        raise DataError(str(err)) from err
    if isinstance(payload, dict) and payload.get("format") == CODES_FORMAT:
        codes, frames = payload.get("codes"), payload.get("num_frames", {})
    else:
        codes, frames = payload, {}  # a bare {id: [codes]} mapping
    if not isinstance(codes, dict) or not codes:
        raise DataError(f"{path}: expected {{motion id: [code, …]}} (or the output of `l2emg tokenizer encode`)")
    for motion_id, seq in codes.items():
        if not isinstance(seq, list) or not seq or not all(isinstance(c, int) and not isinstance(c, bool) for c in seq):
            raise DataError(f"{path}: codes of {motion_id!r} must be a non-empty list of integers")
    return codes, frames


@app.command()
def decode(
    tokenizer_dir: Path = typer.Option(..., "--tokenizer", help="trained tokenizer folder"),
    codes_path: Path = typer.Option(..., "--codes", help="codes JSON: the output of `encode`, or a plain mapping of motion id to code list"),
    out: Path = typer.Option(..., "--out", help="folder for features/ID.npy and joints/ID.npy"),
    joints: bool = typer.Option(True, help="also write recovered joints (T, 22, 3)"),
) -> None:
    """Decode codes back to 263-d features (and joints) as .npy files."""
    from l2emg.motion.features import recover_joints
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.utils.io import save_npy

    tokenizer = MotionTokenizer.from_pretrained(tokenizer_dir)
    codes, frames = _read_codes(codes_path)
    ids = list(codes)
    for motion_id in ids:
        bad = [c for c in codes[motion_id] if not 0 <= c < tokenizer.codebook_size]
        if bad:
            raise DataError(f"{codes_path}: motion {motion_id!r} has codes outside [0, {tokenizer.codebook_size}): {bad[:5]}")
    with console.status(f"decoding {len(ids)} motions"):
        decoded = tokenizer.decode_codes([np.asarray(codes[i]) for i in ids])
    for motion_id, features in zip(ids, decoded):
        if motion_id in frames:
            features = features[: int(frames[motion_id])]
        save_npy(out / "features" / f"{motion_id}.npy", features.astype(np.float32))
        if joints:
            save_npy(out / "joints" / f"{motion_id}.npy", recover_joints(features).astype(np.float32))
    console.print(f"[green]decoded[/green] {len(ids)} motions -> {out}")


@app.command(name="eval")
def eval_(
    tokenizer_dir: Path = typer.Option(..., "--tokenizer", help="trained tokenizer folder"),
    data: Path = typer.Option(..., "--data", help="dataset folder (HumanML3D layout)"),
    split: str = typer.Option("test", help="split to evaluate"),
    out: Optional[Path] = typer.Option(None, help="metrics JSON (default: TOKENIZER/eval_<split>.json)"),
    evaluator_dir: Optional[Path] = typer.Option(None, "--evaluator", help="trained evaluator folder: adds the "
                                                                          "reconstruction FID"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """MPJPE of reconstructed joints (overall, per scenario, per emotion), codebook usage and perplexity."""
    from l2emg.data.reader import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.tokenizer.evaluate import evaluate_tokenizer
    from l2emg.utils.io import save_json

    if split not in SPLITS:
        raise DataError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    tokenizer = MotionTokenizer.from_pretrained(tokenizer_dir)
    evaluator = None
    if evaluator_dir is not None:
        from l2emg.eval.evaluator import Evaluator

        evaluator = Evaluator.from_pretrained(evaluator_dir)
    metrics = evaluate_tokenizer(tokenizer, load_dataset(data), split, progress=progress, evaluator=evaluator)
    path = out or tokenizer_dir / f"eval_{split}.json"
    save_json(path, metrics)
    console.print(_metrics_table(metrics))
    console.print(f"saved {path}")

"""`l2emg generate`: text -> motion with a trained run.

    l2emg generate "a person jogs in a circle, sadly" --run runs/default --out jog.gif
    l2emg generate "a person jogs in a circle, sadly" --run runs/default --method seqlora-unseen-o1 --out jog.gif
    l2emg generate "someone waves happily" --run runs/default --out wave.gif --mp4 --sample --temperature 0.8 --top-k 50 --seed 1

Writes the animation (GIF or MP4, by the suffix of --out or --mp4), the joints (`.npy`, (T, 22, 3)
metres) and a `.bvh` next to it. The run folder must hold `lm/` (the extended backbone and
`motion_vocab.json`) and `tokenizer/`; `--method` picks a trained method under `RUN/methods/` (a name
such as `esmoe`, or a folder name such as `esmoe-unseen-o1`); without it the run's only trained
method is used, or the plain backbone when none is trained (see `l2emg.generator`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from l2emg.commands import METHOD_LIST
from l2emg.errors import ConfigError


def generate(
    text: str = typer.Argument(..., help="the emotional motion description"),
    run: Path = typer.Option(..., "--run", help="run folder with lm/ and tokenizer/"),
    method: Optional[str] = typer.Option(
        None, "--method",
        help=f"trained method under RUN/methods/: a method name ({METHOD_LIST}) or a folder name "
             "(esmoe-unseen-o1); default: the run's only trained method, or the plain backbone "
             "when none is trained"),
    out: Path = typer.Option(Path("motion.gif"), "--out", help="animation to write (.gif or .mp4)"),
    mp4: bool = typer.Option(False, "--mp4", help="write an MP4 (replaces the suffix of --out)"),
    greedy: Optional[bool] = typer.Option(None, "--greedy/--sample", help="greedy decoding or sampling (default: the run's lm.greedy)"),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=1e-6, help="sampling temperature"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="sample among the k most likely codes"),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", min=1e-6,
        help="classifier-free guidance scale (1 = none; for a method trained with train.caption_dropout > 0)"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    max_codes: Optional[int] = typer.Option(None, "--max-codes", min=1, help="longest motion in codes (4 frames each)"),
    fps: int = typer.Option(20, "--fps", min=1, help="frames per second of the animation and BVH"),
) -> None:
    """Generate a motion for TEXT with a trained run; write GIF/MP4, joints .npy and .bvh."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not text.strip():
        raise ConfigError("generate: the text is empty")
    if mp4:
        out = out.with_suffix(".mp4")
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise ConfigError(f"{out}: --out must end in .gif or .mp4")
    from rich.console import Console

    from l2emg.generator import load_generator
    from l2emg.motion.bvh import write_bvh
    from l2emg.motion.render import render_motion
    from l2emg.utils.io import save_npy

    console = Console()
    with console.status("loading the run"):
        generator = load_generator(run, method=method)
    with console.status("generating"):
        codes, _, joints = generator.motions([text], greedy=greedy, temperature=temperature, top_k=top_k,
                                             guidance_scale=guidance, seed=seed, max_codes=max_codes, batch_size=1)
    motion = joints[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    npy_path, bvh_path = out.with_suffix(".npy"), out.with_suffix(".bvh")
    save_npy(npy_path, motion)
    write_bvh(bvh_path, motion, fps=fps)
    with console.status(f"rendering {out.name}"):
        render_motion(motion, out, caption=text, fps=fps)
    source = generator.method_dir.name if generator.method_dir is not None else "plain backbone (no trained method)"
    console.print(f"model: {source}")
    console.print(f"{len(codes[0])} motion codes -> {motion.shape[0]} frames ({motion.shape[0] / fps:.1f} s)")
    for path in (out, npy_path, bvh_path):
        console.print(f"wrote {path}")

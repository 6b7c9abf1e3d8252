"""`l2emg studio`: a local web page over a trained run.

    l2emg studio --run runs/default                      # then open http://127.0.0.1:7860
    l2emg studio --run runs/default --host 0.0.0.0 --port 8080

Type an emotional description, watch the motion as an interactive 3D skeleton and an MP4, see which
scenario experts the gate chose (ES-MoE) or which scenario EPI routed to, compare methods and stream
steps side by side, read the run's Table 2 and report, and download BVH / joints `.npy` / MP4
(`l2emg.studio`). Gradio is imported only when the command runs, so `l2emg --help` stays fast; a
missing run folder is refused before any server starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from l2emg.errors import CheckpointError


def studio(
    run: Path = typer.Option(..., "--run", help="run folder to serve: its lm/, tokenizer/ and finished method runs "
                                                "under methods/ (e.g. runs/default)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; 127.0.0.1 keeps the page on this "
                                                         "machine, 0.0.0.0 opens it to the network"),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port of the page (http://HOST:PORT)"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for generation (0 = torch's default)"),
) -> None:
    """Serve a local web page to generate, inspect, compare and download motions of a trained run."""
    if not run.is_dir():
        raise CheckpointError(f"{run}: run folder not found")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import torch

    if threads:
        torch.set_num_threads(threads)
    from l2emg.studio.app import StudioApp
    from l2emg.studio.backend import StudioBackend

    backend = StudioBackend(run)
    StudioApp(backend).launch(host=host, port=port, block=True,
                              on_ready=lambda url: typer.echo(f"l2emg studio: {url} (Ctrl+C to stop)"))

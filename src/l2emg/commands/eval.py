"""`l2emg eval …`: Train the evaluator and measure generated motions (FID, R-Precision, …)."""

import typer

app = typer.Typer(help="Train the evaluator and measure generated motions (FID, R-Precision, …).", no_args_is_help=True)

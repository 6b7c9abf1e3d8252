"""`l2emg tokenizer …`: Train, apply and evaluate the VQ-VAE motion tokenizer."""

import typer

app = typer.Typer(help="Train, apply and evaluate the VQ-VAE motion tokenizer.", no_args_is_help=True)

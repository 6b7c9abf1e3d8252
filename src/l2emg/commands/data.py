"""`l2emg data …`: generate, check, describe and preview motion datasets."""

import typer

app = typer.Typer(help="Generate, check, describe and preview motion datasets.", no_args_is_help=True)

"""What every command shares: readable user errors, logging, the trainer's defaults."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import typer

# defaults of the `train` commands, equal to TrainConfig's (tests/test_cli.py checks); here so --help needs no torch
TRAIN_DEFAULTS = {
    "epochs": 20,
    "batch_size": 64,
    "lr": 3e-3,
    "patience": 5,
    "checkpoint_every": 200,
    "precision": "auto",
}


@contextmanager
def user_errors():
    """Turn expected user mistakes into one readable line and exit code 2."""
    from speculum.io import DataFormatError
    from speculum.train import CheckpointError

    try:
        yield
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        DataFormatError,
        CheckpointError,
        KeyError,
        ImportError,
    ) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )

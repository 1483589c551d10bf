"""Small pieces the autoencoder's entry points share."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from speculum.io import SpectraSet

log = logging.getLogger("speculum.autoencode")


def _columns(dataset: SpectraSet, extra: tuple[str, ...] = (), use_resolution: bool = True) -> list[str]:
    """Columns the autoencoder reads: spectra, redshift, and DESI resolution matrices when present."""
    names = set(dataset.columns)
    optional = ("resolution", *extra) if use_resolution else extra
    return ["object_id", "z", "flux", "ivar", "mask", *(c for c in optional if c in names)]


def _log_skipped(what: str, skipped: dict[str, int]) -> None:
    if any(skipped.values()):
        log.warning("%s: skipped spectra: %s", what, {k: v for k, v in skipped.items() if v})


def _trained_with_resolution(history: Path) -> bool:
    if history.exists():
        return bool(json.loads(history.read_text()).get("uses_resolution", True))
    return True

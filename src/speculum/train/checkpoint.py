"""One checkpoint format: safetensors weights + typed config + versions, loaded strictly.

A model file holds tensors only (no pickled objects), and metadata with the model kind,
the JSON config, the schema version and the package version. Writes are atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speculum import __version__
from speculum.models import AutoencoderConfig, SpectrumAutoencoder, config_from_dict

__all__ = ["SCHEMA_VERSION", "CheckpointError", "load_model", "save_model"]

SCHEMA_VERSION = 1
_KINDS = {"SpectrumAutoencoder": (SpectrumAutoencoder, AutoencoderConfig, config_from_dict)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


def save_model(model: SpectrumAutoencoder, path: str | os.PathLike) -> Path:
    """Write ``model`` (weights + config + versions) atomically to ``path``."""
    path = Path(path)
    kind = type(model).__name__
    if kind not in _KINDS:
        raise ValueError(f"model: expected one of {sorted(_KINDS)}, got {kind}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "kind": kind,
        "config": json.dumps(model.config.to_dict()),
        "schema_version": str(SCHEMA_VERSION),
        "speculum_version": __version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_model(
    path: str | os.PathLike,
    config: AutoencoderConfig | None = None,
    map_location: str | torch.device = "cpu",
) -> SpectrumAutoencoder:
    """Load a model written by :func:`save_model`, strictly.

    Args:
        path: The file.
        config: If given, must equal the stored config.
        map_location: Device for the weights.

    Raises:
        CheckpointError: Unreadable file, wrong schema version, unknown kind, config
            mismatch, or missing/unexpected/mis-shaped weights.
    """
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=str(map_location))
    except (OSError, SafetensorError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable speculum checkpoint ({err})") from None
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise CheckpointError(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {meta.get('schema_version')!r}")
    kind = meta.get("kind")
    if kind not in _KINDS:
        raise CheckpointError(f"{path}: kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    cls, _, from_dict = _KINDS[kind]
    try:
        stored = from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: config: {err}") from None
    if config is not None and config != stored:
        raise CheckpointError(f"{path}: config: expected {config}, file has {stored}")
    model = cls(stored)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored config: {err}") from None
    return model.to(map_location).eval()

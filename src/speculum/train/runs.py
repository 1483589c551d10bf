"""Runs know their inputs: a manifest in every run folder naming its artefacts by content hash.

A run (a training, a catalogue, a report) records the artefacts it was built from and the
ones it wrote, each by content hash, with its config; whoever later uses the run checks
that an input is still the one it was built from (a flow trained on latents names the
autoencoder weights; a catalogue names its model and its shards) and is refused otherwise.

Content hashes: a file is hashed by its bytes (``sha256:<hex>``); a shard folder (one with
a ``manifest.json`` of :mod:`speculum.io.shards`) by :attr:`SpectraSet.fingerprint` over
its shards' names, row counts and checksums (``shards:<hex>``); any other folder by the
hashes of all its files with their relative paths (``tree:<hex>``).

Example:
    >>> import tempfile
    >>> run, weights = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> _ = weights.write_bytes(b"weights")
    >>> _ = write_run_manifest(run, inputs={"autoencoder": weights}, outputs={}, config={"epochs": 3})
    >>> check_inputs(run, "autoencoder", weights)
    >>> _ = weights.write_bytes(b"other weights")
    >>> check_inputs(run, "autoencoder", weights)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...: input 'autoencoder' (...) has changed since the run: expected sha256:..., found sha256:...
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from speculum import __version__
from speculum._files import atomic_write_text, sha256_file

__all__ = ["RUN_MANIFEST", "check_inputs", "content_hash", "read_run_manifest", "write_run_manifest"]

RUN_MANIFEST = "run.json"
"""File name of the run manifest in a run folder."""
_SCHEMA = 1


def content_hash(path: str | os.PathLike) -> str:
    """Content hash of a file (``sha256:``), a shard folder (``shards:``) or another folder (``tree:``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        return f"sha256:{sha256_file(path)}"
    if path.is_dir():
        if (path / "manifest.json").is_file():
            from speculum.io import SpectraSet

            return f"shards:{SpectraSet.open(path).fingerprint}"
        files = sorted(p for p in path.rglob("*") if p.is_file())
        blob = json.dumps([(p.relative_to(path).as_posix(), sha256_file(p)) for p in files])
        return f"tree:{hashlib.sha256(blob.encode()).hexdigest()}"
    raise FileNotFoundError(f"{path}: no such file or folder")


def _entries(what: str, paths: dict[str, str | os.PathLike]) -> dict[str, dict[str, str]]:
    out = {}
    for name, p in paths.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what}: names must be non-empty strings, got {name!r}")
        out[name] = {"path": str(Path(p).resolve()), "hash": content_hash(p)}
    return out


def write_run_manifest(
    run_dir: str | os.PathLike,
    inputs: dict[str, str | os.PathLike],
    outputs: dict[str, str | os.PathLike],
    config: dict[str, Any],
) -> Path:
    """Write ``run_dir/run.json`` atomically: inputs and outputs by content hash, and the config.

    Args:
        run_dir: The run folder (created).
        inputs: Artefacts the run was built from, by name (e.g. ``{"data": shards, "autoencoder": weights}``).
        outputs: Artefacts the run wrote, by name.
        config: The run's settings (JSON values).

    Returns:
        The manifest's path.
    """
    doc = {
        "schema": _SCHEMA,
        "speculum_version": __version__,
        "inputs": _entries("inputs", inputs),
        "outputs": _entries("outputs", outputs),
        "config": config,
    }
    return atomic_write_text(Path(run_dir) / RUN_MANIFEST, json.dumps(doc, indent=1, sort_keys=True))


def read_run_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``run_dir``.

    Raises:
        FileNotFoundError: The run has no manifest.
        ValueError: Unreadable manifest or a schema this version does not know.
    """
    path = Path(run_dir) / RUN_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no run manifest (the run does not record its inputs)")
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: unreadable run manifest ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != _SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: field 'schema' is {got!r}, expected {_SCHEMA}")
    return doc


def check_inputs(run_dir: str | os.PathLike, name: str, path: str | os.PathLike) -> None:
    """Refuse ``path`` as the run's input ``name`` unless its content hash is the recorded one.

    Raises:
        KeyError: The run records no input ``name`` (the recorded ones are listed).
        ValueError: The content differs; the message names the artefact, the expected and
            the found hash.
    """
    manifest = Path(run_dir) / RUN_MANIFEST
    inputs = read_run_manifest(run_dir)["inputs"]
    if name not in inputs:
        raise KeyError(f"{manifest}: no input {name!r}; the run records {sorted(inputs)}")
    expected, found = inputs[name]["hash"], content_hash(path)
    if found != expected:
        raise ValueError(
            f"{manifest}: input {name!r} ({path}) has changed since the run: expected {expected}, found {found}"
        )

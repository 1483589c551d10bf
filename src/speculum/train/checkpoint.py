"""One checkpoint format: safetensors tensors + JSON, loaded strictly, never unpickled.

Two kinds of files share it:

* **Model files** (:func:`save_model` / :func:`load_model`): the weights of one registered
  model (see :mod:`speculum.models.registry`) with metadata naming its kind, its JSON
  config, the schema version and the package version.
* **Trainer checkpoints** (:func:`save_checkpoint` / :func:`load_checkpoint`, written by
  :class:`~speculum.train.Trainer` as ``run_dir/checkpoint.safetensors``): every tensor
  (module weights, optimiser states such as Adam's moments and step counts, scheduler
  tensors, RNG states) is a safetensors entry; everything else (configs, counters,
  history, run identity, metadata, and the *structure* of the optimiser and scheduler
  state dicts with the names of their tensors) is one JSON document in the safetensors
  metadata. Loading rebuilds the nested state dicts exactly (ints stay ints, tuples stay
  tuples, integer dict keys stay integers).

Nothing on a load path unpickles: a file in the format before this one (``torch.save``,
i.e. a zip archive or a pickle) is recognised by its first bytes and refused with a message
saying the format changed. Writes are atomic (:func:`speculum._files.atomic_path`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from speculum import __version__
from speculum._files import atomic_path
from speculum.models.registry import kind_of, model_kind

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_SCHEMA",
    "SCHEMA_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_model",
]

SCHEMA_VERSION = 1
"""Schema of model files."""
CHECKPOINT_SCHEMA = 2
"""Schema of trainer checkpoints (1 was the pickled ``checkpoint.pt`` of torch.save)."""
CHECKPOINT_NAME = "checkpoint.safetensors"
"""File name of the trainer checkpoint in a run folder."""
LEGACY_CHECKPOINT_NAME = "checkpoint.pt"

_META_KEY = "speculum_checkpoint"
_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the problem."""


# ---------------------------------------------------------------------------------- safety
def _refuse_pickles(path: Path) -> None:
    """Refuse a ``torch.save`` zip archive or a pickle by its first bytes, without reading further."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise CheckpointError(
            f"{path}: a torch.save/pickle file, the checkpoint format before speculum 0.2 (schema 1); "
            "checkpoints are now safetensors + JSON and speculum never unpickles a file (it could run code): "
            "start a new run in a new folder"
        )


def _open_safetensors(path: Path, what: str) -> dict[str, str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    _refuse_pickles(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (OSError, SafetensorError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable {what} ({err})") from None
    return meta


# ---------------------------------------------------------------------------------- nested state <-> tensors + JSON
def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON, its tensors moved to ``tensors`` under their path (``a/b/0``)."""
    if isinstance(obj, torch.Tensor):
        if path in tensors:
            raise ValueError(f"checkpoint: two tensors would be stored as {path!r}")
        t = obj.detach().cpu().contiguous()
        if any(t.untyped_storage().data_ptr() == o.untyped_storage().data_ptr() for o in tensors.values()):
            t = t.clone()  # tied/shared weights: safetensors stores each tensor with its own memory
        tensors[path] = t
        return {_TENSOR: path}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not {_TENSOR, _TUPLE, _DICT} & set(obj):
            return {k: _encode(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        if not all(k is None or isinstance(k, bool | int | float | str) for k in obj):
            raise TypeError(f"checkpoint: {path}: dict keys must be str, int, float or bool, got {list(obj)}")
        return {_DICT: [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: {path}: cannot store a {type(obj).__name__} (tensors and JSON values only)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return None if tensors is None else tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_DICT}:
            return {k: _decode(v, tensors) for k, v in obj[_DICT]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a nested dict of tensors and JSON values atomically as safetensors + JSON.

    Args:
        path: The file (conventionally ``run_dir/checkpoint.safetensors``).
        state: Nested ``dict``/``list``/``tuple`` of tensors and JSON scalars, e.g. the
            trainer's ``{"modules": {...}, "optimizers": {...}, "state": {...}}``; the
            key ``schema`` is set to :data:`CHECKPOINT_SCHEMA`.

    Raises:
        TypeError: A value that is neither a tensor nor JSON (nothing is pickled).
    """
    tensors: dict[str, torch.Tensor] = {}
    doc = _encode({**state, "schema": CHECKPOINT_SCHEMA, "speculum_version": __version__}, "", tensors)
    meta = {_META_KEY: json.dumps(doc, allow_nan=True)}
    with atomic_path(path) as tmp:
        save_file({k.lstrip("/"): v for k, v in tensors.items()}, str(tmp), metadata=meta)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, tensors: bool = True) -> dict[str, Any]:
    """Load a trainer checkpoint: the nested dict given to :func:`save_checkpoint`, rebuilt exactly.

    Args:
        path: The file.
        tensors: Also load the tensors (CPU); ``False`` reads only the JSON part (cheap:
            counters, history, identity, metadata) and leaves tensors as ``None``.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: A ``torch.save``/pickle file (the old format: refused, never
            unpickled), an unreadable file, or a wrong schema; the message names the file.
    """
    path = Path(path)
    meta = _open_safetensors(path, "trainer checkpoint")
    if _META_KEY not in meta:
        raise CheckpointError(f"{path}: not a trainer checkpoint (no {_META_KEY!r} metadata; a model file?)")
    try:
        doc = json.loads(meta[_META_KEY])
    except ValueError as err:
        raise CheckpointError(f"{path}: unreadable checkpoint metadata ({err})") from None
    if not isinstance(doc, dict) or doc.get("schema") != CHECKPOINT_SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(f"{path}: field 'schema' is {got!r}, expected {CHECKPOINT_SCHEMA}")
    loaded = None
    if tensors:
        try:
            loaded = {f"/{k}": v for k, v in load_file(str(path)).items()}
        except (OSError, SafetensorError, RuntimeError) as err:
            raise CheckpointError(f"{path}: unreadable checkpoint tensors ({err})") from None
    try:
        return _decode(doc, loaded)
    except KeyError as err:
        raise CheckpointError(f"{path}: tensor {err} is named in the metadata but missing") from None


# ---------------------------------------------------------------------------------- model files
def save_model(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` (weights + config + versions) atomically to ``path``.

    Args:
        model: An instance of a class registered with
            :func:`speculum.models.registry.register_model`.
        path: The file (``.safetensors``).

    Raises:
        ValueError: The model's class is not registered.
    """
    path = Path(path)
    kind = kind_of(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "kind": kind.name,
        "module": type(model).__module__,
        "config": json.dumps(kind.config_to_dict(model.config)),
        "schema_version": str(SCHEMA_VERSION),
        "speculum_version": __version__,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_model(
    path: str | os.PathLike,
    config: Any | None = None,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Load a model written by :func:`save_model`, strictly.

    Args:
        path: The file.
        config: If given, must equal the stored config.
        map_location: Device for the weights.

    Returns:
        The model of the stored kind, in eval mode.

    Raises:
        CheckpointError: Unreadable file (or a pickle, never unpickled), wrong schema
            version, unknown kind, config mismatch, or missing/unexpected/mis-shaped weights.
    """
    path = Path(path)
    try:
        meta = _open_safetensors(path, "speculum checkpoint")
        tensors = load_file(str(path), device=str(map_location))
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: not a readable speculum checkpoint ({err})") from None
    except (OSError, SafetensorError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable speculum checkpoint ({err})") from None
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise CheckpointError(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {meta.get('schema_version')!r}")
    try:
        kind = model_kind(str(meta.get("kind")), meta.get("module"))
    except KeyError as err:
        raise CheckpointError(f"{path}: {err.args[0]}") from None
    try:
        stored = kind.config_from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: config: {err}") from None
    if config is not None and config != stored:
        raise CheckpointError(f"{path}: config: expected {config}, file has {stored}")
    model = kind.cls(stored)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored config: {err}") from None
    return model.to(map_location).eval()

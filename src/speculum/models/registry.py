"""Model kinds that checkpoints can name: each network registers itself where it is defined.

A checkpoint stores a model's *kind* (a name), its config as JSON and its weights; loading
looks the kind up here, rebuilds the config and constructs ``cls(config)``. The checkpoint
code therefore knows no model by name: a method package registers its networks with the
decorator, and its models load like any other.

Example:
    >>> from dataclasses import asdict, dataclass
    >>> import torch
    >>> @dataclass(frozen=True)
    ... class ToyConfig:
    ...     width: int = 3
    >>> @register_model("DocToy", config_from_dict=lambda d: ToyConfig(**d), config_to_dict=asdict)
    ... class DocToy(torch.nn.Module):
    ...     def __init__(self, config: ToyConfig) -> None:
    ...         super().__init__()
    ...         self.config = config
    ...         self.lin = torch.nn.Linear(config.width, 1)
    >>> model_kind("DocToy").cls is DocToy
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["ModelKind", "kind_of", "model_kind", "register_model", "registered_models"]


def _to_dict(config: Any) -> dict:
    return config.to_dict()


@dataclass(frozen=True)
class ModelKind:
    """How to save and rebuild one model class.

    Attributes:
        name: The kind stored in checkpoints (stable across renames of the class).
        cls: The ``nn.Module`` subclass; constructed as ``cls(config)``, with its config
            at ``model.config``.
        config_from_dict: Rebuilds the typed config from its JSON dict; raises
            ``ValueError`` (or ``TypeError``/``KeyError``) for unknown or missing fields.
        config_to_dict: The config as a JSON-able dict (default: ``config.to_dict()``).
    """

    name: str
    cls: type[nn.Module]
    config_from_dict: Callable[[dict], Any]
    config_to_dict: Callable[[Any], dict] = _to_dict


_REGISTRY: dict[str, ModelKind] = {}


def register_model(
    name: str | None = None,
    *,
    config_from_dict: Callable[[dict], Any],
    config_to_dict: Callable[[Any], dict] = _to_dict,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``cls`` loadable from checkpoints under ``name`` (default: the class name).

    Raises:
        ValueError: ``name`` is already registered for a different class.
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        kind = name or cls.__name__
        old = _REGISTRY.get(kind)
        if old is not None and (old.cls.__module__, old.cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"model kind {kind!r}: already registered for {old.cls.__module__}.{old.cls.__qualname__}")
        _REGISTRY[kind] = ModelKind(kind, cls, config_from_dict, config_to_dict)
        return cls

    return decorate


def registered_models() -> list[str]:
    """The registered kinds, sorted."""
    return sorted(_REGISTRY)


def model_kind(name: str, module: str | None = None) -> ModelKind:
    """The registration of kind ``name``.

    Args:
        name: The kind stored in a checkpoint.
        module: Where the class was defined when the checkpoint was written (informative
            only: a kind is known once :mod:`speculum.models`, which imports every network,
            is imported; nothing named in a file is imported).

    Raises:
        KeyError: No such kind, with the registered ones listed.
    """
    del module  # recorded for people; never imported: nothing read from a file chooses code to run
    if name not in _REGISTRY:
        raise KeyError(f"model kind: expected one of {registered_models()}, got {name!r}")
    return _REGISTRY[name]


def kind_of(model: nn.Module) -> ModelKind:
    """The registration of ``type(model)``.

    Raises:
        ValueError: The class is not registered (decorate it with :func:`register_model`).
    """
    for kind in _REGISTRY.values():
        if type(model) is kind.cls:
            return kind
    raise ValueError(
        f"model: {type(model).__name__} is not a registered model kind (registered: {registered_models()}); "
        "decorate its class with @speculum.models.registry.register_model"
    )

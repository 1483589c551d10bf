"""Optional dependencies: import them where needed, with an install hint when missing."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

__all__ = ["require"]

_EXTRAS = {
    "astropy": "surveys",
    "matplotlib": "report",
    "fitsio": "surveys",
    "galsim": "images",
    "specutils": "surveys",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the extra that provides it.

    Example:
        >>> require("numpy", "arrays").__name__
        'numpy'
    """
    try:
        return import_module(module)
    except ImportError:
        extra = _EXTRAS.get(module.split(".")[0])
        hint = f"pip install 'speculum[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
        raise ImportError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {hint}") from None

"""speculum: machine-learning methods for astronomical spectra, photometry and images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speculum")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

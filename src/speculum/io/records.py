"""What every survey reader returns, and the FITS checks they share.

:class:`SpectrumRecords` holds the spectra of one file on an instrument grid; its
:meth:`~SpectrumRecords.columns` are the shard columns (built by
:func:`speculum.schema.spectra_columns`, like the simulator's). Every problem with a file is
a :class:`SpectrumFormatError` whose message names the file, the HDU/column and the
problem (``{path}: {where}: {problem}``, one line).

The readers themselves live in :mod:`speculum.io.sdss` (SDSS/BOSS) and
:mod:`speculum.io.desi` (DESI); :func:`speculum.io.surveys.read_spectra` picks one.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speculum._optional import require
from speculum.io.shards import DataFormatError
from speculum.schema import spectra_columns

__all__ = ["SpectrumFormatError", "SpectrumRecords"]

log = logging.getLogger(__name__)


class SpectrumFormatError(DataFormatError):
    """A survey file is unreadable or not what its survey publishes."""


@dataclass
class SpectrumRecords:
    """Spectra read from one file, on an instrument grid (``N`` rows, ``L`` pixels).

    ``z`` is NaN and ``z_flag`` explains why (``no_redshift``, ``zwarn``) when a
    redshift is unknown or flagged; training and scoring skip those rows.

    Attributes:
        instrument: Name of the instrument whose grid ``flux`` is on.
        object_id: ``N`` unique ids.
        survey: ``N`` survey names (``SDSS``, ``BOSS``, ``DESI``).
        z: Redshifts ``(N,)``, NaN when unknown or flagged.
        z_err: Redshift errors ``(N,)``, NaN when unknown.
        zwarn: The survey's redshift warning bits ``(N,)`` (-1: no redshift table).
        z_flag: ``N`` reasons why ``z`` is NaN (empty when it is not).
        spec_class: ``N`` pipeline classes (``GALAXY``, ``QSO``, ``STAR`` or empty).
        flux: ``(N, L)`` float32 in ``1e-17 erg s^-1 cm^-2 A^-1``.
        ivar: ``(N, L)`` float32, 0 at unusable pixels.
        mask: ``(N, L)`` int32 :class:`~speculum.instruments.PixelMask` bits.
        source: ``N`` file names.
        resolution: Banded resolution matrices ``(N, D, L)`` (DESI), or None.
        extra: Further columns of length ``N`` (survey identity, target bits, ...).
    """

    instrument: str
    object_id: list[str]
    survey: list[str]
    z: np.ndarray
    z_err: np.ndarray
    zwarn: np.ndarray
    z_flag: list[str]
    spec_class: list[str]
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    source: list[str]
    resolution: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.object_id)

    def columns(self) -> dict[str, object]:
        """Columns of the shard format (:func:`speculum.schema.spectra_columns`), then ``zwarn``,
        ``z_flag``, ``class``, ``source_file`` and :attr:`extra`."""
        survey_columns = {
            "zwarn": self.zwarn.astype(np.int64),
            "z_flag": self.z_flag,
            "class": self.spec_class,
            "source_file": self.source,
            **self.extra,
        }
        return spectra_columns(
            self.object_id,
            self.survey,
            self.instrument,
            self.z,
            self.flux,
            self.ivar,
            self.mask,
            z_err=self.z_err,
            resolution=self.resolution,
            **survey_columns,
        )

    def take(self, idx: np.ndarray) -> SpectrumRecords:
        """The rows ``idx`` (integer indices ``(M,)``), in that order."""
        pick = lambda seq: [seq[i] for i in idx]  # noqa: E731
        return SpectrumRecords(
            instrument=self.instrument,
            object_id=pick(self.object_id),
            survey=pick(self.survey),
            z=self.z[idx],
            z_err=self.z_err[idx],
            zwarn=self.zwarn[idx],
            z_flag=pick(self.z_flag),
            spec_class=pick(self.spec_class),
            flux=self.flux[idx],
            ivar=self.ivar[idx],
            mask=self.mask[idx],
            source=pick(self.source),
            resolution=None if self.resolution is None else self.resolution[idx],
            extra={k: v[idx] for k, v in self.extra.items()},
        )


# ---------------------------------------------------------------------- FITS checks shared by the readers
def format_error(path: Path, where: str, problem: str) -> SpectrumFormatError:
    """``SpectrumFormatError("{path}: {where}: {problem}")``."""
    return SpectrumFormatError(f"{path}: {where}: {problem}")


def open_fits(path: Path):
    """Open a FITS file fully into memory; astropy's warnings are logged with the file name."""
    fits = require("astropy.io.fits", "reading survey FITS files")

    if not path.exists():
        raise format_error(path, "file", "does not exist")
    if path.stat().st_size == 0:
        raise format_error(path, "file", "is empty")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False)
    except Exception as err:  # noqa: BLE001 - astropy raises OSError, TypeError, VerifyError, ...
        raise format_error(path, "file", f"not a readable FITS file ({type(err).__name__}: {err})") from None
    for w in caught:
        log.warning("%s: %s", path, w.message)
    return hdul


def hdu_names(hdul) -> list[str]:
    """Upper-case names of the HDUs of an open file."""
    return [h.name.upper() for h in hdul]


def table_column(path: Path, hdu, name: str, kind: str = "f") -> np.ndarray:
    """Column ``name`` of a table HDU (case-insensitive), checked to hold numbers (``kind="f"``) or integers (``"i"``).

    Raises:
        SpectrumFormatError: The column is missing, unreadable or of the wrong type.
    """
    names = [c.lower() for c in hdu.columns.names]
    where = f"HDU {hdu.name}, column {name}"
    if name.lower() not in names:
        raise format_error(path, where, f"missing (columns: {', '.join(hdu.columns.names)})")
    try:
        arr = np.asarray(hdu.data[name])
    except Exception as err:  # noqa: BLE001 - truncated data
        raise format_error(path, where, f"cannot be read ({err})") from None
    if kind == "f" and arr.dtype.kind not in "fiu":
        raise format_error(path, where, f"expected numbers, got dtype {arr.dtype}")
    if kind == "i" and arr.dtype.kind not in "iu":
        raise format_error(path, where, f"expected integers, got dtype {arr.dtype}")
    return arr


def check_flux_ivar(path: Path, where: str, flux: np.ndarray, ivar: np.ndarray) -> None:
    """Same shapes, ``ivar`` finite and ``>= 0``, ``flux`` finite wherever ``ivar > 0``."""
    if flux.shape != ivar.shape:
        raise format_error(path, where, f"flux has shape {flux.shape} but ivar {ivar.shape}")
    neg = int((ivar < 0).sum())
    if neg:
        raise format_error(path, f"{where} ivar", f"{neg} negative inverse variance(s)")
    bad_ivar = int((~np.isfinite(ivar)).sum())
    if bad_ivar:
        raise format_error(path, f"{where} ivar", f"{bad_ivar} NaN/inf value(s)")
    bad = int(((~np.isfinite(flux)) & (ivar > 0)).sum())
    if bad:
        raise format_error(path, f"{where} flux", f"{bad} NaN/inf value(s) at pixels with ivar > 0")

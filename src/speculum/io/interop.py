"""Interoperability with ``specutils``: spectra in and out, and a FITS file of reconstructions.

speculum's arrays follow one convention (see :mod:`speculum.instruments`):

* ``wave``: ``(L,)`` vacuum wavelengths in Angstrom, strictly increasing;
* ``flux``: ``(N, L)`` or ``(L,)`` in units of :data:`FLUX_UNIT`
  (``1e-17 erg s^-1 cm^-2 A^-1``);
* ``ivar``: inverse variance of ``flux`` in :data:`FLUX_UNIT` ``^-2``, ``0`` where unknown;
* ``mask``: :class:`~speculum.instruments.PixelMask` bits, ``0`` = good pixel.

A :class:`specutils.Spectrum` (``Spectrum1D`` in specutils 1.x) carries the same
information with units attached: a spectral axis, a flux quantity, an
:class:`~astropy.nddata.InverseVariance` uncertainty and a boolean mask in which ``True``
marks a pixel to ignore (the NDData convention). :func:`to_specutils` marks a pixel bad
where ``ivar == 0`` or ``mask != 0`` and keeps the exact integer mask in
``meta["speculum_mask"]`` so that :func:`from_specutils` gives back the same arrays.

:func:`from_specutils` converts any spectrum to speculum's units: spectral axes in nm, um,
Hz, eV, ... become Angstrom (frequency/energy axes are reversed so that wavelength
increases); flux densities in ``W m^-2 um^-1``, ``Jy``, ``erg s^-1 cm^-2 Hz^-1``, ... become
:data:`FLUX_UNIT` through :func:`astropy.units.spectral_density` at each pixel's wavelength.
Wavelengths are taken to be **vacuum** unless the spectrum says otherwise: a WCS axis of
type ``AWAV``, a header/meta keyword ``AIRORVAC = 'air'`` or ``VACUUM = F`` (or
``medium="air"``) makes them air wavelengths, converted with :func:`speculum.instruments.air_to_vacuum`.

:func:`write_spectra_fits` writes observed spectra, their model reconstructions and the
restframe models to one FITS file that ``Spectrum.read(path, format="tabular-fits")``
loads (``hdu=1``: observed frame, ``hdu=2``: restframe model).

Example:
    >>> import numpy as np
    >>> wave = np.array([4000.0, 5000.0, 6000.0])
    >>> spec = to_specutils(wave, np.ones(3), np.full(3, 4.0), np.zeros(3, dtype=np.int32))
    >>> float(spec.uncertainty.array[0]), bool(spec.mask.any())
    (4.0, False)
    >>> back = from_specutils(spec)
    >>> back["flux"].tolist(), back["ivar"].tolist()
    ([1.0, 1.0, 1.0], [4.0, 4.0, 4.0])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from speculum._files import atomic_path
from speculum._optional import require
from speculum.instruments import PixelMask, air_to_vacuum, get_instrument
from speculum.io.shards import FLUX_UNIT

if TYPE_CHECKING:  # pragma: no cover
    from speculum.io.records import SpectrumRecords

__all__ = [
    "from_specutils",
    "records_to_specutils",
    "spectrum_class",
    "to_specutils",
    "write_spectra_fits",
]

log = logging.getLogger(__name__)

#: Key of :attr:`Spectrum.meta` under which :func:`to_specutils` keeps the integer mask.
MASK_META_KEY = "speculum_mask"


def _units():
    return require("astropy.units", "converting spectra to/from specutils")


def spectrum_class() -> type:
    """The installed specutils' spectrum class: ``Spectrum`` (2.x) or ``Spectrum1D`` (1.x)."""
    specutils = require("specutils", "converting spectra to/from specutils")
    cls = getattr(specutils, "Spectrum", None) or getattr(specutils, "Spectrum1D", None)
    if cls is None:  # pragma: no cover - neither name: an unknown specutils
        raise ImportError(f"specutils {specutils.__version__} has neither Spectrum nor Spectrum1D")
    return cls


def _check_wave(wave: Any, name: str = "wave") -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1 or len(wave) < 2:
        raise ValueError(f"{name}: expected a 1-D wavelength grid (L,) with L >= 2, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError(f"{name}: expected finite, positive wavelengths in Angstrom")
    if np.any(np.diff(wave) <= 0):
        raise ValueError(
            f"{name}: wavelengths not strictly increasing (first at pixel {int(np.argmax(np.diff(wave) <= 0)) + 1})"
        )
    return wave


def _check_same_shape(ref_name: str, ref: np.ndarray, **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if arr.shape != ref.shape:
            raise ValueError(f"{name}: expected the shape of {ref_name} {ref.shape}, got {arr.shape}")


def to_specutils(
    wave: Any,
    flux: Any,
    ivar: Any,
    mask: Any | None = None,
    unit: str | Any = FLUX_UNIT,
    meta: Mapping[str, Any] | None = None,
):
    """Wrap speculum arrays in a :class:`specutils.Spectrum`.

    Args:
        wave: Vacuum wavelengths in Angstrom, shape ``(L,)``, strictly increasing.
        flux: Flux density, shape ``(L,)`` or ``(N, L)``, in ``unit``.
        ivar: Inverse variance of ``flux`` in ``unit ** -2``, same shape, ``>= 0``.
        mask: :class:`~speculum.instruments.PixelMask` bits (``0`` = good), same shape;
            ``None``: all good.
        unit: Flux unit (astropy unit or string), default :data:`FLUX_UNIT`.
        meta: Extra entries for :attr:`Spectrum.meta`.

    Returns:
        A ``Spectrum`` with ``spectral_axis`` ``(L,)`` in Angstrom, ``flux`` ``(*, L)`` in
        ``unit``, an ``InverseVariance`` uncertainty and a boolean ``mask`` (``True`` = bad:
        ``ivar == 0`` or ``mask != 0``). The integer mask is kept in
        ``meta["speculum_mask"]``.
    """
    u = _units()
    nddata = require("astropy.nddata", "converting spectra to specutils")
    wave = _check_wave(wave)
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    if flux.ndim not in (1, 2) or flux.shape[-1] != len(wave):
        raise ValueError(f"flux: expected shape (L,) or (N, L) with L = len(wave) = {len(wave)}, got {flux.shape}")
    mask = np.zeros(flux.shape, np.int32) if mask is None else np.asarray(mask)
    _check_same_shape("flux", flux, ivar=ivar, mask=mask)
    if mask.dtype.kind not in "iub":
        raise ValueError(f"mask: expected integer PixelMask bits, got dtype {mask.dtype}")
    if np.any(~np.isfinite(ivar)) or np.any(ivar < 0):
        raise ValueError("ivar: expected finite values >= 0")
    try:
        funit = u.Unit(unit)
    except ValueError as err:
        raise ValueError(f"unit: not an astropy unit ({err})") from None
    if not funit.is_equivalent(u.Unit(FLUX_UNIT)):
        raise ValueError(f"unit: expected a flux density per wavelength like {FLUX_UNIT!r}, got {funit}")
    bad = (ivar == 0) | (mask != 0)
    info = dict(meta or {})
    info[MASK_META_KEY] = mask.copy()
    return spectrum_class()(
        flux=u.Quantity(flux, funit, copy=True),
        spectral_axis=u.Quantity(wave, u.AA),
        uncertainty=nddata.InverseVariance(np.array(ivar, copy=True), unit=funit**-2),
        mask=bad,
        meta=info,
    )


def _is_air(spectrum, medium: str) -> bool:
    if medium in ("air", "vacuum"):
        return medium == "air"
    if medium != "auto":
        raise ValueError(f"medium: expected 'auto', 'vacuum' or 'air', got {medium!r}")
    wcs = getattr(spectrum, "wcs", None)
    ctype = getattr(getattr(wcs, "wcs", None), "ctype", None)
    if ctype is not None and any(str(c).upper().startswith("AWAV") for c in ctype):
        return True
    meta = spectrum.meta or {}
    for source in (meta, meta.get("header") or {}):
        try:
            value = source.get("AIRORVAC", source.get("airorvac"))
        except AttributeError:
            continue
        if value is not None:
            return str(value).strip().lower().startswith("air")
        vacuum = source.get("VACUUM")  # SDSS spec files: VACUUM = T
        if isinstance(vacuum, (bool, np.bool_)):
            return not bool(vacuum)
    return False


def from_specutils(spectrum, medium: Literal["auto", "vacuum", "air"] = "auto") -> dict[str, np.ndarray]:
    """Convert a :class:`specutils.Spectrum` to speculum arrays and units.

    Args:
        spectrum: A ``Spectrum`` (or ``Spectrum1D``) with flux of shape ``(L,)`` or
            ``(N, L)``; its uncertainty may be ``InverseVariance``, ``StdDevUncertainty``
            or ``VarianceUncertainty``.
        medium: Whether the spectral axis is in ``"vacuum"`` or ``"air"``; ``"auto"``
            (default) assumes vacuum unless the WCS type is ``AWAV``, the meta/header
            keyword ``AIRORVAC`` says ``air`` or ``VACUUM`` is false. Air wavelengths are converted to vacuum.

    Returns:
        ``{"wave": (L,), "flux": (*, L), "ivar": (*, L), "mask": (*, L)}``: vacuum Angstrom
        increasing, flux in :data:`FLUX_UNIT`, ivar in its ``-2`` power (``0`` where the
        pixel is unusable), int32 :class:`~speculum.instruments.PixelMask` bits. Pixels that
        are masked, have non-finite flux or no/zero uncertainty information get
        ``PixelMask.BAD`` and ``ivar = 0``, except that a ``meta["speculum_mask"]`` written by
        :func:`to_specutils` and consistent with ``spectrum.mask`` is returned unchanged.

    Raises:
        ValueError: No uncertainty, a flux or spectral unit that cannot be converted, or
            a spectral axis that is not monotonic.
    """
    u = _units()
    nddata = require("astropy.nddata", "converting spectra from specutils")
    flux_q = u.Quantity(spectrum.flux)
    axis = getattr(spectrum, "spectral_axis_index", flux_q.ndim - 1)
    axis = axis % max(flux_q.ndim, 1)
    if flux_q.ndim not in (1, 2):
        raise ValueError(f"spectrum.flux: expected shape (L,) or (N, L), got {flux_q.shape}")

    def last(arr: np.ndarray) -> np.ndarray:
        return np.moveaxis(np.asarray(arr), axis, -1)

    try:
        wave = u.Quantity(spectrum.spectral_axis).to_value(u.AA, equivalencies=u.spectral())
    except u.UnitConversionError as err:
        raise ValueError(f"spectrum.spectral_axis: cannot convert to Angstrom ({err})") from None
    wave = np.asarray(wave, dtype=np.float64)
    flux_unit = flux_q.unit
    try:  # per-pixel factor, at the wavelengths of the spectrum's own axis
        factor = flux_unit.to(FLUX_UNIT, equivalencies=u.spectral_density(wave * u.AA))
    except u.UnitConversionError as err:
        raise ValueError(f"spectrum.flux: unit {flux_unit} cannot be converted to {FLUX_UNIT} ({err})") from None
    factor = np.asarray(factor, dtype=np.float64)
    flux = last(flux_q.value).astype(np.float64) * factor
    if _is_air(spectrum, medium):
        wave = air_to_vacuum(wave)

    unc = spectrum.uncertainty
    if unc is None:
        raise ValueError("spectrum.uncertainty: missing; speculum needs an inverse variance for every pixel")
    if isinstance(unc, nddata.InverseVariance):
        unc_unit = flux_unit**-2 if unc.unit is None else u.Unit(unc.unit)
        ivar_native = np.asarray(unc.array, dtype=np.float64) * unc_unit.to(flux_unit**-2)
    else:
        var = unc.represent_as(nddata.VarianceUncertainty)
        var_unit = flux_unit**2 if var.unit is None else u.Unit(var.unit)
        var = np.asarray(var.array, dtype=np.float64) * var_unit.to(flux_unit**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ivar_native = np.where(var > 0, 1.0 / var, 0.0)
    ivar = last(ivar_native) / factor**2
    if ivar.shape != flux.shape:
        raise ValueError(f"spectrum.uncertainty: shape {ivar.shape} differs from flux {flux.shape}")

    bool_mask = np.zeros(flux.shape, bool) if spectrum.mask is None else last(spectrum.mask).astype(bool)
    invalid = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar < 0)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ivar = np.where(invalid, 0.0, ivar)

    own = (spectrum.meta or {}).get(MASK_META_KEY)
    if own is not None:
        own = np.asarray(own)
        if own.shape == flux.shape and np.array_equal((own != 0) | (ivar == 0), bool_mask | invalid):
            mask = own.astype(np.int32)
        else:
            log.warning("meta[%r] does not match spectrum.mask; using spectrum.mask", MASK_META_KEY)
            own = None
    if own is None:
        bad = bool_mask | invalid | (ivar == 0)
        mask = np.where(bad, int(PixelMask.BAD), 0).astype(np.int32)
        ivar = np.where(bad, 0.0, ivar)

    if len(wave) > 1 and np.all(np.diff(wave) < 0):  # frequency/energy axes: make wavelength increase
        wave, flux, ivar, mask = wave[::-1], flux[..., ::-1], ivar[..., ::-1], mask[..., ::-1]
    if len(wave) > 1 and np.any(np.diff(wave) <= 0):
        raise ValueError("spectrum.spectral_axis: not strictly monotonic")
    return {
        "wave": np.ascontiguousarray(wave),
        "flux": np.ascontiguousarray(flux),
        "ivar": np.ascontiguousarray(ivar),
        "mask": np.ascontiguousarray(mask),
    }


def records_to_specutils(records: SpectrumRecords, as_list: bool = False):
    """Spectra read by :func:`speculum.io.surveys.read_spectra` as specutils spectra.

    Args:
        records: ``N`` spectra on the grid of ``records.instrument``.
        as_list: Return one ``Spectrum`` per row instead of one 2-D ``Spectrum``.

    Returns:
        A ``Spectrum`` with flux ``(N, L)`` (``meta`` holds ``object_id``, ``z``,
        ``survey``, ``instrument``, ``source`` lists/arrays of length ``N``), or a list of
        ``N`` spectra ``(L,)`` with the same entries as scalars.
    """
    wave = np.array(get_instrument(records.instrument).wave_obs)
    fields = {
        "object_id": list(records.object_id),
        "survey": list(records.survey),
        "z": np.asarray(records.z),
        "z_flag": list(records.z_flag),
        "source": list(records.source),
    }
    if not as_list:
        return to_specutils(
            wave, records.flux, records.ivar, records.mask, meta={"instrument": records.instrument, **fields}
        )
    return [
        to_specutils(
            wave,
            records.flux[i],
            records.ivar[i],
            records.mask[i],
            meta={"instrument": records.instrument, **{k: v[i] for k, v in fields.items()}},
        )
        for i in range(len(records))
    ]


# ---------------------------------------------------------------------------- FITS writer
def _as_2d(name: str, arr: Any, n: int, length: int, name_len: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != (n, length):
        raise ValueError(f"{name}: expected shape (N, {name_len}) = ({n}, {length}), got {arr.shape}")
    return arr


def write_spectra_fits(
    path: str | Path,
    wave: Any,
    flux: Any,
    model: Any,
    ivar: Any,
    mask: Any,
    restframe_wave: Any,
    restframe_model: Any,
    object_id: Sequence[str],
    meta: Mapping[str, Any] | None = None,
    dtype: Any = np.float32,
) -> Path:
    """Write observed spectra, their reconstructions and restframe models to one FITS file.

    Layout (every table column carries ``TUNIT``; each table header also has ``BUNIT``,
    the flux unit):

    * HDU 0 ``PRIMARY``: no data; scalar ``meta`` entries as header keywords.
    * HDU 1 ``SPECTRA``: ``L`` rows (pixels), columns ``wavelength`` ``(L,)`` [Angstrom,
      vacuum], ``flux``, ``uncertainty`` (``1/sqrt(ivar)``, ``inf`` where ``ivar == 0``),
      ``model`` [flux unit], ``ivar`` [flux unit^-2] and ``mask`` (int32 PixelMask bits,
      ``BAD`` added where ``ivar == 0``) — each a vector of ``N`` per pixel.
    * HDU 2 ``RESTFRAME``: ``Lr`` rows, columns ``wavelength`` and ``flux`` (the restframe
      model, ``N`` per pixel).
    * HDU 3 ``OBJECTS``: ``N`` rows: ``object_id`` and every ``meta`` entry that is a
      sequence of length ``N``.

    ``specutils.Spectrum.read(path, format="tabular-fits")`` gives the observed spectra
    (flux ``(N, L)``, ``StdDevUncertainty``, mask ``!= 0`` = bad) and ``hdu=2`` the
    restframe models (flux only); with ``N = 1`` the cells are scalars and specutils gives
    flux ``(L,)``. The file is written to a temporary file in the same
    folder and moved into place with :func:`os.replace`.

    Args:
        path: Output ``.fits`` file.
        wave: Observed vacuum wavelengths in Angstrom, ``(L,)``.
        flux: Observed flux, ``(N, L)``, in :data:`FLUX_UNIT`.
        model: Reconstructed flux, ``(N, L)``.
        ivar: Inverse variance of ``flux``, ``(N, L)``, ``>= 0``.
        mask: PixelMask bits, ``(N, L)``.
        restframe_wave: Restframe wavelengths in Angstrom, ``(Lr,)``.
        restframe_model: Restframe model spectra, ``(N, Lr)``.
        object_id: ``N`` object identifiers.
        meta: Scalars (written to the primary header; keys longer than 8 characters become
            ``HIERARCH`` cards) or per-object sequences of length ``N`` (OBJECTS columns).
        dtype: Floating type of the flux-like columns (wavelengths are always float64).

    Returns:
        ``path``.
    """
    fits = require("astropy.io.fits", "writing FITS files")
    u = _units()
    path = Path(path)
    wave = _check_wave(wave)
    rwave = _check_wave(restframe_wave, "restframe_wave")
    flux = np.asarray(flux)
    if flux.ndim != 2 or flux.shape[1] != len(wave):
        raise ValueError(f"flux: expected shape (N, L) with L = len(wave) = {len(wave)}, got {flux.shape}")
    n, length = flux.shape
    model = _as_2d("model", model, n, length, "L")
    ivar = _as_2d("ivar", ivar, n, length, "L")
    mask = _as_2d("mask", mask, n, length, "L")
    rmodel = _as_2d("restframe_model", restframe_model, n, len(rwave), "Lr")
    ids = [str(o) for o in object_id]
    if len(ids) != n:
        raise ValueError(f"object_id: expected {n} identifiers (one per spectrum), got {len(ids)}")
    if mask.dtype.kind not in "iub":
        raise ValueError(f"mask: expected integer PixelMask bits, got dtype {mask.dtype}")
    if np.any(~np.isfinite(ivar)) or np.any(ivar < 0):
        raise ValueError("ivar: expected finite values >= 0")

    funit = u.Unit(FLUX_UNIT)
    fstr = funit.to_string("fits")
    ivstr = (funit**-2).to_string("fits")
    with np.errstate(divide="ignore"):
        sigma = np.where(ivar > 0, 1.0 / np.sqrt(ivar.astype(np.float64)), np.inf)
    out_mask = np.where((ivar == 0) & (mask == 0), int(PixelMask.BAD), mask).astype(np.int32)

    def col(name: str, arr: np.ndarray, fmt_type: str, unit: str | None = None):
        arr = np.ascontiguousarray(arr)
        width = 1 if arr.ndim == 1 else arr.shape[1]
        return fits.Column(name=name, format=f"{width}{fmt_type}", unit=unit, array=arr)

    ftype = np.dtype(dtype)
    if ftype.kind != "f":
        raise ValueError(f"dtype: expected a floating type, got {ftype}")
    fcode = "E" if ftype.itemsize == 4 else "D"
    spectra = fits.BinTableHDU.from_columns(
        [
            col("wavelength", wave, "D", "Angstrom"),
            col("flux", flux.T.astype(ftype), fcode, fstr),
            col("uncertainty", sigma.T.astype(ftype), fcode, fstr),
            col("model", model.T.astype(ftype), fcode, fstr),
            col("ivar", ivar.T.astype(ftype), fcode, ivstr),
            col("mask", out_mask.T, "J"),
        ],
        name="SPECTRA",
    )
    rest = fits.BinTableHDU.from_columns(
        [col("wavelength", rwave, "D", "Angstrom"), col("flux", rmodel.T.astype(ftype), fcode, fstr)],
        name="RESTFRAME",
    )
    for hdu, what in ((spectra, "observed frame"), (rest, "rest frame")):
        hdu.header["BUNIT"] = (fstr, "flux unit")
        hdu.header["AIRORVAC"] = ("vac", "vacuum wavelengths")
        hdu.header["COMMENT"] = f"speculum spectra, {what}: one row per pixel, N = {n} spectra per cell"

    primary = fits.PrimaryHDU()
    primary.header["NSPEC"] = (n, "number of spectra")
    primary.header["AIRORVAC"] = ("vac", "vacuum wavelengths")
    per_object = {"object_id": np.array(ids)}
    for key, value in (meta or {}).items():
        if isinstance(value, (str, bytes, bool, int, float, np.generic)):
            card = key.upper() if len(key) <= 8 else f"HIERARCH {key}"
            primary.header[card] = value.item() if isinstance(value, np.generic) else value
            continue
        arr = np.asarray(value)
        if arr.ndim != 1 or len(arr) != n:
            raise ValueError(f"meta[{key!r}]: expected a scalar or a sequence of length N = {n}, got shape {arr.shape}")
        if key in per_object:
            raise ValueError(f"meta[{key!r}]: clashes with the object_id column")
        per_object[key] = arr
    objects = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=_fits_format(k, v), array=v) for k, v in per_object.items()],
        name="OBJECTS",
    )

    with atomic_path(path) as tmp:  # keeps the suffix: astropy gzips a .fits.gz by its name
        fits.HDUList([primary, spectra, rest, objects]).writeto(tmp, overwrite=True)
    log.info("wrote %d spectra to %s", n, path)
    return path


def _fits_format(name: str, arr: np.ndarray) -> str:
    if arr.dtype.kind in "US":
        width = max(1, max((len(str(s).encode()) for s in arr), default=1))
        return f"{width}A"
    if arr.dtype.kind == "b":
        return "L"
    if arr.dtype.kind in "iu":
        return "K"
    if arr.dtype.kind == "f":
        return "D"
    raise ValueError(f"meta[{name!r}]: cannot store dtype {arr.dtype} in a FITS table")

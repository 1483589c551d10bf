"""SDSS / BOSS spectra as the surveys publish them, onto the SDSS or BOSS grid.

* ``spec-PLATE-MJD-FIBER.fits`` (full and lite): HDU ``COADD`` table (``flux``, ``loglam``,
  ``ivar``, ``and_mask``, …) and the redshift table ``SPECOBJ`` (or ``SPALL`` in some
  releases); file names may be object ids. One spectrum per file.
* Older BOSS files in the image layout (flux, ivar, loglam and a good-pixel mask as image
  HDUs, ``COEFF0``/``COEFF1`` in the header), read without a redshift.
* ``spPlate`` files with flux, ivar and and-mask image HDUs: one spectrum per fibre,
  without redshifts.

SDSS/BOSS coadds sit on the common log-lambda lattice ``10 ** (3.5 + 1e-4 k)``, so placing
them on an instrument grid is an exact pixel offset. Pixels a file does not cover get
``ivar = 0`` and the ``NO_DATA`` bit.

Mask policy (``and_mask``, the SPPIXMASK bits: https://www.sdss4.org/dr17/algorithms/bitmasks/#SPPIXMASK,
https://www.sdss3.org/dr10/algorithms/bitmask_sppixmask.php). SDSS's own advice there: "the
conditions that are considered very bad are already used to set the errors to infinity for
the affected pixels (specifically, the inverse variance is set to zero)", and "the most useful
mask bit to look at is BRIGHTSKY". So the file's ``ivar <= 0`` is the primary bad-pixel flag,
and only these bits add to it (:data:`SDSS_BAD_BITS`, ``ivar = 0`` and the ``BAD`` bit):

* FULLREJECT (18) and NOSKY (22), documented as INVVAR = 0 (kept in case a file disagrees);
  COMBINEREJ (25), rejected in the combine of every exposure (it is an AND mask);
* the fibre-level NOPLUG (0), BADTRACE (1), BADFLAT (2) and BADARC (3): no trustworthy
  extraction or wavelength solution for that half of the spectrum.

BRIGHTSKY (23), BADSKYCHI (27, sky residual chi2 > 3 at that wavelength) and REDMONSTER (28,
a run of those) become ``SKY_LINE`` (:data:`SDSS_SKY_BITS`), as does the instrument's sky-line
mask. Every other bit is informational and leaves the pixel usable with its ``ivar``: the
fibre-level MANYBADCOLUMNS (4) / MANYREJECTED (5) ("more than 10 % of pixels are bad columns /
rejected", set on a whole half of the spectrum whose individual bad pixels already have
``ivar = 0``: treating them as bad masked half of good spectra), NEARBADPIXEL (16), LOWFLAT (17),
PARTIALREJECT (19), SCATTEREDLIGHT (20), CROSSTALK (21), BADFLUXFACTOR (26), and NODATA (24),
which SDSS says is deprecated and "should be ignored in favor of flagging on INVVAR=0".

Object ids are ``PLATE-MJD-FIBER`` (``%04d-%05d-%04d``) where the redshift table or header
says so, else the file name without ``spec-``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speculum.instruments import Instrument, PixelMask, get_instrument
from speculum.io.records import (
    SpectrumRecords,
    check_flux_ivar,
    format_error,
    hdu_names,
    open_fits,
    table_column,
)

__all__ = ["BRIGHTSKY", "SDSS_BAD_BITS", "SDSS_SKY_BITS", "read_sdss_spec"]

#: spPixMask BRIGHTSKY: a pixel on a bright sky line (kept, flagged ``SKY_LINE``).
BRIGHTSKY = 1 << 23
#: ``and_mask`` bits that make a pixel bad (see the module docstring): NOPLUG, BADTRACE,
#: BADFLAT, BADARC, FULLREJECT, NOSKY, COMBINEREJ.
SDSS_BAD_BITS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 18) | (1 << 22) | (1 << 25)
#: ``and_mask`` bits of sky-subtraction trouble, flagged ``SKY_LINE``: BRIGHTSKY, BADSKYCHI, REDMONSTER.
SDSS_SKY_BITS = BRIGHTSKY | (1 << 27) | (1 << 28)
LOGLAM_STEP = 1e-4
ZTABLES = ("SPECOBJ", "SPALL")


def read_sdss_spec(path: str | Path, instrument: str | Instrument = "BOSS") -> SpectrumRecords:
    """Read an SDSS/BOSS ``spec`` or ``spPlate`` file (any layout of the module docstring) onto ``instrument``'s grid.

    Bad pixels (``ivar <= 0`` or an ``and_mask`` bit of :data:`SDSS_BAD_BITS`) get ``ivar = 0``
    and the ``BAD`` bit; :data:`SDSS_SKY_BITS` pixels and the instrument's sky-line mask get
    ``SKY_LINE`` (policy and citation: the module docstring).
    Redshifts with ``ZWARNING != 0`` are kept in ``zwarn`` but ``z`` is NaN with
    ``z_flag = "zwarn"``.

    Args:
        path: The file.
        instrument: ``SDSS`` or ``BOSS`` (the default, whose grid contains the SDSS range).

    Returns:
        :class:`~speculum.io.records.SpectrumRecords` with ``flux`` ``(N, L)`` (``N = 1``
        but for spPlate files).

    Example::

        rec = read_sdss_spec("spec-0266-51602-0013.fits", "SDSS")
        rec.z, rec.flux.shape  # (array([0.1213]), (1, 3921))
    """
    path, inst = Path(path), get_instrument(instrument)
    with open_fits(path) as hdul:
        return read_sdss_open(path, hdul, inst)


def read_sdss_open(path: Path, hdul, inst: Instrument) -> SpectrumRecords:
    """:func:`read_sdss_spec` on an already open file (the layout is detected from its HDUs)."""
    names = hdu_names(hdul)
    if "COADD" in names:
        return _sdss_table(path, hdul, names, inst)
    if any(z in names for z in ZTABLES):
        raise format_error(path, "HDU COADD", f"missing (HDUs: {', '.join(names)})")
    primary = hdul[0]
    if primary.data is not None and primary.data.ndim == 2 and "COEFF0" in primary.header:
        return _sdss_plate(path, hdul, inst)
    if primary.data is not None and primary.data.ndim == 1 and len(hdul) >= 4 and "COEFF0" in primary.header:
        return _sdss_image(path, hdul, inst)
    layout = ", ".join(f"{i}:{h.name or '(unnamed)'}:{type(h).__name__}" for i, h in enumerate(hdul))
    raise format_error(
        path,
        "layout",
        "unknown layout: neither an SDSS/BOSS spec/spPlate file (COADD table or image HDUs with COEFF0) "
        f"nor a DESI coadd (FIBERMAP); found [{layout}]",
    )


def _place_loglam(
    path: Path, where: str, loglam: np.ndarray, inst: Instrument, flux, ivar, bad, sky=None
) -> tuple[np.ndarray, ...]:
    """Put a spectrum on the SDSS/BOSS log-lambda lattice of ``inst`` by an exact offset.

    ``bad`` (and optionally ``sky``) flag the file's pixels; the instrument's sky-line mask
    is added to ``SKY_LINE``.
    """
    if loglam.ndim != 1 or len(loglam) < 2:
        raise format_error(path, where, f"expected a 1-D wavelength array, got shape {loglam.shape}")
    if not np.all(np.isfinite(loglam)):
        raise format_error(path, where, "NaN/inf wavelengths")
    steps = np.diff(loglam)
    if np.any(steps <= 0):
        first = int(np.argmax(steps <= 0)) + 1
        raise format_error(path, where, f"wavelengths not sorted (first decrease at pixel {first})")
    if not inst.log_spaced or np.max(np.abs(steps - LOGLAM_STEP)) > 1e-6:
        raise format_error(path, where, f"not on the {LOGLAM_STEP:g} dex log-lambda lattice of {inst.name}")
    pos = (loglam[0] - inst.wave_start) / inst.step
    off = int(round(pos))
    if abs(pos - off) > 0.05:
        raise format_error(
            path, where, f"first pixel {10 ** loglam[0]:.2f} A is {pos - off:+.2f} px off the {inst.name} grid"
        )
    n = inst.n_pixels
    out_f, out_i = np.zeros(n, np.float32), np.zeros(n, np.float32)
    out_m = np.full(n, int(PixelMask.NO_DATA), np.int32)
    dst = np.arange(len(loglam)) + off
    keep = (dst >= 0) & (dst < n)
    if not keep.any():
        raise format_error(path, where, f"no pixel inside the {inst.name} wavelength range")
    d = dst[keep]
    f, iv, b = flux[keep], ivar[keep], bad[keep]
    good = np.isfinite(f)
    out_f[d] = np.where(good, f, 0.0)
    out_i[d] = np.where(good & ~b.astype(bool), iv, 0.0)
    out_m[d] = np.where(b | (iv <= 0) | ~good, int(PixelMask.BAD), 0)
    if sky is not None:
        out_m[d] |= np.where(sky[keep], int(PixelMask.SKY_LINE), 0).astype(np.int32)
    out_m[inst.sky_mask] |= int(PixelMask.SKY_LINE)
    return out_f, out_i, out_m


def _sdss_object_id(path: Path, ztab, row: int = 0) -> str:
    try:
        return f"{int(ztab['PLATE'][row]):04d}-{int(ztab['MJD'][row]):05d}-{int(ztab['FIBERID'][row]):04d}"
    except (KeyError, ValueError, TypeError):
        return path.stem.removeprefix("spec-")


def _survey_of(loglam: np.ndarray) -> str:
    """``BOSS`` when the spectrum reaches beyond 9500 A (the SDSS spectrograph stops at 9200 A)."""
    return "BOSS" if len(loglam) and 10 ** loglam[-1] > 9500 else "SDSS"


def _no_redshift(inst: Instrument, path: Path, object_id: list[str], survey: list[str], placed) -> SpectrumRecords:
    """Records of spectra without a redshift table (image and spPlate layouts)."""
    n = len(object_id)
    return SpectrumRecords(
        instrument=inst.name,
        object_id=object_id,
        survey=survey,
        z=np.full(n, np.nan),
        z_err=np.full(n, np.nan),
        zwarn=np.full(n, -1),
        z_flag=["no_redshift"] * n,
        spec_class=[""] * n,
        flux=np.stack([r[0] for r in placed]),
        ivar=np.stack([r[1] for r in placed]),
        mask=np.stack([r[2] for r in placed]),
        source=[path.name] * n,
    )


def _sdss_table(path: Path, hdul, names: list[str], inst: Instrument) -> SpectrumRecords:
    coadd = hdul["COADD"]
    if not hasattr(coadd, "columns"):
        raise format_error(path, "HDU COADD", "is not a table")
    cols = {
        "flux": table_column(path, coadd, "flux"),
        "loglam": table_column(path, coadd, "loglam"),
        "ivar": table_column(path, coadd, "ivar"),
        "and_mask": table_column(path, coadd, "and_mask", kind="i"),
    }
    zname = next((z for z in ZTABLES if z in names), None)
    ztab = None
    if zname is not None:
        zt = hdul[zname]
        ztab = {"Z": table_column(path, zt, "Z"), "ZWARNING": table_column(path, zt, "ZWARNING", kind="i")}
        for c in ("Z_ERR", "CLASS", "PLATE", "MJD", "FIBERID"):
            if c in zt.columns.names:
                ztab[c] = np.asarray(zt.data[c])
    return _sdss_records(path, cols, zname, ztab, inst)


def _sdss_records(path: Path, cols: dict, zname: str | None, ztab: dict | None, inst: Instrument) -> SpectrumRecords:
    """One SDSS COADD spectrum (arrays already read and type-checked) onto ``inst``'s grid."""
    flux = np.asarray(cols["flux"], dtype=np.float64)
    loglam = np.asarray(cols["loglam"], dtype=np.float64)
    ivar = np.asarray(cols["ivar"], dtype=np.float64)
    and_mask = np.asarray(cols["and_mask"]).astype(np.int64)
    check_flux_ivar(path, "HDU COADD, column", flux, ivar)
    bad, sky = (and_mask & SDSS_BAD_BITS) != 0, (and_mask & SDSS_SKY_BITS) != 0
    f, iv, m = _place_loglam(path, "HDU COADD, column loglam", loglam, inst, flux, ivar, bad, sky)
    if ztab is None:
        z, zerr, zwarn, cls, flag, oid = np.nan, np.nan, -1, "", "no_redshift", path.stem.removeprefix("spec-")
    else:
        z = float(ztab["Z"][0])
        zerr = float(ztab["Z_ERR"][0]) if "Z_ERR" in ztab else np.nan
        zwarn = int(ztab["ZWARNING"][0])
        cls = str(ztab["CLASS"][0]).strip() if "CLASS" in ztab else ""
        oid = _sdss_object_id(path, ztab)
        flag = ""
        if not np.isfinite(z):
            raise format_error(path, f"HDU {zname}, column Z", f"not finite ({z})")
        if zwarn != 0:
            flag, z = "zwarn", np.nan
    return SpectrumRecords(
        instrument=inst.name,
        object_id=[oid],
        survey=[_survey_of(loglam)],
        z=np.array([z]),
        z_err=np.array([zerr]),
        zwarn=np.array([zwarn]),
        z_flag=[flag],
        spec_class=[cls],
        flux=f[None],
        ivar=iv[None],
        mask=m[None],
        source=[path.name],
    )


def read_sdss_fitsio(path: Path, inst: Instrument) -> SpectrumRecords | None:
    """Fast path for well-formed COADD-table spec files with fitsio (8x faster than astropy).

    Returns ``None`` when fitsio is not installed or anything about the file is unusual;
    the caller then reads it with astropy, which also words any error.
    """
    try:
        import fitsio
    except ImportError:
        return None
    try:
        with fitsio.FITS(str(path)) as f:
            names = [h.get_extname().upper() for h in f]
            if "COADD" not in names:
                return None
            data = f["COADD"].read(columns=["flux", "loglam", "ivar", "and_mask"])
            cols = {k: data[k] for k in ("flux", "loglam", "ivar", "and_mask")}
            if any(cols[k].dtype.kind not in "fiu" for k in cols) or cols["and_mask"].dtype.kind not in "iu":
                return None
            zname = next((z for z in ZTABLES if z in names), None)
            ztab = None
            if zname is not None:
                have = {c.upper(): c for c in f[zname].get_colnames()}
                want = [have[c] for c in ("Z", "ZWARNING", "Z_ERR", "CLASS", "PLATE", "MJD", "FIBERID") if c in have]
                zdata = f[zname].read(columns=want, rows=[0])
                ztab = {c.upper(): zdata[c] for c in want}
                if "Z" not in ztab or "ZWARNING" not in ztab:
                    return None
        return _sdss_records(path, cols, zname, ztab, inst)
    except Exception:  # noqa: BLE001 - any oddity: let the astropy path read it and word the error
        return None


def _sdss_image(path: Path, hdul, inst: Instrument) -> SpectrumRecords:
    hdr = hdul[0].header
    flux = np.asarray(hdul[0].data, dtype=np.float64)
    ivar = np.asarray(hdul[1].data, dtype=np.float64)
    loglam = np.asarray(hdul[2].data, dtype=np.float64)
    mask = np.asarray(hdul[3].data).astype(np.int64)
    for i, arr in ((1, ivar), (2, loglam), (3, mask)):
        if arr.shape != flux.shape:
            raise format_error(path, f"HDU {i}", f"length {arr.shape} differs from the flux HDU 0 {flux.shape}")
    check_flux_ivar(path, "HDU 0/1 (flux/ivar)", flux, ivar)
    # in this layout HDU 3 marks *good* pixels with 1: every ivar = 0 pixel has mask 0
    placed = _place_loglam(path, "HDU 2 (loglam)", loglam, inst, flux, ivar, mask == 0)
    oid = str(hdr.get("NAME", path.stem)).strip()
    return _no_redshift(inst, path, [oid], [_survey_of(loglam)], [placed])


def _sdss_plate(path: Path, hdul, inst: Instrument) -> SpectrumRecords:
    if len(hdul) < 3:
        raise format_error(
            path,
            "HDU 1 (IVAR)",
            f"missing: this spPlate file has {len(hdul)} HDU(s) (flux only?); ivar and and-mask are required",
        )
    hdr = hdul[0].header
    flux = np.asarray(hdul[0].data, dtype=np.float64)
    ivar = np.asarray(hdul[1].data, dtype=np.float64)
    and_mask = np.asarray(hdul[2].data).astype(np.int64)
    loglam = hdr["COEFF0"] + hdr["COEFF1"] * np.arange(flux.shape[1])
    check_flux_ivar(path, "HDU 0/1 (flux/ivar)", flux, ivar)
    where = "header COEFF0/COEFF1"
    placed = [
        _place_loglam(path, where, loglam, inst, flux[k], ivar[k], (and_mask[k] & SDSS_BAD_BITS) != 0)
        for k in range(flux.shape[0])
    ]
    n = len(placed)
    plate, mjd = int(hdr.get("PLATEID", 0)), int(hdr.get("MJD", 0))
    ids = [f"{plate:04d}-{mjd:05d}-{k + 1:04d}" for k in range(n)]
    return _no_redshift(inst, path, ids, ["BOSS"] * n, placed)

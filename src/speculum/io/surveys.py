"""Readers for survey spectra as the surveys publish them, onto speculum's instrument grids.

* SDSS / BOSS ``spec-PLATE-MJD-FIBER.fits`` (full and lite): HDU ``COADD`` table (``flux``,
  ``loglam``, ``ivar``, ``and_mask``, …) and the redshift table ``SPECOBJ`` (or ``SPALL``
  in some releases); file names may be object ids. Older BOSS files in the image layout
  (flux, ivar, loglam and a good-pixel mask as image HDUs, ``COEFF0``/``COEFF1`` in the
  header) are read too, without a redshift. ``spPlate`` files with flux, ivar and and-mask HDUs give one
  spectrum per fibre.
* DESI ``coadd-*.fits``: ``B/R/Z_WAVELENGTH``, ``_FLUX``, ``_IVAR``, ``_MASK``,
  ``_RESOLUTION`` and ``FIBERMAP``; redshifts from the matching ``redrock-*`` (HDU
  ``REDSHIFTS``) or ``zbest-*`` (HDU ``ZBEST``) file, matched by ``TARGETID``. The arms are
  coadded onto the DESI grid by inverse variance, as ``desispec.coaddition.coadd_cameras``
  does, and so are the banded resolution matrices.

DESI object ids are unique across surveys, programs and coadd groups (``TARGETID`` alone
repeats between coadds)::

    desi-{survey}-{program}-{healpix}-{targetid}        HEALPix coadds (header HPXPIXEL)
    desi-{survey}-{program}-t{tileid}p{petal}-{targetid}  tile coadds (header TILEID/PETAL)
    desi-{survey}-{program}-{file name}-{targetid}      neither (file name without ``coadd-``)

``survey``/``program`` come from the PRIMARY (else FIBERMAP) header keywords ``SURVEY`` and
``PROGRAM`` (``FAPRGRM``); tile coadds without them take the survey from the ``SV1_``/
``SV2_``/``SV3_`` target columns, and ``unknown`` where nothing says. The parts are also
carried as columns (``desi_survey``, ``desi_program``, ``healpix``, ``tileid``, ``petal``,
``targetid``) together with the target bits (``desi_target``, ``bgs_target``,
``mws_target``, ``scnd_target``; the SV variants as ``sv_*_target`` with ``sv_survey``
naming which; 0 where a file has no such column).

Units: every reader returns flux densities in :data:`FLUX_UNIT` (what SDSS, BOSS and DESI
publish) on vacuum wavelength grids in Angstrom.

SDSS/BOSS coadds sit on the common log-lambda lattice ``10 ** (3.5 + 1e-4 k)``, so placing
them on an instrument grid is an exact pixel offset. DESI arms sit on the 0.8 A lattice of
the DESI grid. Pixels a file does not cover get ``ivar = 0`` and the ``NO_DATA`` bit.

Every problem is a :class:`SpectrumFormatError` naming the file, the HDU/column and the
problem.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speculum._optional import require
from speculum.instruments import DESI, Instrument, PixelMask, get_instrument
from speculum.io.shards import FLUX_UNIT, WAVE_MEDIUM, WAVE_UNIT, DataFormatError

__all__ = [
    "FLUX_UNIT",
    "SDSS_BAD_BITS",
    "WAVE_MEDIUM",
    "WAVE_UNIT",
    "SpectrumFormatError",
    "SpectrumRecords",
    "read_desi_coadd",
    "read_redshift_table",
    "read_sdss_spec",
    "read_spectra",
]

log = logging.getLogger(__name__)

# SDSS spPixMask bits (https://www.sdss4.org/dr17/algorithms/bitmasks/#SPPIXMASK): every
# and_mask bit marks a pixel bad except BRIGHTSKY (23), which becomes SKY_LINE.
BRIGHTSKY = 1 << 23
SDSS_BAD_BITS = 0xFFFFFFFF & ~BRIGHTSKY
LOGLAM_STEP = 1e-4
DESI_TARGET_BITS = ("DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET")


class SpectrumFormatError(DataFormatError):
    """A survey file is unreadable or not what its survey publishes."""


@dataclass
class SpectrumRecords:
    """Spectra read from one file, on an instrument grid (``N`` rows, ``L`` pixels).

    ``z`` is NaN and ``z_flag`` explains why (``no_redshift``, ``zwarn``) when a
    redshift is unknown or flagged; training and scoring skip those rows.
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
        """Columns of the shard format."""
        cols: dict[str, object] = {
            "object_id": self.object_id,
            "survey": self.survey,
            "instrument": [self.instrument] * len(self),
            "z": self.z,
            "z_err": self.z_err.astype(np.float32),
            "zwarn": self.zwarn.astype(np.int64),
            "z_flag": self.z_flag,
            "class": self.spec_class,
            "flux": self.flux,
            "ivar": self.ivar,
            "mask": self.mask,
            "source_file": self.source,
        }
        if self.resolution is not None:
            cols["resolution"] = self.resolution.reshape(len(self), -1).astype(np.float32)
        cols.update(self.extra)
        return cols

    def take(self, idx: np.ndarray) -> SpectrumRecords:
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


def _err(path: Path, where: str, problem: str) -> SpectrumFormatError:
    return SpectrumFormatError(f"{path}: {where}: {problem}")


def _open(path: Path):
    fits = require("astropy.io.fits", "reading survey FITS files")

    if not path.exists():
        raise _err(path, "file", "does not exist")
    if path.stat().st_size == 0:
        raise _err(path, "file", "is empty")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False)
    except Exception as err:  # noqa: BLE001 - astropy raises OSError, TypeError, VerifyError, ...
        raise _err(path, "file", f"not a readable FITS file ({type(err).__name__}: {err})") from None
    for w in caught:
        log.warning("%s: %s", path, w.message)
    return hdul


def _column(path: Path, hdu, name: str, kind: str = "f") -> np.ndarray:
    names = [c.lower() for c in hdu.columns.names]
    if name.lower() not in names:
        raise _err(path, f"HDU {hdu.name}, column {name}", f"missing (columns: {', '.join(hdu.columns.names)})")
    try:
        arr = np.asarray(hdu.data[name])
    except Exception as err:  # noqa: BLE001 - truncated data
        raise _err(path, f"HDU {hdu.name}, column {name}", f"cannot be read ({err})") from None
    if kind == "f" and arr.dtype.kind not in "fiu":
        raise _err(path, f"HDU {hdu.name}, column {name}", f"expected numbers, got dtype {arr.dtype}")
    if kind == "i" and arr.dtype.kind not in "iu":
        raise _err(path, f"HDU {hdu.name}, column {name}", f"expected integers, got dtype {arr.dtype}")
    return arr


def _check_values(path: Path, where: str, flux: np.ndarray, ivar: np.ndarray) -> None:
    if flux.shape != ivar.shape:
        raise _err(path, where, f"flux has shape {flux.shape} but ivar {ivar.shape}")
    neg = int((ivar < 0).sum())
    if neg:
        raise _err(path, f"{where} ivar", f"{neg} negative inverse variance(s)")
    bad_ivar = int((~np.isfinite(ivar)).sum())
    if bad_ivar:
        raise _err(path, f"{where} ivar", f"{bad_ivar} NaN/inf value(s)")
    bad = int(((~np.isfinite(flux)) & (ivar > 0)).sum())
    if bad:
        raise _err(path, f"{where} flux", f"{bad} NaN/inf value(s) at pixels with ivar > 0")


def _place_loglam(
    path: Path, where: str, loglam: np.ndarray, inst: Instrument, flux, ivar, bad, sky=None
) -> tuple[np.ndarray, ...]:
    """Put a spectrum on the SDSS/BOSS log-lambda lattice of ``inst`` by an exact offset.

    ``bad`` (and optionally ``sky``) flag the file's pixels; the instrument's sky-line mask
    is added to ``SKY_LINE``.
    """
    if loglam.ndim != 1 or len(loglam) < 2:
        raise _err(path, where, f"expected a 1-D wavelength array, got shape {loglam.shape}")
    if not np.all(np.isfinite(loglam)):
        raise _err(path, where, "NaN/inf wavelengths")
    steps = np.diff(loglam)
    if np.any(steps <= 0):
        raise _err(path, where, f"wavelengths not sorted (first decrease at pixel {int(np.argmax(steps <= 0)) + 1})")
    if not inst.log_spaced or np.max(np.abs(steps - LOGLAM_STEP)) > 1e-6:
        raise _err(path, where, f"not on the {LOGLAM_STEP:g} dex log-lambda lattice of {inst.name}")
    pos = (loglam[0] - inst.wave_start) / inst.step
    off = int(round(pos))
    if abs(pos - off) > 0.05:
        raise _err(path, where, f"first pixel {10 ** loglam[0]:.2f} A is {pos - off:+.2f} px off the {inst.name} grid")
    n = inst.n_pixels
    out_f, out_i = np.zeros(n, np.float32), np.zeros(n, np.float32)
    out_m = np.full(n, int(PixelMask.NO_DATA), np.int32)
    dst = np.arange(len(loglam)) + off
    keep = (dst >= 0) & (dst < n)
    if not keep.any():
        raise _err(path, where, f"no pixel inside the {inst.name} wavelength range")
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


def read_sdss_spec(path: str | Path, instrument: str | Instrument = "BOSS") -> SpectrumRecords:
    """Read an SDSS/BOSS ``spec`` file (any of the layouts above) onto ``instrument``'s grid.

    Bad pixels (``ivar <= 0`` or any ``and_mask`` bit but BRIGHTSKY) get ``ivar = 0`` and
    the ``BAD`` bit; BRIGHTSKY pixels and the instrument's sky-line mask get ``SKY_LINE``.
    Redshifts with ``ZWARNING != 0`` are kept in ``zwarn`` but ``z`` is NaN with
    ``z_flag = "zwarn"``.

    Example::

        rec = read_sdss_spec("spec-0266-51602-0013.fits", "SDSS")
        rec.z, rec.flux.shape  # (array([0.1213]), (1, 3921))
    """
    path, inst = Path(path), get_instrument(instrument)
    with _open(path) as hdul:
        return _read_sdss_open(path, hdul, inst)


def _read_sdss_open(path: Path, hdul, inst: Instrument) -> SpectrumRecords:
    names = [h.name.upper() for h in hdul]
    if "COADD" in names:
        return _sdss_table(path, hdul, names, inst)
    if "SPECOBJ" in names or "SPALL" in names:
        raise _err(path, "HDU COADD", f"missing (HDUs: {', '.join(names)})")
    primary = hdul[0]
    if primary.data is not None and primary.data.ndim == 2 and "COEFF0" in primary.header:
        return _sdss_plate(path, hdul, inst)
    if primary.data is not None and primary.data.ndim == 1 and len(hdul) >= 4 and "COEFF0" in primary.header:
        return _sdss_image(path, hdul, inst)
    layout = ", ".join(f"{i}:{h.name or '(unnamed)'}:{type(h).__name__}" for i, h in enumerate(hdul))
    raise _err(
        path,
        "layout",
        "unknown layout: neither an SDSS/BOSS spec/spPlate file (COADD table or image HDUs with COEFF0) "
        f"nor a DESI coadd (FIBERMAP); found [{layout}]",
    )


def _sdss_table(path: Path, hdul, names: list[str], inst: Instrument) -> SpectrumRecords:
    coadd = hdul["COADD"]
    if not hasattr(coadd, "columns"):
        raise _err(path, "HDU COADD", "is not a table")
    cols = {
        "flux": _column(path, coadd, "flux"),
        "loglam": _column(path, coadd, "loglam"),
        "ivar": _column(path, coadd, "ivar"),
        "and_mask": _column(path, coadd, "and_mask", kind="i"),
    }
    zname = "SPECOBJ" if "SPECOBJ" in names else "SPALL" if "SPALL" in names else None
    ztab = None
    if zname is not None:
        zt = hdul[zname]
        ztab = {"Z": _column(path, zt, "Z"), "ZWARNING": _column(path, zt, "ZWARNING", kind="i")}
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
    _check_values(path, "HDU COADD, column", flux, ivar)
    bad, sky = (and_mask & SDSS_BAD_BITS) != 0, (and_mask & BRIGHTSKY) != 0
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
            raise _err(path, f"HDU {zname}, column Z", f"not finite ({z})")
        if zwarn != 0:
            flag, z = "zwarn", np.nan
    survey = "BOSS" if len(loglam) and 10 ** loglam[-1] > 9500 else "SDSS"
    return SpectrumRecords(
        instrument=inst.name,
        object_id=[oid],
        survey=[survey],
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


def _sdss_fitsio(path: Path, inst: Instrument) -> SpectrumRecords | None:
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
            zname = "SPECOBJ" if "SPECOBJ" in names else "SPALL" if "SPALL" in names else None
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
            raise _err(path, f"HDU {i}", f"length {arr.shape} differs from the flux HDU 0 {flux.shape}")
    _check_values(path, "HDU 0/1 (flux/ivar)", flux, ivar)
    # in this layout HDU 3 marks *good* pixels with 1: every ivar = 0 pixel has mask 0
    f, iv, m = _place_loglam(path, "HDU 2 (loglam)", loglam, inst, flux, ivar, mask == 0)
    oid = str(hdr.get("NAME", path.stem)).strip()
    return SpectrumRecords(
        instrument=inst.name,
        object_id=[oid],
        survey=["BOSS" if 10 ** loglam[-1] > 9500 else "SDSS"],
        z=np.array([np.nan]),
        z_err=np.array([np.nan]),
        zwarn=np.array([-1]),
        z_flag=["no_redshift"],
        spec_class=[""],
        flux=f[None],
        ivar=iv[None],
        mask=m[None],
        source=[path.name],
    )


def _sdss_plate(path: Path, hdul, inst: Instrument) -> SpectrumRecords:
    if len(hdul) < 3:
        raise _err(
            path,
            "HDU 1 (IVAR)",
            f"missing: this spPlate file has {len(hdul)} HDU(s) (flux only?); ivar and and-mask are required",
        )
    hdr = hdul[0].header
    flux = np.asarray(hdul[0].data, dtype=np.float64)
    ivar = np.asarray(hdul[1].data, dtype=np.float64)
    and_mask = np.asarray(hdul[2].data).astype(np.int64)
    loglam = hdr["COEFF0"] + hdr["COEFF1"] * np.arange(flux.shape[1])
    _check_values(path, "HDU 0/1 (flux/ivar)", flux, ivar)
    rows = [
        _place_loglam(path, "header COEFF0/COEFF1", loglam, inst, flux[k], ivar[k], (and_mask[k] & SDSS_BAD_BITS) != 0)
        for k in range(flux.shape[0])
    ]
    n = len(rows)
    plate, mjd = int(hdr.get("PLATEID", 0)), int(hdr.get("MJD", 0))
    return SpectrumRecords(
        instrument=inst.name,
        object_id=[f"{plate:04d}-{mjd:05d}-{k + 1:04d}" for k in range(n)],
        survey=["BOSS"] * n,
        z=np.full(n, np.nan),
        z_err=np.full(n, np.nan),
        zwarn=np.full(n, -1),
        z_flag=["no_redshift"] * n,
        spec_class=[""] * n,
        flux=np.stack([r[0] for r in rows]),
        ivar=np.stack([r[1] for r in rows]),
        mask=np.stack([r[2] for r in rows]),
        source=[path.name] * n,
    )


# ---------------------------------------------------------------------- DESI
def read_redshift_table(path: str | Path) -> dict[str, np.ndarray]:
    """``TARGETID``, ``Z``, ``ZERR``, ``ZWARN``, ``SPECTYPE`` of a redrock/zbest file."""
    path = Path(path)
    with _open(path) as hdul:
        names = [h.name.upper() for h in hdul]
        hname = "REDSHIFTS" if "REDSHIFTS" in names else "ZBEST" if "ZBEST" in names else None
        if hname is None:
            raise _err(path, "HDU REDSHIFTS", f"missing (and no ZBEST); HDUs: {names}")
        t = hdul[hname]
        out = {c: _column(path, t, c, kind="i" if c != "Z" else "f") for c in ("TARGETID", "Z", "ZWARN")}
        out["ZERR"] = _column(path, t, "ZERR") if "ZERR" in t.columns.names else np.full(len(out["Z"]), np.nan)
        out["SPECTYPE"] = (
            np.char.strip(np.asarray(t.data["SPECTYPE"]).astype(str))
            if "SPECTYPE" in t.columns.names
            else np.array([""] * len(out["Z"]))
        )
    return out


def _find_redshift_file(path: Path) -> Path | None:
    stem = path.name.removeprefix("coadd-")
    for prefix in ("redrock-", "zbest-"):
        cand = path.with_name(prefix + stem)
        if cand.exists():
            return cand
    return None


def read_desi_coadd(
    path: str | Path,
    redshifts: str | Path | None = None,
    fiberstatus_ok: int = 0,
    zwarn_ok: int = 0,
    keep_resolution: bool = True,
    rows: tuple[int, int] | None = None,
) -> SpectrumRecords:
    """Read a DESI coadd, coadd its arms onto the DESI grid, attach redrock redshifts.

    Args:
        path: ``coadd-*.fits``.
        redshifts: Redshift file; default: ``redrock-*``/``zbest-*`` next to it, if any.
        fiberstatus_ok: ``COADD_FIBERSTATUS`` (or ``FIBERSTATUS``) bits that are
            acceptable; fibres with any other bit set are dropped.
        zwarn_ok: ``ZWARN`` bits that are acceptable; other warnings give ``z = NaN``
            and ``z_flag = "zwarn"``.
        keep_resolution: Keep the coadded banded resolution matrices ``(N, 11, L)``.
        rows: ``(start, stop)``: read only these FIBERMAP rows (before any selection);
            only their slices of the image HDUs are read, so memory is bounded by the
            range, not the file (a 500-fibre coadd holds ~220 MB of arrays).

    Only real targets (``OBJTYPE == 'TGT'``, when the column exists) are kept. Object ids
    and identity columns: see the module docstring.
    """
    path = Path(path)
    with _open(path) as hdul:
        return _read_desi_open(path, hdul, redshifts, fiberstatus_ok, zwarn_ok, keep_resolution, rows)


def _read_desi_open(
    path: Path,
    hdul,
    redshifts: str | Path | None = None,
    fiberstatus_ok: int = 0,
    zwarn_ok: int = 0,
    keep_resolution: bool = True,
    rows: tuple[int, int] | None = None,
) -> SpectrumRecords:
    """:func:`read_desi_coadd` on an already open file."""
    inst = DESI
    names = [h.name.upper() for h in hdul]
    if "FIBERMAP" not in names:
        raise _err(path, "HDU FIBERMAP", f"missing; HDUs: {names}")
    fm = hdul["FIBERMAP"]
    n_all = int(fm.header.get("NAXIS2", 0))
    lo, hi = (0, n_all) if rows is None else (max(0, int(rows[0])), min(n_all, int(rows[1])))
    if hi < lo:
        raise ValueError(f"rows: expected 0 <= start <= stop, got {rows}")
    sl = slice(lo, hi)
    tid = _column(path, fm, "TARGETID", kind="i").astype(np.int64)[sl]
    status_col = "COADD_FIBERSTATUS" if "COADD_FIBERSTATUS" in fm.columns.names else "FIBERSTATUS"
    status = _column(path, fm, status_col, kind="i").astype(np.int64)[sl]
    keep = (status & ~np.int64(fiberstatus_ok)) == 0
    if "OBJTYPE" in fm.columns.names:
        keep &= np.char.strip(np.asarray(fm.data["OBJTYPE"][sl]).astype(str)) == "TGT"
    ident = _desi_identity(path, hdul[0].header, fm, sl)
    sel = np.nonzero(keep)[0]
    n, length = len(tid), inst.n_pixels
    wsum = np.zeros((n, length))
    fsum = np.zeros((n, length))
    rsum = np.zeros((n, 11, length)) if keep_resolution else None
    covered = np.zeros(length, bool)
    arms = [a for a in ("B", "R", "Z") if f"{a}_FLUX" in names]
    if not arms:
        raise _err(path, "HDU B_FLUX/R_FLUX/Z_FLUX", f"no spectrograph arm found; HDUs: {names}")
    for arm in arms:
        for part in ("WAVELENGTH", "IVAR", "MASK") + (("RESOLUTION",) if keep_resolution else ()):
            if f"{arm}_{part}" not in names:
                raise _err(path, f"HDU {arm}_{part}", "missing")
        wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, dtype=np.float64)
        where = f"HDU {arm}_FLUX/{arm}_IVAR"
        shapes = [hdul[f"{arm}_{k}"].shape for k in ("FLUX", "IVAR", "MASK")]
        if shapes[0] != (n_all, len(wave)) or shapes[1] != shapes[0] or shapes[2] != shapes[0]:
            shapes = "/".join(map(str, shapes))
            raise _err(path, where, f"shapes {shapes} do not match {n_all} fibres x {len(wave)} px")
        flux = np.asarray(_rows(hdul[f"{arm}_FLUX"], sl), dtype=np.float64)
        ivar = np.asarray(_rows(hdul[f"{arm}_IVAR"], sl), dtype=np.float64)
        mask = np.asarray(_rows(hdul[f"{arm}_MASK"], sl))
        _check_values(path, where, flux[sel], ivar[sel])
        if np.any(np.diff(wave) <= 0):
            raise _err(path, f"HDU {arm}_WAVELENGTH", "wavelengths not sorted")
        pos = (wave - inst.wave_start) / inst.step
        idx = np.round(pos).astype(int)
        if np.max(np.abs(pos - idx)) > 1e-3 or idx[0] < 0 or idx[-1] >= length:
            raise _err(path, f"HDU {arm}_WAVELENGTH", "not on the DESI 0.8 A grid 3600-9824 A")
        w = np.where((mask == 0) & np.isfinite(flux), ivar, 0.0)
        wsum[:, idx] += w
        fsum[:, idx] += w * np.nan_to_num(flux)
        covered[idx] = True
        if keep_resolution:
            rshape = hdul[f"{arm}_RESOLUTION"].shape
            if rshape != (n_all, 11, len(wave)):
                raise _err(path, f"HDU {arm}_RESOLUTION", f"expected shape ({n_all}, 11, {len(wave)}), got {rshape}")
            res = np.asarray(_rows(hdul[f"{arm}_RESOLUTION"], sl), dtype=np.float64)
            rsum[:, :, idx] += w[:, None, :] * res
    ivar_c = wsum
    flux_c = np.where(wsum > 0, fsum / np.where(wsum > 0, wsum, 1), 0.0)
    mask_c = np.where(covered, np.where(wsum > 0, 0, int(PixelMask.BAD)), int(PixelMask.NO_DATA)).astype(np.int32)
    mask_c[:, inst.sky_mask] |= int(PixelMask.SKY_LINE)
    res_c = None
    if keep_resolution:
        res_c = np.where(wsum[:, None, :] > 0, rsum / np.where(wsum > 0, wsum, 1)[:, None, :], 0.0)
        centre = np.zeros(11)
        centre[5] = 1.0
        res_c = np.where(wsum[:, None, :] > 0, res_c, centre[None, :, None])  # identity where no data
    z = np.full(n, np.nan)
    zerr = np.full(n, np.nan)
    zwarn = np.full(n, -1, dtype=np.int64)
    flag = ["no_redshift"] * n
    cls = [""] * n
    zpath = Path(redshifts) if redshifts is not None else _find_redshift_file(path)
    if zpath is not None:
        zt = read_redshift_table(zpath)
        lookup = {int(t): k for k, t in enumerate(zt["TARGETID"])}
        for i, t in enumerate(tid):
            k = lookup.get(int(t))
            if k is None:
                continue
            zwarn[i], zerr[i], cls[i] = int(zt["ZWARN"][k]), float(zt["ZERR"][k]), str(zt["SPECTYPE"][k])
            if int(zt["ZWARN"][k]) & ~zwarn_ok:
                flag[i] = "zwarn"
            else:
                z[i], flag[i] = float(zt["Z"][k]), ""
    prefix = f"desi-{ident['survey']}-{ident['program']}-{ident['group']}"
    rec = SpectrumRecords(
        instrument=inst.name,
        object_id=[f"{prefix}-{int(t)}" for t in tid],
        survey=["DESI"] * n,
        z=z,
        z_err=zerr,
        zwarn=zwarn,
        z_flag=flag,
        spec_class=cls,
        flux=flux_c.astype(np.float32),
        ivar=ivar_c.astype(np.float32),
        mask=mask_c,
        source=[path.name] * n,
        resolution=None if res_c is None else res_c.astype(np.float32),
        extra={"fiberstatus": status, **ident["columns"]},
    )
    return rec.take(np.nonzero(keep)[0])


def _rows(hdu, sl: slice) -> np.ndarray:
    """Rows ``sl`` of an image HDU, reading only them where the HDU allows it."""
    if sl.start == 0 and sl.stop == hdu.shape[0]:
        return hdu.data
    try:
        return hdu.section[sl]
    except Exception:  # noqa: BLE001 - e.g. compressed HDUs: read whole, then slice
        return hdu.data[sl]


def _desi_identity(path: Path, primary, fm, sl: slice) -> dict:
    """Survey, program, HEALPix or tile/petal and target bits of a coadd (module docstring)."""
    fmh = fm.header
    cols = set(fm.columns.names)
    n = len(range(*sl.indices(int(fmh.get("NAXIS2", 0)))))

    def key(*names: str):
        for hdr in (primary, fmh):
            for k in names:
                if k in hdr and str(hdr[k]).strip():
                    return hdr[k]
        return None

    def col(name: str) -> np.ndarray:
        return np.asarray(fm.data[name][sl]).astype(np.int64) if name in cols else np.zeros(n, np.int64)

    sv = next((p for p in ("SV1", "SV2", "SV3") if any(f"{p}_{b}" in cols for b in DESI_TARGET_BITS)), "")
    survey = key("SURVEY") or (sv.lower() or "unknown")
    program = key("PROGRAM", "FAPRGRM") or "unknown"
    healpix = key("HPXPIXEL")
    tileid, petal = key("TILEID"), key("PETAL")
    if tileid is None and "TILEID" in cols and n:
        tileid = int(np.asarray(fm.data["TILEID"][sl])[0])
    if petal is None and "PETAL_LOC" in cols and n:
        petal = int(np.asarray(fm.data["PETAL_LOC"][sl])[0])
    if healpix is not None:
        group = str(int(healpix))
    elif tileid is not None:
        group = f"t{int(tileid)}p{int(petal) if petal is not None else -1}"
    else:  # neither HEALPix nor tile (e.g. a hand-made coadd): the file names the group
        group = path.name.split(".")[0].removeprefix("coadd-")
        log.warning("%s: no HPXPIXEL or TILEID in the headers; object ids use the file name %r", path, group)
    survey, program = str(survey).strip().lower(), str(program).strip().lower()
    columns = {
        "desi_survey": np.array([survey] * n, dtype=object),
        "desi_program": np.array([program] * n, dtype=object),
        "healpix": np.full(n, -1 if healpix is None else int(healpix), np.int64),
        "tileid": np.full(n, -1 if tileid is None else int(tileid), np.int64),
        "petal": np.full(n, -1 if petal is None else int(petal), np.int64),
        "targetid": col("TARGETID"),
        **{b.lower(): col(b) for b in DESI_TARGET_BITS},
        **{f"sv_{b.lower()}": col(f"{sv}_{b}") for b in DESI_TARGET_BITS},
        "sv_survey": np.array([sv.lower()] * n, dtype=object),
    }
    return {"survey": survey, "program": program, "group": group, "columns": columns}


def read_spectra(path: str | Path, instrument: str | Instrument | None = None, **desi_options) -> SpectrumRecords:
    """Read any supported survey file; the layout is detected from its HDUs.

    Well-formed SDSS/BOSS ``spec`` files are read with fitsio when it is installed (8x
    faster, ``benchmarks/io.py``); everything else, and every error message, goes through
    astropy.

    Args:
        path: A SDSS/BOSS ``spec``/``spPlate`` file or a DESI ``coadd`` file.
        instrument: Target grid for SDSS/BOSS files (default ``BOSS``, which contains
            the SDSS range); DESI files always use the DESI grid.
        desi_options: Passed to :func:`read_desi_coadd`.
    """
    path = Path(path)
    sdss_inst = get_instrument(instrument or "BOSS")
    if sdss_inst.name != "DESI" and path.name.lower().endswith((".fits", ".fits.gz", ".fit")):
        fast = _sdss_fitsio(path, sdss_inst)
        if fast is not None:
            return fast
    with _open(path) as hdul:
        names = [h.name.upper() for h in hdul]
        if not ("FIBERMAP" in names or any(n.endswith("_FLUX") for n in names)):
            return _read_sdss_open(path, hdul, sdss_inst)
        if instrument is not None and sdss_inst.name != "DESI":
            raise _err(path, "layout", f"a DESI coadd cannot be placed on the {sdss_inst.name} grid")
        return _read_desi_open(path, hdul, **desi_options)

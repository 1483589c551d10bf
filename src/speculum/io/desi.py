"""DESI coadds and their redshifts, onto the DESI grid.

* ``coadd-*.fits``: ``B/R/Z_WAVELENGTH``, ``_FLUX``, ``_IVAR``, ``_MASK``, ``_RESOLUTION`` and
  ``FIBERMAP``. The arms sit on the 0.8 A lattice of the DESI grid and are coadded onto it
  by inverse variance, as ``desispec.coaddition.coadd_cameras`` does, and so are the banded
  resolution matrices. Pixels no arm covers get ``ivar = 0`` and the ``NO_DATA`` bit;
  pixels whose arms are all masked get ``BAD``.
* Redshifts come from the matching ``redrock-*`` (HDU ``REDSHIFTS``) or ``zbest-*`` (HDU
  ``ZBEST``) file, matched by ``TARGETID``.

Object ids are unique across surveys, programs and coadds (``TARGETID`` alone repeats
between coadds)::

    desi-{survey}-{program}-{healpix}-{targetid}              HEALPix coadds (header HPXPIXEL)
    desi-{survey}-{program}-t{tileid}p{petal}{group}-{targetid}  tile coadds (header TILEID/PETAL)
    desi-{survey}-{program}-{file name}-{targetid}            neither (file name without ``coadd-``)

``{group}`` names the tile coadd's exposure group (header ``SPGRP``/``SPGRPVAL``, else the
file name ``coadd-PETAL-TILE-{thruNIGHT|NIGHT|expEXPID}``): empty for the ``cumulative``
coadd (one per tile and petal in a release), ``n{NIGHT}`` for ``pernight``, ``e{EXPID}``
for ``perexp`` and ``g{spgrp}{value}`` for any other group (letters and digits of
``SPGRP`` only), so that the cumulative, per-night and per-exposure coadds of one tile
never share an id.

``survey``/``program`` come from the PRIMARY (else FIBERMAP) header keywords ``SURVEY`` and
``PROGRAM`` (``FAPRGRM``); tile coadds without them take the survey from the ``SV1_``/
``SV2_``/``SV3_`` target columns, and ``unknown`` where nothing says. The parts are also
carried as columns (``desi_survey``, ``desi_program``, ``healpix``, ``tileid``, ``petal``,
``targetid``) together with the target bits (``desi_target``, ``bgs_target``,
``mws_target``, ``scnd_target``; the SV variants as ``sv_*_target`` with ``sv_survey``
naming which; 0 where a file has no such column).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from speculum.instruments import DESI, PixelMask
from speculum.io.prepare import pixel_weights
from speculum.io.records import (
    SpectrumRecords,
    check_flux_ivar,
    format_error,
    hdu_names,
    open_fits,
    table_column,
)

__all__ = ["read_desi_coadd", "read_redshift_table"]

log = logging.getLogger(__name__)

DESI_TARGET_BITS = ("DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET")
N_DIAGONALS = 11  # bands of a DESI resolution matrix
#: ``coadd-PETAL-TILE-thruNIGHT`` (cumulative), ``-NIGHT`` (pernight), ``-expEXPID`` (perexp)
TILE_FILE = re.compile(r"^coadd-(\d+)-(\d+)-(thru(\d+)|(\d+)|exp(\d+))$")


def read_redshift_table(path: str | Path) -> dict[str, np.ndarray]:
    """Redshifts of a redrock (HDU ``REDSHIFTS``) or zbest (HDU ``ZBEST``) file.

    Returns:
        ``TARGETID``, ``Z``, ``ZERR`` (NaN when the file has none), ``ZWARN`` and
        ``SPECTYPE`` (stripped strings, empty when the file has none), each ``(M,)``.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        names = hdu_names(hdul)
        hname = "REDSHIFTS" if "REDSHIFTS" in names else "ZBEST" if "ZBEST" in names else None
        if hname is None:
            raise format_error(path, "HDU REDSHIFTS", f"missing (and no ZBEST); HDUs: {names}")
        t = hdul[hname]
        out = {c: table_column(path, t, c, kind="i" if c != "Z" else "f") for c in ("TARGETID", "Z", "ZWARN")}
        out["ZERR"] = table_column(path, t, "ZERR") if "ZERR" in t.columns.names else np.full(len(out["Z"]), np.nan)
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

    Returns:
        :class:`~speculum.io.records.SpectrumRecords` on the DESI grid, ``flux`` ``(N, L)``.

    Only real targets (``OBJTYPE == 'TGT'``, when the column exists) are kept. Object ids
    and identity columns: see the module docstring.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        return read_desi_open(path, hdul, redshifts, fiberstatus_ok, zwarn_ok, keep_resolution, rows)


def read_desi_open(
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
    names = hdu_names(hdul)
    if "FIBERMAP" not in names:
        raise format_error(path, "HDU FIBERMAP", f"missing; HDUs: {names}")
    fm = hdul["FIBERMAP"]
    n_all = int(fm.header.get("NAXIS2", 0))
    lo, hi = (0, n_all) if rows is None else (max(0, int(rows[0])), min(n_all, int(rows[1])))
    if hi < lo:
        raise ValueError(f"rows: expected 0 <= start <= stop, got {rows}")
    sl = slice(lo, hi)
    tid = table_column(path, fm, "TARGETID", kind="i").astype(np.int64)[sl]
    status_col = "COADD_FIBERSTATUS" if "COADD_FIBERSTATUS" in fm.columns.names else "FIBERSTATUS"
    status = table_column(path, fm, status_col, kind="i").astype(np.int64)[sl]
    keep = (status & ~np.int64(fiberstatus_ok)) == 0
    if "OBJTYPE" in fm.columns.names:
        keep &= np.char.strip(np.asarray(fm.data["OBJTYPE"][sl]).astype(str)) == "TGT"
    ident = _desi_identity(path, hdul[0].header, fm, sl)
    sel = np.nonzero(keep)[0]
    n, length = len(tid), inst.n_pixels
    wsum = np.zeros((n, length))
    fsum = np.zeros((n, length))
    rsum = np.zeros((n, N_DIAGONALS, length)) if keep_resolution else None
    covered = np.zeros(length, bool)
    arms = [a for a in ("B", "R", "Z") if f"{a}_FLUX" in names]
    if not arms:
        raise format_error(path, "HDU B_FLUX/R_FLUX/Z_FLUX", f"no spectrograph arm found; HDUs: {names}")
    for arm in arms:
        for part in ("WAVELENGTH", "IVAR", "MASK") + (("RESOLUTION",) if keep_resolution else ()):
            if f"{arm}_{part}" not in names:
                raise format_error(path, f"HDU {arm}_{part}", "missing")
        wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, dtype=np.float64)
        where = f"HDU {arm}_FLUX/{arm}_IVAR"
        shapes = [hdul[f"{arm}_{k}"].shape for k in ("FLUX", "IVAR", "MASK")]
        if shapes[0] != (n_all, len(wave)) or shapes[1] != shapes[0] or shapes[2] != shapes[0]:
            shapes = "/".join(map(str, shapes))
            raise format_error(path, where, f"shapes {shapes} do not match {n_all} fibres x {len(wave)} px")
        flux = np.asarray(_rows(hdul[f"{arm}_FLUX"], sl), dtype=np.float64)
        ivar = np.asarray(_rows(hdul[f"{arm}_IVAR"], sl), dtype=np.float64)
        mask = np.asarray(_rows(hdul[f"{arm}_MASK"], sl))
        check_flux_ivar(path, where, flux[sel], ivar[sel])
        if np.any(np.diff(wave) <= 0):
            raise format_error(path, f"HDU {arm}_WAVELENGTH", "wavelengths not sorted")
        pos = (wave - inst.wave_start) / inst.step
        idx = np.round(pos).astype(int)
        if np.max(np.abs(pos - idx)) > 1e-3 or idx[0] < 0 or idx[-1] >= length:
            raise format_error(path, f"HDU {arm}_WAVELENGTH", "not on the DESI 0.8 A grid 3600-9824 A")
        # the checks above make flux finite wherever ivar > 0 in the kept rows
        w = pixel_weights(ivar, mask, dtype=np.float64)
        wsum[:, idx] += w
        fsum[:, idx] += w * np.nan_to_num(flux)
        covered[idx] = True
        if keep_resolution:
            rshape = hdul[f"{arm}_RESOLUTION"].shape
            if rshape != (n_all, N_DIAGONALS, len(wave)):
                expect = f"({n_all}, {N_DIAGONALS}, {len(wave)})"
                raise format_error(path, f"HDU {arm}_RESOLUTION", f"expected shape {expect}, got {rshape}")
            res = np.asarray(_rows(hdul[f"{arm}_RESOLUTION"], sl), dtype=np.float64)
            rsum[:, :, idx] += w[:, None, :] * res
    ivar_c = wsum
    flux_c = np.where(wsum > 0, fsum / np.where(wsum > 0, wsum, 1), 0.0)
    mask_c = np.where(covered, np.where(wsum > 0, 0, int(PixelMask.BAD)), int(PixelMask.NO_DATA)).astype(np.int32)
    mask_c[:, inst.sky_mask] |= int(PixelMask.SKY_LINE)
    res_c = None
    if keep_resolution:
        res_c = np.where(wsum[:, None, :] > 0, rsum / np.where(wsum > 0, wsum, 1)[:, None, :], 0.0)
        centre = np.zeros(N_DIAGONALS)
        centre[N_DIAGONALS // 2] = 1.0
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
    return rec.take(sel)


def _rows(hdu, sl: slice) -> np.ndarray:
    """Rows ``sl`` of an image HDU, reading only them where the HDU allows it."""
    if sl.start == 0 and sl.stop == hdu.shape[0]:
        return hdu.data
    try:
        return hdu.section[sl]
    except Exception:  # noqa: BLE001 - e.g. compressed HDUs: read whole, then slice
        return hdu.data[sl]


def coadd_group(path: Path, primary) -> str:
    """Exposure group of a tile coadd as it enters object ids (module docstring): ``""`` for
    ``cumulative``, ``n{NIGHT}``, ``e{EXPID}`` or ``g{spgrp}{value}``."""
    spgrp = str(primary.get("SPGRP", "")).strip().lower()
    value = str(primary.get("SPGRPVAL", "")).strip()
    if not spgrp:  # older files: the group is in the file name
        m = TILE_FILE.match(path.name.split(".")[0])
        if m is None:
            return ""
        spgrp, value = ("cumulative", m[4]) if m[4] else ("pernight", m[5]) if m[5] else ("perexp", m[6])
    if spgrp == "cumulative":
        return ""
    if spgrp == "pernight":
        return f"n{value}"
    if spgrp == "perexp":
        return f"e{int(value) if value.isdigit() else value}"
    return "g" + re.sub(r"[^0-9a-z]", "", spgrp) + re.sub(r"[^0-9A-Za-z]", "", value)


def _desi_identity(path: Path, primary, fm, sl: slice) -> dict:
    """Survey, program, HEALPix or tile/petal/group and target bits of a coadd (module docstring)."""
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
        group = f"t{int(tileid)}p{int(petal) if petal is not None else -1}{coadd_group(path, primary)}"
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

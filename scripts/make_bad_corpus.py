"""Generate the fuzz corpus ``tests/data/bad/``: malformed survey files, one problem each.

Every file starts from a valid file written with the exact survey schema (an SDSS
``spec`` file: PRIMARY, COADD table, SPECOBJ table; a DESI coadd: FIBERMAP and B/R/Z
image HDUs) and breaks one thing. ``tests/test_io_surveys.py`` checks the error each one
gives. Run: ``python scripts/make_bad_corpus.py [--out tests/data/bad]``.

``z_out_of_range.fits`` holds an *impossible* redshift (z = -0.5): ingest rejects it. A
redshift that is merely outside an instrument's model range is valid survey data and is
ingested (training and scoring skip it).

:func:`synthetic_desi_coadd` writes many-fibre DESI coadds with the real layout (used by
the tests and ``benchmarks/io.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

N_PIX = 400


def sdss_hdus(**overrides) -> fits.HDUList:
    """A small valid SDSS spec file (400 pixels from 3.6000 in log10 lambda)."""
    rng = np.random.default_rng(0)
    loglam = overrides.get("loglam", 3.6 + 1e-4 * np.arange(N_PIX))
    n = len(loglam)
    coadd = Table(
        {
            "flux": overrides.get("flux", (5 + rng.normal(0, 0.2, n)).astype(np.float32)),
            "loglam": np.asarray(loglam, dtype=np.float32),
            "ivar": overrides.get("ivar", np.full(n, 25.0, np.float32)),
            "and_mask": np.zeros(n, np.int32),
            "or_mask": np.zeros(n, np.int32),
            "wdisp": np.ones(n, np.float32),
            "sky": np.ones(n, np.float32),
            "model": np.full(n, 5.0, np.float32),
        }
    )
    for old, new in overrides.get("rename", {}).items():
        coadd.rename_column(old, new)
    for col in overrides.get("drop", ()):
        coadd.remove_column(col)
    specobj = Table(
        {
            "PLATE": [1000],
            "MJD": [52000],
            "FIBERID": [1],
            "CLASS": ["GALAXY"],
            "Z": [overrides.get("z", 0.1)],
            "Z_ERR": [1e-5],
            "ZWARNING": [0],
        }
    )
    hdus = [fits.PrimaryHDU(), fits.table_to_hdu(coadd), fits.table_to_hdu(specobj)]
    hdus[1].name, hdus[2].name = "COADD", "SPECOBJ"
    return fits.HDUList([h for i, h in enumerate(hdus) if i not in overrides.get("skip_hdus", ())])


def desi_hdus(fibermap: bool = True, bad_shape: bool = False) -> fits.HDUList:
    fm = Table({"TARGETID": [1, 2], "COADD_FIBERSTATUS": [0, 0], "OBJTYPE": ["TGT", "TGT"]})
    hdus = [fits.PrimaryHDU()]
    if fibermap:
        h = fits.table_to_hdu(fm)
        h.name = "FIBERMAP"
        hdus.append(h)
    for arm, (lo, n) in {"B": (3600.0, 100), "R": (5760.0, 100), "Z": (7520.0, 100)}.items():
        wave = lo + 0.8 * np.arange(n)
        nf = 3 if (bad_shape and arm == "R") else 2
        for name, data in (
            ("WAVELENGTH", wave),
            ("FLUX", np.ones((nf, n), np.float32)),
            ("IVAR", np.ones((2, n), np.float32)),
            ("MASK", np.zeros((2, n), np.int32)),
            ("RESOLUTION", np.ones((2, 11, n), np.float32) / 11),
        ):
            hdus.append(fits.ImageHDU(data, name=f"{arm}_{name}"))
    return fits.HDUList(hdus)


def synthetic_desi_coadd(
    template: Path, redrock: Path, out: Path, n_fibres: int, healpix: int, seed: int = 0
) -> tuple[Path, Path]:
    """A DESI HEALPix coadd of ``n_fibres`` fibres with the real file's layout, and its redrock file.

    Every HDU, column, dtype and header of ``template`` (a real ``coadd-*.fits``) and
    ``redrock`` (its ``redrock-*.fits``) is kept; the per-fibre rows (FIBERMAP, SCORES, the
    B/R/Z FLUX/IVAR/MASK/RESOLUTION images, REDSHIFTS, TSNR2) are the template's first fibre
    repeated, with new TARGETIDs, scaled noisy fluxes and redshifts ``0.05 + 0.4 k / n``;
    the header ``HPXPIXEL`` is ``healpix``. Writes ``coadd-main-dark-{healpix}.fits`` and
    ``redrock-main-dark-{healpix}.fits`` into ``out``; returns their paths.
    """
    rng = np.random.default_rng(seed)
    n = n_fibres
    tid = 39627000000000000 + healpix * 100000 + np.arange(n)

    def rep_table(hdu):
        data = np.repeat(hdu.data[:1], n)
        if "TARGETID" in hdu.columns.names:
            data["TARGETID"] = tid
        return fits.BinTableHDU(data, header=hdu.header, name=hdu.name)

    with fits.open(template) as src:
        hdus = []
        for h in src:
            hdr = h.header.copy()
            if h.name == "PRIMARY" or h.name == "FIBERMAP":
                for k, v in (("SURVEY", "main"), ("PROGRAM", "dark"), ("HPXPIXEL", healpix)):
                    hdr[k] = v
            if isinstance(h, fits.PrimaryHDU):
                hdus.append(fits.PrimaryHDU(header=hdr))
            elif h.name in ("FIBERMAP", "SCORES"):
                hdus.append(rep_table(h))
            elif h.name == "EXP_FIBERMAP":
                hdus.append(fits.BinTableHDU(h.data, header=hdr, name=h.name))
            elif h.name.endswith("_WAVELENGTH"):
                hdus.append(fits.ImageHDU(h.data, header=hdr, name=h.name))
            else:
                base = np.repeat(h.data[:1], n, axis=0)
                if h.name.endswith("_FLUX"):
                    scale = rng.uniform(0.5, 2.0, (n,) + (1,) * (base.ndim - 1))
                    base = (base * scale + rng.normal(0, 0.1, base.shape)).astype(h.data.dtype)
                hdus.append(fits.ImageHDU(base, header=hdr, name=h.name))
        coadd = out / f"coadd-main-dark-{healpix}.fits"
        fits.HDUList(hdus).writeto(coadd, overwrite=True)
    with fits.open(redrock) as src:
        hdus = [fits.PrimaryHDU(header=src[0].header.copy())]
        for k, v in (("SURVEY", "main"), ("PROGRAM", "dark"), ("HPXPIXEL", healpix)):
            hdus[0].header[k] = v
        for h in src[1:]:
            if h.name == "EXP_FIBERMAP":
                hdus.append(fits.BinTableHDU(h.data, header=h.header, name=h.name))
                continue
            t = rep_table(h)
            if h.name == "REDSHIFTS":
                t.data["Z"] = 0.05 + 0.4 * np.arange(n) / n
                t.data["ZWARN"] = 0
                t.data["SPECTYPE"] = "GALAXY"
            hdus.append(t)
        zfile = out / f"redrock-main-dark-{healpix}.fits"
        fits.HDUList(hdus).writeto(zfile, overwrite=True)
    return coadd, zfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/bad")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    good = out / "good-spec-1000-52000-0001.fits"
    sdss_hdus().writeto(good, overwrite=True)
    data = good.read_bytes()
    (out / "truncated.fits").write_bytes(data[: len(data) // 2])
    (out / "empty.fits").write_bytes(b"")
    (out / "not_fits.fits").write_text("object_id,flux\n1,2.0\nthis is a CSV file with a .fits name\n")
    sdss_hdus(skip_hdus=(1,)).writeto(out / "missing_hdu.fits", overwrite=True)
    sdss_hdus(drop=("ivar",)).writeto(out / "missing_column.fits", overwrite=True)
    sdss_hdus(rename={"flux": "FLUXX"}).writeto(out / "renamed_column.fits", overwrite=True)
    sdss_hdus(flux=np.array(["x"] * N_PIX)).writeto(out / "wrong_dtype.fits", overwrite=True)
    flux = np.full(N_PIX, 5.0, np.float32)
    flux[[10, 20]] = np.nan
    flux[30] = np.inf
    sdss_hdus(flux=flux).writeto(out / "nan_flux.fits", overwrite=True)
    ivar = np.full(N_PIX, 25.0, np.float32)
    ivar[5:8] = -1.0
    sdss_hdus(ivar=ivar).writeto(out / "negative_ivar.fits", overwrite=True)
    loglam = 3.6 + 1e-4 * np.arange(N_PIX)
    loglam[100:110] = loglam[100:110][::-1]
    sdss_hdus(loglam=loglam).writeto(out / "unsorted_wavelength.fits", overwrite=True)
    sdss_hdus(z=-0.5).writeto(out / "z_out_of_range.fits", overwrite=True)  # impossible, not just unmodelled
    # image layout (older BOSS) with an ivar HDU shorter than the flux HDU
    hdr = fits.Header({"COEFF0": 3.6, "COEFF1": 1e-4, "NAME": "1000-52000-02"})
    fits.HDUList(
        [
            fits.PrimaryHDU(np.ones(N_PIX, np.float32), header=hdr),
            fits.ImageHDU(np.ones(N_PIX - 7, np.float32)),
            fits.ImageHDU(3.6 + 1e-4 * np.arange(N_PIX)),
            fits.ImageHDU(np.ones(N_PIX, np.uint8)),
        ]
    ).writeto(out / "mismatched_lengths.fits", overwrite=True)
    desi_hdus(fibermap=False).writeto(out / "desi_missing_fibermap.fits", overwrite=True)
    desi_hdus(bad_shape=True).writeto(out / "desi_mismatched_shapes.fits", overwrite=True)
    print(f"wrote {len(list(out.glob('*.fits')))} files to {out}")


if __name__ == "__main__":
    main()

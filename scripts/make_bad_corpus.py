"""Generate the fuzz corpus ``tests/data/bad/``: malformed survey files, one problem each.

Every file starts from a valid file written with the exact survey schema (an SDSS
``spec`` file: PRIMARY, COADD table, SPECOBJ table; a DESI coadd: FIBERMAP and B/R/Z
image HDUs) and breaks one thing. ``tests/test_io_surveys.py`` checks the error each one
gives. Run: ``python scripts/make_bad_corpus.py [--out tests/data/bad]``.
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
    sdss_hdus(z=3.5).writeto(out / "z_out_of_range.fits", overwrite=True)
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

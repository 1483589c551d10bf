"""Build ``src/speculum/data/templates.npz``: the compact template set the simulator ships.

Sources (all in ``../shared/data``, see its PROVENANCE.tsv):

* BC03 simple stellar populations, 10 ages (5 Myr - 10 Gyr) x 4 metallicities
  (Z = 0.004, 0.008, 0.02, 0.05), 3326-9295 A at 1 A, FWHM 2.3 A, air wavelengths, as
  distributed with the MaNGA DAP (``sdss-mangadap==4.5.0``, ``bc03_mpajhu``).
  Bruzual & Charlot 2003, MNRAS 344, 1000.
* To cover the restframe range the surveys need (down to ~1900 A for z = 0.8 and up to
  10500 A), each SSP is continued beyond 3326 / 9295 A with the solar-metallicity BC03
  (MILES) SSP of the nearest age from ``chanter==0.1.7`` (``ssps_5.fits``), scaled to
  match the MaNGA-DAP SSP over the 60 A next to each join.
* MaStar hierarchically clustered stellar templates (``mastarhc_v2``, 65 real SDSS-IV
  stars, vacuum, log-lambda 1e-4 dex; Yan et al. 2019, ApJ 883, 175; Westfall et al.
  2019), for star + galaxy blends. A subset of 12 covering the spectral types is kept.
* The Calzetti et al. (2000, ApJ 533, 682, eq. 4) starburst attenuation curve
  k(lambda) = A(lambda)/E(B-V) with R_V = 4.05, evaluated on the template grid
  (``dust_extinction`` 1.7 does not ship this law, so its two published polynomials are
  written out in :func:`calzetti_k`).

Output grid: vacuum restframe, log10 spaced, 1e-4 dex (the SDSS lattice), 1800-10500 A.
Run: ``python scripts/make_templates.py [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from speculum.instruments import air_to_vacuum

LOG_START, LOG_STEP = np.log10(1800.0), 1e-4
N_PIX = int(np.ceil((np.log10(10500.0) - LOG_START) / LOG_STEP))
STAR_IDS = (0, 2, 6, 9, 13, 17, 22, 28, 35, 44, 52, 60)


def _join_window(wave, flux, ref_wave, ref_flux, lo, hi):
    sel = (wave > lo) & (wave < hi)
    rsel = (ref_wave > lo) & (ref_wave < hi)
    return np.median(flux[sel]) / np.median(ref_flux[rsel])


def calzetti_k(wave: np.ndarray, r_v: float = 4.05) -> np.ndarray:
    """Calzetti et al. (2000) eq. 4: A(lambda)/E(B-V) for wavelengths in Angstrom."""
    x = 1e4 / wave  # inverse micron
    blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + r_v
    red = 2.659 * (-1.857 + 1.040 * x) + r_v
    return np.where(wave < 6300.0, blue, red)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "src/speculum/data/templates.npz"
    )
    args = parser.parse_args()
    wave = 10 ** (LOG_START + LOG_STEP * np.arange(N_PIX))

    with fits.open(args.data / "sps/chanter_bc03/ssps_5_solarZ.fits") as hdul:
        grid = np.asarray(hdul[1].data, dtype=np.float64)
    ch_wave, ch_ages, ch_flux = grid[0, 1:], grid[1:, 0], grid[1:, 1:]

    ssp, ages, metals = [], [], []
    for path in sorted(glob.glob(str(args.data / "sps/bc03_mpajhu/BC03_z*_a*.fits"))):
        with fits.open(path) as hdul:
            hdr, flux = hdul[0].header, np.asarray(hdul[0].data, dtype=np.float64)
        w = hdr["CRVAL1"] + hdr["CDELT1"] * (np.arange(flux.size) + 1 - hdr["CRPIX1"])
        age_yr = hdr["AGE"] * 1e9
        ref = ch_flux[np.argmin(np.abs(np.log10(np.maximum(ch_ages, 1e5)) - np.log10(age_yr)))]
        blue = _join_window(w, flux, ch_wave, ref, w[0], w[0] + 60)
        red = _join_window(w, flux, ch_wave, ref, w[-1] - 60, w[-1])
        lo, hi = ch_wave < w[0], ch_wave > w[-1]
        full_w = np.concatenate([ch_wave[lo], w, ch_wave[hi]])
        full_f = np.concatenate([ref[lo] * blue, flux, ref[hi] * red])
        ssp.append(np.interp(wave, air_to_vacuum(full_w), full_f))
        ages.append(hdr["AGE"])
        metals.append(hdr["Z"])
    ssp = np.array(ssp)
    ssp /= np.median(ssp[:, (wave > 5300) & (wave < 5850)], axis=1).max()

    stars, star_names = [], []
    star_files = sorted(glob.glob(str(args.data / "stars/mastarhc_v2/MaStarHC_*.fits.gz")))
    for path in star_files:
        num = int(re.search(r"MaStarHC_(\d+)", path).group(1))
        if num not in STAR_IDS:
            continue
        with fits.open(path) as hdul:
            hdr, flux = hdul[0].header, np.asarray(hdul[0].data, dtype=np.float64)
        w = 10 ** (hdr["CRVAL1"] + hdr["CDELT1"] * (np.arange(flux.size) + 1 - hdr["CRPIX1"]))
        good = np.isfinite(flux) & (flux > 0)
        f = np.interp(wave, w[good], flux[good])  # constant beyond the ends (documented)
        stars.append(f / np.median(f[(wave > 5300) & (wave < 5850)]))
        star_names.append(Path(path).name.split(".")[0])

    k = calzetti_k(wave)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        log_start=LOG_START,
        log_step=LOG_STEP,
        ssp=ssp.astype(np.float32),
        ssp_age_gyr=np.array(ages),
        ssp_metallicity=np.array(metals),
        stars=np.array(stars, dtype=np.float32),
        star_names=np.array(star_names),
        calzetti_k=k.astype(np.float32),
        source=np.array(__doc__),
    )
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(ssp)} SSPs, {len(stars)} stars, {N_PIX} px")


if __name__ == "__main__":
    main()

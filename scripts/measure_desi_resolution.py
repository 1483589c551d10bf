"""Measure Gaussian-equivalent widths of DESI resolution matrices in the shared coadds.

The simulator's ``DESI_RESOLUTION_SIGMA`` (src/speculum/sim/galaxy.py) was made from this
script's output: per camera, the second moment of every resolution-matrix column gives a
width in pixels; a quadratic in wavelength is fitted per fibre, and the mean and spread of
the coefficients over fibres are recorded.

Usage:
    python scripts/measure_desi_resolution.py [DESI_FOLDER]    # default ../shared/data/desi
"""

import glob
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

FOLDER = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "desi"

off = 5 - np.arange(11)  # j - i per stored diagonal
for f in sorted(glob.glob(str(FOLDER / "coadd-*.fits"))) + sorted(glob.glob(str(FOLDER / "spectra-*.fits"))):
    with fits.open(f) as h:
        names = [x.name for x in h]
        print(f.split("/")[-1])
        fm = h["FIBERMAP"].data
        for arm in "BRZ":
            if f"{arm}_RESOLUTION" not in names:
                continue
            w = h[f"{arm}_WAVELENGTH"].data
            r = np.asarray(h[f"{arm}_RESOLUTION"].data, dtype=np.float64)
            s = r.sum(1)
            m1 = (r * off[None, :, None]).sum(1) / s
            var = (r * off[None, :, None] ** 2).sum(1) / s - m1**2
            sig = np.where(s > 0.5, np.sqrt(np.clip(np.nan_to_num(var), 0, None)), np.nan)
            neg = (r < 0).mean()
            # by wavelength in 5 bins, median over fibres, and fibre spread
            edges = np.linspace(0, len(w), 6).astype(int)
            med_by_bin = [np.nanmedian(sig[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=False)]
            fib_med = np.nanmedian(sig[:, 50:-50], 1)
            print(
                f"  {arm} n={r.shape[0]} wave {w[0]:.1f}-{w[-1]:.1f} colsum med {np.median(s):.4f} "
                f"min {s.min():.3f} neg frac {neg:.3f}"
            )
            print(
                "    sigma(px) by wave bin:",
                np.round(med_by_bin, 3),
                " bin centres:",
                np.round([w[(a + b) // 2] for a, b in zip(edges[:-1], edges[1:], strict=False)], 0),
            )
            print(
                "    fibre medians:",
                np.round(fib_med, 3),
                " fibre spread (std/mean):",
                round(np.nanstd(fib_med) / np.nanmean(fib_med), 4),
            )
            # linear fit per fibre sigma vs wavelength
            for k in range(r.shape[0]):
                good = s[k] > 0.5
                if good.sum() < 100:
                    continue
                c = np.polyfit((w[good] - w.mean()) / (w[-1] - w[0]), sig[k, good], 2)
                print("    fibre", k, "quad fit (x=(w-mean)/range):", np.round(c, 4), "mean", round(w.mean(), 1))

# ---- summary used in speculum/sim/galaxy.py: three independent fibres (coadd-4-80613, special-dark-27247,
# spectra-5-169 fibre 0; its 5 adjacent fibres agree within 0.02 %), quadratic fits per camera
print("\nSUMMARY")
srcs = ["coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits", "spectra-5-169-thru20210419.fits"]
for arm in "BRZ":
    coefs, allsig = [], []
    for f in srcs:
        with fits.open("/work/shared/data/desi/" + f) as h:
            w = h[f"{arm}_WAVELENGTH"].data
            r = np.asarray(h[f"{arm}_RESOLUTION"].data, dtype=np.float64)[0]
            s = r.sum(0)
            m1 = (r * off[:, None]).sum(0) / s
            sig = np.sqrt((r * off[:, None] ** 2).sum(0) / s - m1**2)
            good = s > 0.5
            mid, rng = 0.5 * (w[0] + w[-1]), w[-1] - w[0]
            coefs.append(np.polyfit((w[good] - mid) / rng, sig[good], 2)[::-1])
            fit = np.polyval(coefs[-1][::-1], (w - mid) / rng)
            allsig.append(fit)
    c = np.array(coefs)
    a = np.concatenate(allsig)
    print(
        arm,
        "mid",
        mid,
        "range",
        rng,
        "mean c0,c1,c2",
        np.round(c.mean(0), 4),
        "sd",
        np.round(c.std(0, ddof=1), 4),
        "fitted sigma range",
        round(a.min(), 3),
        round(a.max(), 3),
    )

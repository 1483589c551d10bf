"""speculum <-> specutils: conversions with hand-computed unit factors, a cross-check of our
SDSS/BOSS and DESI readers against specutils' own loaders on every real file, and the FITS
writer for reconstructed spectra read back with specutils' ``tabular-fits`` loader."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("specutils")
u = pytest.importorskip("astropy.units")
fits = pytest.importorskip("astropy.io.fits")

from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty  # noqa: E402
from specutils import SpectrumList  # noqa: E402

from speculum.instruments import BOSS, DESI, PixelMask, air_to_vacuum  # noqa: E402
from speculum.io import SpectrumRecords, read_desi_coadd, read_spectra  # noqa: E402
from speculum.io.interop import (  # noqa: E402
    FLUX_UNIT,
    from_specutils,
    records_to_specutils,
    spectrum_class,
    to_specutils,
    write_spectra_fits,
)
from speculum.io.sdss import BRIGHTSKY  # noqa: E402

Spectrum = spectrum_class()
C_ANGSTROM_PER_S = 2.99792458e18  # speed of light, exact


def _arrays(n: int = 3, length: int = 40, seed: int = 0):
    """``n <= 3`` spectra on a log-lambda grid with one masked pixel of each kind."""
    rng = np.random.default_rng(seed)
    wave = 10 ** (3.6 + 1e-4 * np.arange(length))
    flux = rng.normal(5.0, 2.0, (3, length))
    ivar = rng.uniform(0.1, 3.0, (3, length))
    mask = np.zeros((3, length), np.int32)
    mask[0, 3] = int(PixelMask.SKY_LINE)  # a sky-line pixel keeps its ivar > 0
    mask[1, 5] = int(PixelMask.BAD)
    ivar[1, 5] = 0.0
    mask[2, 7] = int(PixelMask.NO_DATA | PixelMask.SKY_LINE)
    ivar[2, 7] = 0.0
    ivar[2, 9] = 0.0  # ivar = 0 with mask 0: bad for specutils, mask kept as 0 by us
    return wave, flux[:n], ivar[:n], mask[:n]


# ------------------------------------------------------------------ item 1: conversions
def test_to_specutils_units_uncertainty_and_mask():
    wave, flux, ivar, mask = _arrays()
    spec = to_specutils(wave, flux, ivar, mask)
    assert spec.spectral_axis.unit == u.AA
    np.testing.assert_array_equal(spec.spectral_axis.value, wave)
    assert spec.flux.unit == u.Unit(FLUX_UNIT)
    # 1 speculum unit = 1e-17 erg s-1 cm-2 A-1 = 1e-17 * 1e-7 W * 1e4 m-2 * 1e4 um-1 = 1e-16 W m-2 um-1
    assert spec.flux.unit.to(u.W / u.m**2 / u.um) == pytest.approx(1e-16, rel=1e-12)
    assert isinstance(spec.uncertainty, InverseVariance)
    assert spec.uncertainty.unit == u.Unit(FLUX_UNIT) ** -2
    np.testing.assert_array_equal(spec.uncertainty.array, ivar)
    np.testing.assert_array_equal(spec.flux.value, flux)
    assert spec.mask.dtype == bool
    expected = np.zeros_like(mask, bool)
    expected[0, 3] = expected[1, 5] = expected[2, 7] = expected[2, 9] = True  # ivar == 0 or mask != 0
    np.testing.assert_array_equal(spec.mask, expected)
    # row slicing gives 1-D spectra with the same axis
    np.testing.assert_array_equal(spec[1].flux.value, flux[1])


@pytest.mark.parametrize("rows", [None, 1])
def test_round_trip_is_exact(rows):
    wave, flux, ivar, mask = _arrays()
    if rows is not None:
        flux, ivar, mask = flux[rows], ivar[rows], mask[rows]
    back = from_specutils(to_specutils(wave, flux, ivar, mask))
    np.testing.assert_allclose(back["wave"], wave, rtol=1e-12, atol=0)
    np.testing.assert_allclose(back["flux"], flux, rtol=1e-12, atol=0)
    np.testing.assert_allclose(back["ivar"], ivar, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(back["mask"], mask)  # bits kept (SKY_LINE with ivar > 0 included)
    assert back["mask"].dtype == np.int32


def test_round_trip_through_other_flux_unit():
    """Flux given in 1e-20 W m-2 um-1 (= 1e-4 of ours): the values come back scaled by 1e-4."""
    wave, flux, ivar, mask = _arrays()
    spec = to_specutils(wave, flux, ivar, mask, unit=u.Unit("1e-20 W / (m2 um)"))
    back = from_specutils(spec)
    np.testing.assert_allclose(back["flux"], flux * 1e-4, rtol=1e-12)
    np.testing.assert_allclose(back["ivar"], ivar * 1e8, rtol=1e-12)


def test_from_specutils_w_m2_um_and_nm_axis():
    wave_nm = np.array([400.0, 500.0, 600.0, 700.0])
    spec = Spectrum(
        flux=np.array([1.0, 2.0, 3.0, 4.0]) * u.W / u.m**2 / u.um,
        spectral_axis=wave_nm * u.nm,
        uncertainty=StdDevUncertainty(np.full(4, 0.5) * u.W / u.m**2 / u.um),
    )
    out = from_specutils(spec)
    np.testing.assert_allclose(out["wave"], [4000.0, 5000.0, 6000.0, 7000.0], rtol=1e-15)
    # 1 W m-2 um-1 = 1e7 erg s-1 / 1e4 cm2 / 1e4 A = 1e-1 erg s-1 cm-2 A-1 = 1e16 speculum units
    np.testing.assert_allclose(out["flux"], [1e16, 2e16, 3e16, 4e16], rtol=1e-12)
    np.testing.assert_allclose(out["ivar"], 1 / (0.5e16) ** 2, rtol=1e-12)
    np.testing.assert_array_equal(out["mask"], 0)


def test_from_specutils_jansky_on_frequency_axis():
    """F_lambda = F_nu c / lambda^2: 1 Jy at lambda [A] = 1e-23 * c / lambda^2 / 1e-17 = 2.99792458e12 / lambda^2."""
    lam = np.array([4000.0, 5000.0, 8000.0])
    nu = C_ANGSTROM_PER_S / lam  # decreasing; give the axis increasing in frequency
    spec = Spectrum(
        flux=np.array([3.0, 2.0, 1.0])[::-1] * u.Jy,
        spectral_axis=nu[::-1] * u.Hz,
        uncertainty=VarianceUncertainty(np.array([4.0, 1.0, 0.25])[::-1] * u.Jy**2),
    )
    out = from_specutils(spec)
    np.testing.assert_allclose(out["wave"], lam, rtol=1e-12)  # reversed to increasing wavelength
    factor = 2.99792458e12 / lam**2  # 187370.286..., 119916.98, 46842.57 at 4000, 5000, 8000 A
    assert factor[1] == pytest.approx(119916.9832, rel=1e-9)
    np.testing.assert_allclose(out["flux"], np.array([3.0, 2.0, 1.0]) * factor, rtol=1e-10)
    np.testing.assert_allclose(out["ivar"], 1 / (np.array([4.0, 1.0, 0.25]) * factor**2), rtol=1e-10)


def test_from_specutils_foreign_mask_and_invalid_pixels():
    """A spectrum not made by speculum: True-mask, NaN flux, zero/NaN sigma all become BAD with ivar 0."""
    flux = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    sigma = np.array([1.0, 1.0, 0.0, np.nan, 2.0, 0.5])
    spec = Spectrum(
        flux=flux * u.Unit(FLUX_UNIT),
        spectral_axis=np.arange(4000.0, 4006.0) * u.AA,
        uncertainty=StdDevUncertainty(sigma),  # no unit: taken to be the flux unit
        mask=np.array([False, False, False, False, True, False]),
    )
    out = from_specutils(spec)
    np.testing.assert_array_equal(out["mask"], [0, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(out["ivar"], [1.0, 0.0, 0.0, 0.0, 0.0, 4.0], rtol=1e-12)
    np.testing.assert_allclose(out["flux"], [1.0, 0.0, 3.0, 4.0, 5.0, 6.0])


def test_from_specutils_ignores_stale_meta_mask(caplog):
    wave, flux, ivar, mask = _arrays(n=1)
    spec = to_specutils(wave, flux[0], ivar[0], mask[0])
    spec.mask[20] = True  # edited by the user after conversion: spectrum.mask wins
    with caplog.at_level("WARNING"):
        out = from_specutils(spec)
    assert "speculum_mask" in caplog.text
    assert out["mask"][20] == int(PixelMask.BAD) and out["ivar"][20] == 0
    assert out["mask"][3] == int(PixelMask.BAD)  # SKY_LINE degraded to a plain bad pixel


def test_from_specutils_air_wavelengths():
    """H-alpha: 6562.80 A in air is 6564.61 A in vacuum (Morton 1991)."""
    kw = dict(flux=np.ones(3) * u.Unit(FLUX_UNIT), uncertainty=InverseVariance(np.ones(3)))
    air = np.array([6560.0, 6562.80, 6565.0])
    vac = from_specutils(Spectrum(spectral_axis=air * u.AA, meta={"AIRORVAC": "air"}, **kw))["wave"]
    assert vac[1] == pytest.approx(6564.61, abs=0.01)
    np.testing.assert_allclose(vac, air_to_vacuum(air), rtol=1e-14)
    sdss_like = Spectrum(spectral_axis=air * u.AA, meta={"header": fits.Header({"VACUUM": False})}, **kw)
    np.testing.assert_allclose(from_specutils(sdss_like)["wave"], air_to_vacuum(air), rtol=1e-14)
    # default: vacuum, unchanged; an explicit medium overrides the metadata
    np.testing.assert_array_equal(from_specutils(Spectrum(spectral_axis=air * u.AA, **kw))["wave"], air)
    np.testing.assert_array_equal(
        from_specutils(Spectrum(spectral_axis=air * u.AA, meta={"AIRORVAC": "air"}, **kw), medium="vacuum")["wave"],
        air,
    )


def test_bad_input_is_named():
    wave, flux, ivar, mask = _arrays()
    with pytest.raises(ValueError, match=r"ivar: expected the shape of flux \(3, 40\), got \(3, 39\)"):
        to_specutils(wave, flux, ivar[:, 1:], mask)
    with pytest.raises(ValueError, match="wave: wavelengths not strictly increasing"):
        to_specutils(wave[::-1], flux, ivar, mask)
    with pytest.raises(ValueError, match="unit: expected a flux density per wavelength"):
        to_specutils(wave, flux, ivar, mask, unit="Jy")
    with pytest.raises(ValueError, match="ivar: expected finite values >= 0"):
        to_specutils(wave, flux, -ivar, mask)
    nounc = Spectrum(flux=np.ones(3) * u.Jy, spectral_axis=[1.0, 2.0, 3.0] * u.um)
    with pytest.raises(ValueError, match="spectrum.uncertainty: missing"):
        from_specutils(nounc)
    counts = Spectrum(
        flux=np.ones(3) * u.ct, spectral_axis=[1.0, 2.0, 3.0] * u.um, uncertainty=InverseVariance(np.ones(3))
    )
    with pytest.raises(ValueError, match="spectrum.flux: unit ct cannot be converted"):
        from_specutils(counts)


def _records(n: int = 2) -> SpectrumRecords:
    rng = np.random.default_rng(3)
    length = BOSS.n_pixels
    return SpectrumRecords(
        instrument="BOSS",
        object_id=[f"obj{i}" for i in range(n)],
        survey=["BOSS"] * n,
        z=np.array([0.1, np.nan])[:n],
        z_err=np.full(n, 1e-4),
        zwarn=np.zeros(n, np.int64),
        z_flag=["", "zwarn"][:n],
        spec_class=["GALAXY"] * n,
        flux=rng.normal(size=(n, length)).astype(np.float32),
        ivar=rng.uniform(0.5, 1.0, (n, length)).astype(np.float32),
        mask=np.where(BOSS.sky_mask, int(PixelMask.SKY_LINE), 0)[None].repeat(n, 0).astype(np.int32),
        source=["file.fits"] * n,
    )


def test_records_to_specutils_2d_and_list():
    rec = _records()
    spec = records_to_specutils(rec)
    assert spec.flux.shape == (2, BOSS.n_pixels)
    np.testing.assert_array_equal(spec.spectral_axis.value, BOSS.wave_obs)
    assert spec.meta["object_id"] == ["obj0", "obj1"] and spec.meta["instrument"] == "BOSS"
    assert spec.mask.sum() == 2 * BOSS.sky_mask.sum()
    back = from_specutils(spec)
    np.testing.assert_array_equal(back["flux"], rec.flux)
    np.testing.assert_array_equal(back["mask"], rec.mask)
    specs = records_to_specutils(rec, as_list=True)
    assert len(specs) == 2 and specs[1].meta["object_id"] == "obj1" and specs[1].meta["z_flag"] == "zwarn"
    np.testing.assert_array_equal(specs[1].flux.value, rec.flux[1])


# ------------------------------------------------------------------ item 2: cross-check on real files
def test_sdss_reader_matches_specutils_loader(shared_data: Path):
    """Every SDSS/BOSS spec file: our reader (on the BOSS lattice) vs specutils' "SDSS-III/IV spec".

    Differences, all explained and asserted:
    * wavelengths agree to 1e-6 relative, not exactly: specutils computes ``10 ** loglam`` in
      float32 (the file's ``loglam`` is float32: 2.4e-7 dex rounding = 5.5e-7 in lambda),
      our grid is the exact float64 lattice ``10 ** (3.549 + 1e-4 k)``;
    * specutils keeps the file's ivar and masks ``and_mask != 0``; we set ivar = 0 and BAD
      only for ivar <= 0 and the bits SDSS calls bad (NOPLUG, BADTRACE, BADFLAT, BADARC,
      FULLREJECT, NOSKY, COMBINEREJ: ``SDSS_BAD_BITS``), mark sky trouble (BRIGHTSKY,
      BADSKYCHI, REDMONSTER) SKY_LINE and keep informational bits (MANYBADCOLUMNS,
      NEARBADPIXEL, ...) usable with their ivar, so those pixels are masked by specutils only.
    """
    files = sorted((shared_data / "sdss_boss" / "spec").glob("*.fits"))
    files += sorted((shared_data / "sdss_boss" / "rm017_multiepoch").glob("*.fits"))
    assert len(files) == 22
    compared = 0
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = Spectrum.read(path, format="SDSS-III/IV spec")
        with fits.open(path) as hdul:
            and_mask = np.asarray(hdul[1].data["and_mask"]).astype(np.int64)
        rec = read_spectra(path)  # BOSS grid
        sw = spec.spectral_axis.to_value(u.AA).astype(np.float64)
        k = np.round((np.log10(sw) - BOSS.wave_start) / BOSS.step).astype(int)
        assert k[0] >= 0 and k[-1] < BOSS.n_pixels and np.all(np.diff(k) == 1), path.name
        np.testing.assert_allclose(BOSS.wave_obs[k], sw, rtol=1e-6, err_msg=path.name)
        f, iv, smask = spec.flux.value, spec.uncertainty.array, np.asarray(spec.mask)
        of, oi, om = rec.flux[0, k], rec.ivar[0, k], rec.mask[0, k]
        assert spec.flux.unit == u.Unit(FLUX_UNIT)
        np.testing.assert_array_equal(of, f.astype(np.float32), err_msg=path.name)  # same pixels, same flux
        ours_bad = (om & PixelMask.BAD) != 0
        bad_bits = sum(1 << b for b in (0, 1, 2, 3, 18, 22, 25))
        np.testing.assert_array_equal(ours_bad, ((and_mask & bad_bits) != 0) | (iv <= 0), err_msg=path.name)
        np.testing.assert_array_equal(oi[~ours_bad], iv[~ours_bad].astype(np.float32), err_msg=path.name)
        assert np.all(oi[ours_bad] == 0), path.name
        np.testing.assert_array_equal(smask, and_mask != 0, err_msg=path.name)
        only_specutils = smask & ~ours_bad  # masked there; SKY_LINE or usable here
        assert np.all((and_mask[only_specutils] & bad_bits) == 0), path.name
        sky_trouble = only_specutils & ((and_mask & (BRIGHTSKY | (1 << 27) | (1 << 28))) != 0)
        assert np.all(om[sky_trouble] & PixelMask.SKY_LINE), path.name
        # pixels outside the file are NO_DATA with ivar 0
        outside = np.setdiff1d(np.arange(BOSS.n_pixels), k)
        assert np.all(rec.mask[0, outside] & PixelMask.NO_DATA) and np.all(rec.ivar[0, outside] == 0)
        # and from_specutils of specutils' own spectrum agrees with our reader on good pixels
        back = from_specutils(spec)
        good = ~ours_bad & ~smask
        np.testing.assert_allclose(back["flux"][good], of[good], rtol=1e-6, err_msg=path.name)
        np.testing.assert_allclose(back["ivar"][good], oi[good], rtol=1e-6, err_msg=path.name)
        compared += 1
    assert compared == 22


def test_desi_reader_matches_specutils_loader(shared_data: Path):
    """Every DESI coadd: our arm coadd vs specutils' "DESI coadd" per-arm spectra.

    Single-arm pixels (7604 of 7781) equal specutils' arm exactly (float32); the 177
    B/R and R/Z overlap pixels equal the ivar-weighted mean of the arms with weight
    ``ivar * (mask == 0)`` to float32 rounding; our ivar is the sum of those weights; a pixel
    is BAD exactly where that sum is 0 (specutils keeps ivar at masked pixels, we do not).
    Both target fibres of coadd-5-169 are compared (``fiberstatus_ok=-1``: the one with
    COADD_FIBERSTATUS 512 has ivar = 0 everywhere and is all BAD); non-targets are dropped.
    """
    files = sorted((shared_data / "desi").glob("coadd-*.fits"))
    assert len(files) == 3
    n_rows = 0
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sl = SpectrumList.read(path, format="DESI coadd")
        assert [s.meta["band"] for s in sl] == ["b", "r", "z"]
        rec = read_desi_coadd(path, fiberstatus_ok=-1, keep_resolution=False)
        fibermap = sl[0].meta["fibermap"]
        tids = [int(t) for t in fibermap["TARGETID"]]
        # the TARGETID ends the object id ("39633345008634465" or "desi-sv1-...-t80613p4-39633345008634465")
        rows = [tids.index(int(o.rsplit("-", 1)[-1])) for o in rec.object_id]
        assert all(str(fibermap["OBJTYPE"][r]).strip() == "TGT" for r in rows)
        wsum = np.zeros((len(rows), DESI.n_pixels))
        fsum = np.zeros_like(wsum)
        cover = np.zeros(DESI.n_pixels, int)
        for s in sl:
            sw = s.spectral_axis.to_value(u.AA)
            idx = np.round((sw - 3600.0) / 0.8).astype(int)
            np.testing.assert_allclose(
                DESI.wave_obs[idx], sw, rtol=0, atol=1e-8, err_msg=f"{path.name} {s.meta['band']}"
            )
            f = s.flux.to_value(FLUX_UNIT)[rows].astype(np.float64)
            w = np.where(~np.asarray(s.mask)[rows] & np.isfinite(f), s.uncertainty.array[rows], 0.0)
            wsum[:, idx] += w
            fsum[:, idx] += w * np.nan_to_num(f)
            cover[idx] += 1
        assert np.all(cover >= 1)
        single, overlap = cover == 1, cover == 2
        assert single.sum() == 7604 and overlap.sum() == 177
        mean = np.where(wsum > 0, fsum / np.where(wsum > 0, wsum, 1.0), 0.0)
        np.testing.assert_array_equal(rec.flux[:, single], mean[:, single].astype(np.float32), err_msg=path.name)
        np.testing.assert_allclose(rec.flux[:, overlap], mean[:, overlap], rtol=2e-7, atol=1e-6, err_msg=path.name)
        np.testing.assert_array_equal(rec.ivar, wsum.astype(np.float32), err_msg=path.name)
        np.testing.assert_array_equal((rec.mask & PixelMask.BAD) != 0, wsum == 0, err_msg=path.name)
        n_rows += len(rows)
    assert n_rows == 4  # 1 + 2 + 1 targets


# ------------------------------------------------------------------ item 3: FITS writer
def _reconstruction(n: int = 3, seed: int = 1):
    wave, flux, ivar, mask = _arrays(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    model = flux + rng.normal(0, 0.1, flux.shape)
    rwave = np.linspace(3000.0, 8000.0, 25)
    rmodel = rng.normal(size=(n, 25))
    return wave, flux, model, ivar, mask, rwave, rmodel


def test_write_spectra_fits_round_trip_with_specutils(tmp_path):
    wave, flux, model, ivar, mask, rwave, rmodel = _reconstruction()
    path = write_spectra_fits(
        tmp_path / "rec.fits",
        wave,
        flux,
        model,
        ivar,
        mask,
        rwave,
        rmodel,
        ["a", "bb", "ccc"],
        meta={"model": "spender-sdss", "n_latent": 10, "z": np.array([0.1, 0.2, 0.3])},
        dtype=np.float64,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Standard Deviation has values of 0 or less" etc.
        spec = Spectrum.read(path, format="tabular-fits")
        rest = Spectrum.read(path, format="tabular-fits", hdu=2)
    np.testing.assert_array_equal(spec.spectral_axis.to_value(u.AA), wave)
    assert spec.flux.unit == u.Unit(FLUX_UNIT)
    np.testing.assert_array_equal(spec.flux.value, flux)
    assert isinstance(spec.uncertainty, StdDevUncertainty)
    ivar_back = spec.uncertainty.represent_as(InverseVariance).array
    np.testing.assert_allclose(ivar_back, ivar, rtol=1e-12, atol=0)
    expected_mask = np.where((ivar == 0) & (mask == 0), int(PixelMask.BAD), mask)
    np.testing.assert_array_equal(spec.mask, expected_mask)  # nonzero = bad, as in NDData
    np.testing.assert_array_equal(from_specutils(spec)["flux"], flux)
    np.testing.assert_array_equal(rest.spectral_axis.to_value(u.AA), rwave)
    np.testing.assert_array_equal(rest.flux.value, rmodel)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SPECTRA", "RESTFRAME", "OBJECTS"]
        assert u.Unit(hdul["SPECTRA"].header["BUNIT"], format="fits") == u.Unit(FLUX_UNIT)
        assert u.Unit(hdul["RESTFRAME"].header["BUNIT"], format="fits") == u.Unit(FLUX_UNIT)
        tab = hdul["SPECTRA"].data
        np.testing.assert_array_equal(tab["model"].T, model)
        np.testing.assert_array_equal(tab["ivar"].T, ivar)
        assert hdul[0].header["MODEL"] == "spender-sdss" and hdul[0].header["N_LATENT"] == 10
        assert hdul[0].header["NSPEC"] == 3 and hdul["SPECTRA"].header["AIRORVAC"] == "vac"
        assert list(hdul["OBJECTS"].data["object_id"]) == ["a", "bb", "ccc"]
        np.testing.assert_array_equal(hdul["OBJECTS"].data["z"], [0.1, 0.2, 0.3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.fits"]  # no temporary file left


def test_write_spectra_fits_float32_default(tmp_path):
    wave, flux, model, ivar, mask, rwave, rmodel = _reconstruction(n=2)
    path = write_spectra_fits(tmp_path / "r.fits", wave, flux, model, ivar, mask, rwave, rmodel, ["x", "y"])
    spec = Spectrum.read(path, format="tabular-fits")
    np.testing.assert_allclose(spec.flux.value, flux, rtol=1e-7)  # float32 storage
    np.testing.assert_array_equal(spec.spectral_axis.to_value(u.AA), wave)  # wavelengths stay float64


def test_write_spectra_fits_single_spectrum(tmp_path):
    wave, flux, model, ivar, mask, rwave, rmodel = _reconstruction(n=2)
    path = write_spectra_fits(
        tmp_path / "one.fits", wave, flux[1:], model[1:], ivar[1:], mask[1:], rwave, rmodel[1:], ["y"]
    )
    spec = Spectrum.read(path, format="tabular-fits")
    assert spec.flux.shape == (40,)
    np.testing.assert_array_equal(np.asarray(spec.mask) != 0, (ivar[1] == 0) | (mask[1] != 0))
    np.testing.assert_allclose(spec.flux.value, flux[1], rtol=1e-7)


def test_write_spectra_fits_is_atomic(tmp_path, monkeypatch):
    wave, flux, model, ivar, mask, rwave, rmodel = _reconstruction(n=2)
    path = tmp_path / "r.fits"
    path.write_bytes(b"previous result")

    def broken(self, name, *args, **kwargs):
        Path(name).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", broken)
    with pytest.raises(OSError, match="disk full"):
        write_spectra_fits(path, wave, flux, model, ivar, mask, rwave, rmodel, ["x", "y"])
    assert path.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.fits"]


def test_write_spectra_fits_bad_input(tmp_path):
    wave, flux, model, ivar, mask, rwave, rmodel = _reconstruction(n=2)
    args = [wave, flux, model, ivar, mask, rwave, rmodel, ["x", "y"]]
    with pytest.raises(ValueError, match=r"model: expected shape \(N, L\) = \(2, 40\), got \(2, 39\)"):
        write_spectra_fits(tmp_path / "r.fits", *args[:2], model[:, 1:], *args[3:])
    with pytest.raises(ValueError, match=r"restframe_model: expected shape \(N, Lr\) = \(2, 25\)"):
        write_spectra_fits(tmp_path / "r.fits", *args[:6], rmodel[:1], args[7])
    with pytest.raises(ValueError, match="object_id: expected 2 identifiers"):
        write_spectra_fits(tmp_path / "r.fits", *args[:7], ["x"])
    with pytest.raises(ValueError, match=r"meta\['z'\]: expected a scalar or a sequence of length N = 2"):
        write_spectra_fits(tmp_path / "r.fits", *args, meta={"z": [0.1, 0.2, 0.3]})
    assert not any(tmp_path.iterdir())

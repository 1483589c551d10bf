import dataclasses

import numpy as np
import pytest

from speculum.instruments import BOSS, DESI, SDSS, air_to_vacuum, get_instrument


def test_published_grids():
    assert SDSS.n_pixels == 3921 and BOSS.n_pixels == 4686 and DESI.n_pixels == 7781
    assert SDSS.wave_obs[0] == pytest.approx(3784.43, abs=0.01)
    assert SDSS.wave_obs[-1] == pytest.approx(9332.5, abs=0.1)
    assert BOSS.wave_obs[0] == pytest.approx(3539.97, abs=0.01)
    assert DESI.wave_obs[0] == 3600.0 and DESI.wave_obs[-1] == pytest.approx(9824.0, abs=1e-9)
    assert np.allclose(np.diff(DESI.wave_obs), 0.8)
    assert np.allclose(np.diff(np.log10(SDSS.wave_obs)), 1e-4)


def test_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SDSS.n_pixels = 10
    with pytest.raises(ValueError):
        SDSS.wave_obs[0] = 1.0


def test_air_to_vacuum_halpha():
    # H-alpha: 6562.80 A in air is 6564.61 A in vacuum
    assert air_to_vacuum(6562.80) == pytest.approx(6564.61, abs=0.02)


def test_sky_mask_covers_oi_5577():
    pix = SDSS.pixel_of(float(air_to_vacuum(5577.34)))
    assert SDSS.sky_mask[pix] and SDSS.sky_mask[pix - 1] and SDSS.sky_mask[pix + 1]
    assert 0.01 < SDSS.sky_mask.mean() < 0.2


def test_get_instrument_error():
    assert get_instrument("desi") is DESI
    with pytest.raises(ValueError, match="instrument: expected one of"):
        get_instrument("HARPS")


@pytest.mark.parametrize(
    "name, inst",
    [("spec-0266-51602-0013.fits", SDSS), ("spec-3586-55181-0500.fits", BOSS)],
)
def test_grid_matches_real_files(shared_data, name, inst):
    fits = pytest.importorskip("astropy.io.fits")
    with fits.open(shared_data / "sdss_boss" / "spec" / name) as hdul:
        loglam = np.asarray(hdul[1].data["loglam"], dtype=np.float64)
    start = int(round((loglam[0] - inst.wave_start) / inst.step))
    grid = np.log10(inst.wave_obs[start : start + len(loglam)])
    assert np.abs(grid - loglam).max() < 2e-6  # loglam is stored in float32


def test_desi_grid_matches_coadd(shared_data):
    fits = pytest.importorskip("astropy.io.fits")
    with fits.open(shared_data / "desi" / "coadd-4-80613-thru20210324.fits") as hdul:
        waves = [np.asarray(hdul[f"{arm}_WAVELENGTH"].data, dtype=np.float64) for arm in "BRZ"]
    for wave in waves:
        start = int(round((wave[0] - DESI.wave_start) / DESI.step))
        assert np.abs(DESI.wave_obs[start : start + len(wave)] - wave).max() < 1e-6
    assert waves[0][0] == DESI.wave_obs[0] and waves[-1][-1] == pytest.approx(DESI.wave_obs[-1])


def test_float32_redshift_at_the_range_edge_is_accepted():
    """0.8 in float32 is 0.800000012: the edge of the BOSS/DESI range must still pass."""
    import torch

    from speculum.instruments import DESI

    DESI.check_redshift(torch.tensor([0.8], dtype=torch.float32))
    with pytest.raises(ValueError, match="DESI range"):
        DESI.check_redshift(torch.tensor([0.801], dtype=torch.float32))

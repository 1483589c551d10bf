"""Survey readers, ingest, streaming and result tables: real files, exact-schema synthetic files, fuzz corpus."""

import csv
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speculum.instruments import BOSS, DESI, SDSS, PixelMask
from speculum.io import (
    DataFormatError,
    IngestConfig,
    ShardStream,
    SpectraSet,
    SpectrumFormatError,
    ingest,
    read_desi_coadd,
    read_redshift_table,
    read_sdss_spec,
    read_spectra,
    write_results,
)
from speculum.io.sdss import BRIGHTSKY

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "data" / "bad"
sys.path.insert(0, str(ROOT / "scripts"))


# ---------------------------------------------------------------- real SDSS / BOSS files
def _index(shared):
    with open(shared / "sdss_boss" / "spectra_index.csv") as fh:
        return list(csv.DictReader(fh))


def test_sdss_reader_reproduces_published_values(shared_data):
    from astropy.io import fits

    checked = n_info = 0
    for row in _index(shared_data):
        path = shared_data / row["file"]
        rec = read_sdss_spec(path, "BOSS")
        assert len(rec) == 1 and rec.spec_class[0] == row["cls"]
        if int(row["zwarning"]) == 0:
            assert rec.z[0] == pytest.approx(float(row["z"]), abs=1e-6)
        else:
            assert np.isnan(rec.z[0]) and rec.z_flag[0] == "zwarn" and rec.zwarn[0] == int(row["zwarning"])
        with fits.open(path) as hdul:
            c = hdul["COADD"].data
            flux, loglam, ivar, am = (np.asarray(c[k]) for k in ("flux", "loglam", "ivar", "and_mask"))
        off = int(round((loglam[0] - BOSS.wave_start) / BOSS.step))
        # flux at given pixels, exactly (an offset, not an interpolation)
        for k in (0, len(flux) // 2, len(flux) - 1):
            assert rec.flux[0, k + off] == np.float32(flux[k])
        # wavelength of the placed pixel equals the file's, to float32 precision of loglam
        assert BOSS.wave_obs[off] == pytest.approx(10 ** float(loglam[0]), rel=1e-6)
        # masked pixels expected from the bitmask, as SDSS recommends (SPPIXMASK docs): ivar <= 0, or
        # NOPLUG, BADTRACE, BADFLAT, BADARC (bits 0-3), FULLREJECT (18), NOSKY (22), COMBINEREJ (25)
        bad_bits = sum(1 << b for b in (0, 1, 2, 3, 18, 22, 25))
        expect_bad = ((am & bad_bits) != 0) | (ivar <= 0)
        got_bad = (rec.mask[0, off : off + len(flux)] & PixelMask.BAD) != 0
        np.testing.assert_array_equal(got_bad, expect_bad, err_msg=path.name)
        assert int(((rec.mask[0] & PixelMask.BAD) != 0).sum()) == int(expect_bad.sum()), path.name
        # sky trouble (BRIGHTSKY, BADSKYCHI, REDMONSTER) is SKY_LINE; informational bits
        # (MANYBADCOLUMNS on half a spectrum, NEARBADPIXEL, ...) leave good pixels usable
        sky = (am & (BRIGHTSKY | (1 << 27) | (1 << 28))) != 0
        assert np.all(rec.mask[0, off : off + len(flux)][sky] & PixelMask.SKY_LINE), path.name
        informational = (am != 0) & ~expect_bad & ~sky & (ivar > 0)
        placed_ivar = rec.ivar[0, off : off + len(flux)]
        np.testing.assert_array_equal(placed_ivar[informational], ivar[informational].astype(np.float32))
        n_info += int(informational.sum())
        assert int((rec.mask[0] & PixelMask.NO_DATA != 0).sum()) == BOSS.n_pixels - len(flux)
        assert np.all(rec.ivar[0][(rec.mask[0] & PixelMask.BAD) != 0] == 0)
        checked += 1
    assert checked == 22
    assert n_info > 5000  # MANYBADCOLUMNS alone marks ~1,800 pixels in each of three files


def test_sdss_layout_variants(shared_data):
    spall = read_sdss_spec(shared_data / "sdss_boss/spec/spec-3586-55181-0500.fits", "BOSS")  # SPALL table
    assert spall.object_id == ["3586-55181-0500"] and spall.spec_class == ["STAR"]
    objid = read_sdss_spec(shared_data / "sdss_boss/spec/1237652899686318136.fits", "SDSS")  # named by object id
    assert objid.object_id == ["0665-52168-0284"] and objid.flux.shape == (1, SDSS.n_pixels)
    image = read_sdss_spec(shared_data / "sdss_boss/other_formats/SDSSJ220248.31+123656.3.fits", "BOSS")
    assert image.object_id == ["5063-55831-01"] and image.z_flag == ["no_redshift"]
    from astropy.io import fits

    good_hdu = fits.getdata(shared_data / "sdss_boss/other_formats/SDSSJ220248.31+123656.3.fits", 3)
    assert int((image.mask[0] & PixelMask.BAD != 0).sum()) == int((good_hdu == 0).sum())  # HDU 3 marks good pixels
    with pytest.raises(SpectrumFormatError, match=r"spPlate-4055-55359-0020.fits: HDU 1 \(IVAR\): missing"):
        read_spectra(shared_data / "sdss_boss/other_formats/spPlate-4055-55359-0020.fits")


def test_multi_epoch_quasar_is_consistent_across_sdss_and_boss(shared_data):
    """Eight epochs of one quasar (SDSS 2003, BOSS 2014-19): same redshift, similar spectrum."""
    recs = [read_sdss_spec(p, "BOSS") for p in sorted((shared_data / "sdss_boss/rm017_multiepoch").glob("*.fits"))]
    z = np.array([r.z[0] for r in recs])
    assert np.ptp(z) < 1e-3
    common = np.all([(r.mask[0] == 0) for r in recs], axis=0)
    # this quasar brightens threefold in the blue between epochs, but its broad Hbeta + [O III]
    # complex peaks at the same pixel of the common lattice in every epoch
    norm = np.array([r.flux[0][common] / np.median(r.flux[0][common]) for r in recs])
    wave = BOSS.wave_obs[common]
    sel = (wave > 6900) & (wave < 7400)
    peaks = [wave[sel][np.argmax(np.convolve(n[sel], np.ones(9) / 9, "same"))] for n in norm]
    assert np.ptp(peaks) < 10.0


# ---------------------------------------------------------------- real DESI files
def test_desi_reader(shared_data):
    d = shared_data / "desi"
    bgs = read_desi_coadd(d / "coadd-4-80613-thru20210324.fits")
    # tile coadd without SURVEY/PROGRAM in its headers: survey from the SV1_ target columns, tile 80613 petal 4
    assert bgs.object_id == ["desi-sv1-unknown-t80613p4-39633345008634465"]
    assert bgs.z[0] == pytest.approx(0.36874355, abs=1e-7)
    assert bgs.spec_class == ["GALAXY"] and bgs.resolution.shape == (1, 11, DESI.n_pixels)
    dark = read_desi_coadd(d / "coadd-special-dark-27247.fits")
    assert dark.z[0] == pytest.approx(0.00727, abs=1e-5)
    # sky and unassigned fibres are dropped; fibre status selection is the user's
    five = read_desi_coadd(d / "coadd-5-169-thru20210419.fits")
    assert five.object_id == ["desi-sv3-unknown-t169p5-39633300968442591"] and five.z_flag == ["no_redshift"]
    both = read_desi_coadd(d / "coadd-5-169-thru20210419.fits", fiberstatus_ok=512)
    assert len(both) == 2 and all(int(t) > 0 for t in both.extra["targetid"])
    zt = read_redshift_table(d / "redrock-test.fits")
    assert len(zt["Z"]) == 3 and list(zt["ZWARN"]) == [1, 0, 0]


def test_desi_arms_coadded_by_inverse_variance(shared_data):
    from astropy.io import fits

    path = shared_data / "desi" / "coadd-4-80613-thru20210324.fits"
    rec = read_desi_coadd(path)
    with fits.open(path) as h:
        arm = {a: {k: np.asarray(h[f"{a}_{k}"].data, dtype=np.float64) for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK")}
               for a in "BR"}  # fmt: skip
    b, r = arm["B"], arm["R"]
    # a pixel only B covers: exactly B
    k = 100
    i = int(round((b["WAVELENGTH"][k] - 3600) / 0.8))
    assert rec.flux[0, i] == pytest.approx(b["FLUX"][0, k], rel=1e-6)
    # a pixel in the B/R overlap (5760-5800 A): the ivar-weighted mean
    lam = 5780.0
    kb, kr = int(np.argmin(abs(b["WAVELENGTH"] - lam))), int(np.argmin(abs(r["WAVELENGTH"] - lam)))
    wb = b["IVAR"][0, kb] * (b["MASK"][0, kb] == 0)
    wr = r["IVAR"][0, kr] * (r["MASK"][0, kr] == 0)
    expect = (wb * b["FLUX"][0, kb] + wr * r["FLUX"][0, kr]) / (wb + wr)
    i = int(round((lam - 3600) / 0.8))
    assert rec.flux[0, i] == pytest.approx(expect, rel=1e-5)
    assert rec.ivar[0, i] == pytest.approx(wb + wr, rel=1e-5)
    # resolution: the arm's own diagonals where only B covers, the ivar-weighted mix in the overlap
    with fits.open(path) as h:
        rb, rr = np.asarray(h["B_RESOLUTION"].data[0], np.float64), np.asarray(h["R_RESOLUTION"].data[0], np.float64)
    i_b = int(round((b["WAVELENGTH"][100] - 3600) / 0.8))
    np.testing.assert_allclose(rec.resolution[0][:, i_b], rb[:, 100], rtol=1e-6)
    np.testing.assert_allclose(
        rec.resolution[0][:, i], (wb * rb[:, kb] + wr * rr[:, kr]) / (wb + wr), rtol=1e-5, atol=1e-7
    )


# ---------------------------------------------------------------- ingest -> stream -> model
def test_ingest_stream_train_on_real_files(shared_data, tmp_path):
    out = tmp_path / "sdss"
    summary = ingest([shared_data / "sdss_boss"], out, IngestConfig(skip_bad=True, files_per_shard=5), workers=2)
    assert summary["n_spectra"] == 23 and summary["n_rejected"] == 1  # the flux-only spPlate fragment
    assert summary["n_without_redshift"] == 2  # the image-layout quasar and the ZWARNING=6 fibre
    again = ingest([shared_data / "sdss_boss"], out, IngestConfig(skip_bad=True, files_per_shard=5))
    assert again["n_spectra"] == 23  # resumed: every shard verified and kept
    data = SpectraSet.open(out)
    cols = data.read(["object_id", "z", "z_flag"])
    assert np.isnan(cols["z"][list(cols["object_id"]).index("0269-51581-0003")])
    ids = [row["object_id"] for row in ShardStream(out, shuffle_buffer=8, seed=3)]
    assert sorted(ids) == sorted(cols["object_id"]) and len(set(ids)) == 23
    # the training command trains from ingested shards (skipping rows without a usable redshift)
    from speculum.autoencode import train as train_autoencoder
    from speculum.train import TrainConfig

    s = train_autoencoder(out, tmp_path / "run", None, TrainConfig(epochs=1, batch_size=8))
    assert s["n_train"] > 10 and s["skipped_train"]["no_redshift"] >= 1
    assert np.isfinite(s["history"][0]["train_loss"])


def test_selection_and_catalogue(shared_data, tmp_path):
    s = ingest([shared_data / "sdss_boss/spec"], tmp_path / "gal", IngestConfig(classes=("GALAXY",), z_max=0.2))
    cols = SpectraSet.open(tmp_path / "gal").read(["object_id", "class", "z"])
    assert set(cols["class"]) == {"GALAXY"} and s["n_not_selected"] > 0
    cat = tmp_path / "cat.csv"
    cat.write_text("PLATE,MJD,FIBERID,Z\n266,51602,13,0.12\n295,51585,596,\n")
    ingest([shared_data / "sdss_boss/spec"], tmp_path / "cat", IngestConfig(catalog=str(cat)))
    cols = SpectraSet.open(tmp_path / "cat").read(["object_id", "z"])
    assert sorted(cols["object_id"]) == ["0266-51602-0013", "0295-51585-0596"]
    assert cols["z"][list(cols["object_id"]).index("0266-51602-0013")] == pytest.approx(0.12)


# ---------------------------------------------------------------- exact-schema synthetic files
def test_synthetic_schema_variants(tmp_path):
    from astropy.io import fits
    from make_bad_corpus import sdss_hdus

    h = sdss_hdus(z=0.2)
    h["SPECOBJ"].name = "SPALL"  # some releases name the redshift table SPALL
    h.writeto(tmp_path / "1237650000000000001.fits")  # named by object id
    rec = read_spectra(tmp_path / "1237650000000000001.fits", "SDSS")
    assert rec.object_id == ["1000-52000-0001"] and rec.z[0] == pytest.approx(0.2)
    # pixel placement: loglam 3.6 -> SDSS pixel (3.6 - 3.578) / 1e-4 = 220
    assert rec.flux[0, 219] == 0 and rec.flux[0, 220] != 0 and (rec.mask[0, 219] & PixelMask.NO_DATA)
    zb = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("TARGETID", "K", array=[1, 2]), fits.Column("Z", "D", array=[0.1, 0.2]),
         fits.Column("ZERR", "D", array=[1e-4, 1e-4]), fits.Column("ZWARN", "K", array=[0, 4]),
         fits.Column("SPECTYPE", "6A", array=["GALAXY", "QSO"])], name="ZBEST")])  # fmt: skip
    zb.writeto(tmp_path / "zbest-x.fits")
    t = read_redshift_table(tmp_path / "zbest-x.fits")
    assert list(t["SPECTYPE"]) == ["GALAXY", "QSO"] and list(t["ZWARN"]) == [0, 4]


# ---------------------------------------------------------------- fuzz corpus
FUZZ = {
    "truncated.fits": "HDU COADD, column flux: cannot be read",
    "missing_hdu.fits": "HDU COADD: missing",
    "missing_column.fits": "HDU COADD, column ivar: missing",
    "renamed_column.fits": "HDU COADD, column flux: missing",
    "wrong_dtype.fits": "HDU COADD, column flux: expected numbers",
    "nan_flux.fits": "column flux: 3 NaN/inf",
    "negative_ivar.fits": "column ivar: 3 negative",
    "mismatched_lengths.fits": "HDU 1: length (393,) differs",
    "unsorted_wavelength.fits": "column loglam: wavelengths not sorted",
    "empty.fits": "file: is empty",
    "not_fits.fits": "file: not a readable FITS file",
    "desi_missing_fibermap.fits": "HDU FIBERMAP: missing",
    "desi_mismatched_shapes.fits": "HDU R_FLUX/R_IVAR: shapes",
}


def test_fuzz_corpus_is_complete_and_reproducible(tmp_path):
    import subprocess

    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_bad_corpus.py"), "--out", str(tmp_path)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in BAD.iterdir())


@pytest.mark.parametrize("name, message", sorted(FUZZ.items()))
def test_fuzz_file_gives_clear_error(name, message):
    with pytest.raises(SpectrumFormatError) as err:
        read_spectra(BAD / name)
    text = str(err.value)
    assert text.startswith(str(BAD / name)) and message in text, text
    assert "\n" not in text


def test_fuzz_ingest_strict_and_skip_bad(tmp_path):
    sdss = [p for p in BAD.iterdir() if not p.name.startswith("desi_")]
    with pytest.raises(DataFormatError):
        ingest(sdss, tmp_path / "strict", IngestConfig(files_per_shard=100))
    assert not list((tmp_path / "strict").glob("*.parquet")) and not list((tmp_path / "strict").glob(".*tmp"))
    s = ingest(sdss, tmp_path / "lenient", IngestConfig(skip_bad=True, files_per_shard=100))
    assert s["n_spectra"] == 1  # only the good file
    import pyarrow.parquet as pq

    rej = pq.read_table(tmp_path / "lenient" / "rejects.parquet").to_pylist()
    assert len(rej) == len(sdss) - 1
    reasons = {Path(r["file"]).name: r["reason"] for r in rej}
    assert "z = -0.5000 is impossible" in reasons["z_out_of_range.fits"]
    for name, message in FUZZ.items():
        if name in reasons:
            assert message in reasons[name]


def test_cli_ingest_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from speculum.cli import app

    res = CliRunner().invoke(app, ["ingest", str(BAD / "nan_flux.fits"), "--out", str(tmp_path / "x")])
    assert (
        res.exit_code == 2 and "nan_flux.fits: HDU COADD, column flux" in res.output and "Traceback" not in res.output
    )
    res = CliRunner().invoke(app, ["ingest", str(tmp_path / "nothing*.fits"), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "no such file" in res.output


# ---------------------------------------------------------------- results and streaming
def test_result_tables_carry_units(tmp_path):
    from astropy.table import Table

    cols = {"object_id": np.array(["a", "b"], dtype=object), "z": np.array([0.1, 0.2]), "latents": np.ones((2, 3))}
    p = write_results(tmp_path / "r.fits", cols, {"z": "", "latents": ""}, {"model": "m.safetensors"})
    t = Table.read(p)
    assert list(t["object_id"]) == ["a", "b"] and t["latents"].shape == (2, 3)
    p = write_results(tmp_path / "w.fits", {"wave": np.array([5000.0])}, {"wave": "Angstrom"})
    from astropy.io import fits

    assert fits.getheader(p, 1)["TUNIT1"] == "Angstrom"
    import pyarrow.parquet as pq

    p = write_results(tmp_path / "w.parquet", {"wave": np.array([5000.0])}, {"wave": "Angstrom"})
    assert pq.read_schema(p).field("wave").metadata == {b"unit": b"Angstrom"}
    with pytest.raises(ValueError, match="unknown result format"):
        write_results(tmp_path / "w.csv", {"a": [1]})


def test_stream_visits_every_row_once_per_epoch(tmp_path):
    from torch.utils.data import DataLoader

    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    data = simulate_dataset(tmp_path, 2048, SimConfig(), seed=0, shard_size=512)
    want = SpectraSet.open(data).read(["object_id"], split="train")["object_id"]
    orders = []
    for epoch in range(2):
        stream = ShardStream(data, columns=("object_id", "flux"), split="train", shuffle_buffer=300, seed=1)
        stream.set_epoch(epoch)
        ids = []
        for batch in DataLoader(stream, batch_size=64, num_workers=2):
            assert batch["flux"].shape[1] == SDSS.n_pixels and batch["flux"].dtype == torch.float32
            ids += batch["object_id"]
        assert sorted(ids) == sorted(want) and len(ids) == len(set(ids))
        orders.append(ids)
    assert orders[0] != orders[1]


def test_fitsio_fast_path_equals_astropy(shared_data):
    pytest.importorskip("fitsio", reason="fitsio not installed (the fast path is optional)")
    from speculum.io.sdss import read_sdss_fitsio as _sdss_fitsio

    for path in sorted((shared_data / "sdss_boss").glob("*/*.fits")):
        fast = _sdss_fitsio(path, BOSS)
        if fast is None:  # not a COADD-table file: astropy only
            assert path.parent.name == "other_formats"
            continue
        slow = read_sdss_spec(path, "BOSS")
        assert fast.object_id == slow.object_id and fast.spec_class == slow.spec_class
        np.testing.assert_array_equal(fast.flux, slow.flux)
        np.testing.assert_array_equal(fast.ivar, slow.ivar)
        np.testing.assert_array_equal(fast.mask, slow.mask)
        np.testing.assert_array_equal(fast.z, slow.z)


# ---------------------------------------------------------------- ingest: validity, sharding, resume, identity
def _sdss_with_z(shared, tmp_path, z: float, cls: str = "QSO") -> Path:
    """A real SDSS spec file with its SPECOBJ Z (and CLASS) replaced."""
    from astropy.io import fits

    src = shared / "sdss_boss/spec/spec-0266-51602-0013.fits"
    dst = tmp_path / "in" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    with fits.open(src) as h:
        h["SPECOBJ"].data["Z"][0] = z
        h["SPECOBJ"].data["CLASS"][0] = cls
        h["SPECOBJ"].data["ZWARNING"][0] = 0
        h.writeto(dst)
    return dst


def test_ingest_keeps_redshifts_outside_the_model_range(shared_data, tmp_path):
    """A z = 1.19 quasar is valid survey data: a strict ingest keeps it with its z and class."""
    path = _sdss_with_z(shared_data, tmp_path, 1.19)
    s = ingest([path], tmp_path / "out", IngestConfig(instrument="SDSS"))
    assert s["n_spectra"] == 1 and s["n_rejected"] == 0
    cols = SpectraSet.open(tmp_path / "out").read(["object_id", "z", "class"])
    assert cols["object_id"].tolist() == ["0266-51602-0013"] and cols["class"].tolist() == ["QSO"]
    assert cols["z"][0] == pytest.approx(1.19, abs=1e-6)
    # impossible values stay errors: z < -0.01
    bad = _sdss_with_z(shared_data, tmp_path / "neg", -0.5)
    with pytest.raises(SpectrumFormatError, match=r"spec-0266-51602-0013.fits: object 0266-51602-0013: .*impossible"):
        ingest([bad], tmp_path / "out2", IngestConfig(instrument="SDSS"))


def _desi_pair(shared, tmp_path, n_fibres: int = 64, healpixes=(1000, 1001)) -> list[Path]:
    from make_bad_corpus import synthetic_desi_coadd

    d = shared / "desi"
    tmp_path.mkdir(parents=True, exist_ok=True)
    return [
        synthetic_desi_coadd(d / "coadd-special-dark-27247.fits", d / "redrock-special-dark-27247.fits", tmp_path,
                             n_fibres, hp, seed=hp)[0]
        for hp in healpixes
    ]  # fmt: skip


def test_desi_nan_redshift_without_warning_is_an_error(shared_data, tmp_path):
    from astropy.io import fits

    coadd = _desi_pair(shared_data, tmp_path, n_fibres=4, healpixes=(7,))[0]
    zfile = coadd.with_name(coadd.name.replace("coadd-", "redrock-"))
    with fits.open(zfile, mode="update") as h:
        h["REDSHIFTS"].data["Z"][2] = np.nan  # ZWARN stays 0: the file claims a valid redshift
    with pytest.raises(SpectrumFormatError, match=r"desi-main-dark-7-39627000000700002: .*not finite"):
        ingest([coadd], tmp_path / "out")
    s = ingest([coadd], tmp_path / "lenient", IngestConfig(skip_bad=True))
    assert s["n_spectra"] == 3 and s["n_rejected"] == 1


def test_desi_ingest_shards_by_byte_budget(shared_data, tmp_path):
    """Two 40-fibre coadds (437 KB a fibre with resolution) under a 6 MiB budget: bounded
    shards, coadds split across shards, every fibre once, with unique ids across coadds."""
    from speculum.io.ingest import row_bytes

    files = _desi_pair(shared_data, tmp_path / "in", n_fibres=40)
    budget = 6 * 2**20
    s = ingest(files, tmp_path / "out", IngestConfig(shard_bytes=budget), workers=2)
    per_shard = budget // row_bytes("DESI")
    assert per_shard == 14 and s["n_shards"] == 6 and s["n_spectra"] == 80  # ceil(80 / 14); coadd 1 starts in shard 2
    data = SpectraSet.open(tmp_path / "out")
    rows = [e["n_rows"] for e in data.manifest["shards"]]
    assert rows == [14, 14, 14, 14, 14, 10] and max(rows) * row_bytes("DESI") <= budget
    cols = data.read(["object_id", "targetid", "healpix", "z", "resolution"])
    assert len(set(cols["object_id"])) == 80
    assert sorted(set(cols["healpix"].tolist())) == [1000, 1001]
    # same fibre order and values as reading each coadd whole
    whole = [read_desi_coadd(f) for f in files]
    assert cols["object_id"].tolist() == whole[0].object_id + whole[1].object_id
    np.testing.assert_allclose(cols["z"], np.concatenate([w.z for w in whole]), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cols["resolution"][50], whole[1].resolution[10].reshape(-1))
    # resumable: a re-run verifies and keeps every shard
    again = ingest(files, tmp_path / "out", IngestConfig(shard_bytes=budget))
    assert again["n_spectra"] == 80 and again["n_shards"] == 6


def test_ingest_rejects_survive_interruption(tmp_path, monkeypatch):
    """Interrupted after the first shard, then resumed: the same rejects as an uninterrupted run."""
    import pyarrow.parquet as pq

    ingest_mod = importlib.import_module("speculum.io.ingest")  # `speculum.io.ingest` is also the function
    sdss = sorted(p for p in BAD.iterdir() if not p.name.startswith("desi_"))
    cfg = IngestConfig(skip_bad=True, files_per_shard=3)
    ingest(sdss, tmp_path / "full", cfg)
    full = sorted(map(tuple, (r.values() for r in pq.read_table(tmp_path / "full" / "rejects.parquet").to_pylist())))
    assert len(full) == len(sdss) - 1

    real = ingest_mod.read_spectra

    def interrupted(path, *a, **k):
        if Path(path).name == "missing_column.fits":  # the first file of the second shard
            raise KeyboardInterrupt
        return real(path, *a, **k)

    monkeypatch.setattr(ingest_mod, "read_spectra", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest(sdss, tmp_path / "cut", cfg)
    monkeypatch.setattr(ingest_mod, "read_spectra", real)
    resumed = ingest(sdss, tmp_path / "cut", cfg)
    got = sorted(map(tuple, (r.values() for r in pq.read_table(tmp_path / "cut" / "rejects.parquet").to_pylist())))
    assert got == full and resumed["n_rejected"] == len(full)


def test_desi_identity_columns_and_units(shared_data, tmp_path):
    """TARGETIDs repeat between coadds; object ids do not. Units are recorded and read back."""
    import pyarrow.parquet as pq

    files = _desi_pair(shared_data, tmp_path / "in", n_fibres=3, healpixes=(5, 6))
    from astropy.io import fits

    with fits.open(files[1], mode="update") as h:  # the same targets in a second coadd
        h["FIBERMAP"].data["TARGETID"] = fits.getdata(files[0], "FIBERMAP")["TARGETID"]
    files.append(shared_data / "desi" / "coadd-special-dark-27247.fits")
    s = ingest(files, tmp_path / "out", IngestConfig(keep_resolution=False))
    data = SpectraSet.open(tmp_path / "out")
    cols = data.read(["object_id", "targetid", "desi_survey", "desi_program", "healpix", "desi_target",
                      "scnd_target", "sv_survey"])  # fmt: skip
    assert s["n_spectra"] == 7 and len(set(cols["object_id"])) == 7 and len(set(cols["targetid"])) == 4
    assert "desi-main-dark-5-39627000000500000" in set(cols["object_id"])  # file order follows the paths' sort
    real = list(cols["object_id"]).index("desi-special-dark-27247-39089837499744649")
    assert cols["desi_survey"][real] == "special" and cols["desi_program"][real] == "dark"
    assert cols["healpix"][real] == 27247 and cols["desi_target"][real] == 2**62 and cols["scnd_target"][real] == 2**62
    assert cols["sv_survey"][real] == ""
    assert data.flux_unit == "1e-17 erg s^-1 cm^-2 Angstrom^-1" and data.wave_medium == "vacuum"
    assert data.manifest["units"] == {
        "flux": "1e-17 erg s^-1 cm^-2 Angstrom^-1",
        "ivar": "(1e-17 erg s^-1 cm^-2 Angstrom^-1)^-2",
        "wave": "Angstrom",
    }
    schema = pq.read_schema(tmp_path / "out" / data.manifest["shards"][0]["path"])
    assert schema.field("flux").metadata == {b"unit": b"1e-17 erg s^-1 cm^-2 Angstrom^-1"}
    assert schema.metadata[b"wave_medium"] == b"vacuum" and schema.metadata[b"wave_unit"] == b"Angstrom"


def test_result_tables_gzip_and_long_keys(tmp_path):
    from astropy.io import fits
    from astropy.table import Table

    meta = {"model_checkpoint": "m.safetensors", "model_config": "cfg.json", "instrument": "SDSS"}
    p = write_results(tmp_path / "r.fits.gz", {"z": np.array([0.1, 0.2])}, {"z": ""}, meta)
    assert p.read_bytes()[:2] == b"\x1f\x8b"  # real gzip
    t = Table.read(p)
    np.testing.assert_array_equal(t["z"], [0.1, 0.2])
    # keys sharing their first 8 characters survive whole (HIERARCH cards), not collapsed to MODEL_CH/MODEL_CO
    assert t.meta["MODEL_CHECKPOINT"] == "m.safetensors" and t.meta["MODEL_CONFIG"] == "cfg.json"
    assert fits.getheader(p, 1)["INSTRUMENT"] == "SDSS"
    assert not list(tmp_path.glob(".*"))  # no temporary left
    # two keys with the same first 8 characters (MODEL_CH): both kept, neither overwrites the other
    p = write_results(tmp_path / "k.fits", {"z": np.array([0.1])}, meta={"model_checkpoint": "a", "model_chosen": "b"})
    hdr = fits.getheader(p, 1)
    assert hdr["MODEL_CHECKPOINT"] == "a" and hdr["MODEL_CHOSEN"] == "b" and "MODEL_CH" not in hdr
    with pytest.raises(ValueError, match="same FITS keyword"):
        write_results(tmp_path / "x.fits", {"z": np.array([0.1])}, meta={"Model": 1, "MODEL": 2})


# ---------------------------------------------------------------- DESI coadd groups, header-only counts, stale temps
def _regroup(src: Path, dst: Path, spgrp: str | None, value: int | None) -> Path:
    """A copy of a tile coadd with its exposure group (SPGRP/SPGRPVAL) changed, or removed (None)."""
    from astropy.io import fits

    dst.parent.mkdir(parents=True, exist_ok=True)
    with fits.open(src) as h:
        for key in ("SPGRP", "SPGRPVAL"):
            h[0].header.remove(key, ignore_missing=True)
        if spgrp is not None:
            h[0].header["SPGRP"], h[0].header["SPGRPVAL"] = spgrp, value
        h.writeto(dst)
    return dst


def test_desi_tile_coadd_groups_get_distinct_ids(shared_data, tmp_path):
    """Cumulative, per-night and per-exposure coadds of one tile/petal hold different data: different ids."""
    cumulative = shared_data / "desi" / "coadd-4-80613-thru20210324.fits"
    tid = "39633345008634465"
    night = _regroup(cumulative, tmp_path / "night" / "coadd-4-80613-20210324.fits", "pernight", 20210324)
    exp = _regroup(cumulative, tmp_path / "exp" / "coadd-4-80613-exp00081234.fits", "perexp", 81234)
    ids = {name: read_desi_coadd(p).object_id[0] for name, p in (("cum", cumulative), ("night", night), ("exp", exp))}
    assert ids["cum"] == f"desi-sv1-unknown-t80613p4-{tid}"  # the cumulative coadd: the tile/petal id as before
    assert ids["night"] == f"desi-sv1-unknown-t80613p4n20210324-{tid}"
    assert ids["exp"] == f"desi-sv1-unknown-t80613p4e81234-{tid}"
    # files without SPGRP (older releases): the group comes from the file name
    for path, want in ((night, ids["night"]), (exp, ids["exp"])):
        bare = _regroup(path, tmp_path / "bare" / path.name, None, None)
        assert read_desi_coadd(bare).object_id[0] == want
    bare_cum = _regroup(cumulative, tmp_path / "bare" / cumulative.name, None, None)
    assert read_desi_coadd(bare_cum).object_id[0] == ids["cum"]
    # an ingest of a tile's cumulative and per-night coadds keeps both spectra apart
    s = ingest([cumulative, night], tmp_path / "out")
    got = SpectraSet.open(tmp_path / "out").read(["object_id"])["object_id"]
    assert s["n_spectra"] == 2 and sorted(got) == sorted([ids["cum"], ids["night"]])


def test_ingest_counts_rows_without_opening_spec_files(shared_data, monkeypatch):
    """SDSS/BOSS spec-* files hold one spectrum: planning does not open them; spPlate/unknown files are read."""
    from astropy.io import fits

    ingest_mod = importlib.import_module("speculum.io.ingest")
    opened = []
    real_open = fits.open

    def counting_open(path, *a, **k):
        opened.append(Path(path).name)
        return real_open(path, *a, **k)

    monkeypatch.setattr(fits, "open", counting_open)
    spec = sorted((shared_data / "sdss_boss" / "spec").glob("spec-*.fits"))
    assert len(spec) == 9 and [ingest_mod.count_rows(p, "BOSS") for p in spec] == [1] * 9
    assert opened == []
    plate = shared_data / "sdss_boss" / "other_formats" / "spPlate-4055-55359-0020.fits"
    assert ingest_mod.count_rows(plate, "BOSS") == 20 and opened == [plate.name]
    named = shared_data / "sdss_boss" / "spec" / "1237652899686318136.fits"  # layout unknown from the name
    assert ingest_mod.count_rows(named, "SDSS") == 1 and opened[-1] == named.name
    desi = shared_data / "desi" / "coadd-5-169-thru20210419.fits"
    assert ingest_mod.count_rows(desi, "DESI") == 5 and opened[-1] == desi.name


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ingest_resume_removes_temporaries_of_killed_workers(tmp_path):
    import os

    sdss = sorted(p for p in BAD.iterdir() if not p.name.startswith("desi_"))
    out = tmp_path / "out"
    cfg = IngestConfig(skip_bad=True, files_per_shard=3)
    ingest(sdss, out, cfg)
    dead = _dead_pid()
    stale = [out / f".tmp-{dead}-0a1b2c3d-part-00001.parquet", out / f".part-00002.parquet.{dead}.tmp",
             out / f".tmp-{dead}-deadbeef-part-00000.rejects.parquet"]  # fmt: skip
    live = out / f".tmp-{os.getpid()}-0a1b2c3d-part-00003.parquet"  # a writer at work: kept
    other = out / "notes.tmp"
    for p in [*stale, live, other]:
        p.write_bytes(b"half a file")
    again = ingest(sdss, out, cfg)
    assert again["n_spectra"] == 1
    assert not any(p.exists() for p in stale) and live.exists() and other.exists()

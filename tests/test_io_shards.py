"""The Parquet-shard spectra format: round trip, stable splits, resumable atomic writing."""

import json

import numpy as np
import pytest

from speculum.autoencode import simulate_dataset
from speculum.io import DataFormatError, ShardWriter, SpectraSet, split_of
from speculum.sim import GalaxySimulator, SimConfig


def test_split_is_balanced_and_order_free():
    ids = [f"obj{i}" for i in range(20000)]
    counts = {s: sum(split_of(i) == s for i in ids) for s in ("train", "val", "test")}
    assert abs(counts["train"] / 20000 - 0.8) < 0.01 and abs(counts["val"] / 20000 - 0.1) < 0.01
    assert abs(counts["test"] / 20000 - 0.1) < 0.01


def test_known_split_values():
    """Pinned assignments: a change here would silently reshuffle every user's validation set."""
    ids = ["spec-0266-51602-0001", "39627652595714067"] + [f"sim-0-{i:09d}" for i in range(12)]
    expect = ["train", "train", "train", "train", "test", "train", "val", "train", "train", "train", "val", "train"]
    expect += ["val", "val"]
    assert [split_of(i) for i in ids] == expect


def test_round_trip(tmp_path):
    b = GalaxySimulator(SimConfig(anomaly_rate=0.5)).simulate(300, seed=1)
    w = ShardWriter(tmp_path, "SDSS", {"source": "test"})
    w.write(0, b.select(slice(0, 200)).columns("SDSS"))
    w.write(1, b.select(slice(200, 300)).columns("SDSS"))
    w.close()
    data = SpectraSet.open(tmp_path)
    assert len(data) == 300 and data.manifest["complete"]
    np.testing.assert_array_equal(data.wave, data.instrument.wave_obs)
    cols = data.read()
    np.testing.assert_array_equal(cols["flux"], b.flux)
    np.testing.assert_array_equal(cols["mask"], b.mask)
    np.testing.assert_array_equal(cols["z"], b.z)
    assert list(cols["object_id"]) == b.object_id
    for got, want in zip(cols["truth_windows"], b.windows, strict=True):
        np.testing.assert_array_equal(got.reshape(-1, 2), want)
    train = data.read(["object_id", "flux"], split="train")
    assert all(split_of(o) == "train" for o in train["object_id"])
    assert sum(data.manifest["splits"].values()) == 300


def test_simulation_resumes_and_rewrites_corrupt_shards(tmp_path):
    cfg = SimConfig()
    out = simulate_dataset(tmp_path, 1536, cfg, seed=2, shard_size=512)
    manifest = json.loads((out / "manifest.json").read_text())
    sums = [s["sha256"] for s in manifest["shards"]]
    shard1 = out / manifest["shards"][1]["path"]
    mtime0 = (out / manifest["shards"][0]["path"]).stat().st_mtime_ns
    shard1.write_bytes(b"garbage")  # corrupt one shard
    simulate_dataset(tmp_path, 1536, cfg, seed=2, shard_size=512)
    again = json.loads((out / "manifest.json").read_text())
    assert [s["sha256"] for s in again["shards"]] == sums  # rewritten identically (deterministic)
    assert (out / manifest["shards"][0]["path"]).stat().st_mtime_ns == mtime0  # intact shard kept
    with pytest.raises(DataFormatError, match="different simulation"):
        simulate_dataset(tmp_path, 1536, cfg, seed=3, shard_size=512)
    assert not list(out.glob(".*.tmp"))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such data folder"):
        SpectraSet.open(tmp_path / "missing")
    with pytest.raises(DataFormatError, match="missing manifest"):
        SpectraSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "speculum-spectra", "schema_version": 99}')
    with pytest.raises(DataFormatError, match="schema_version"):
        SpectraSet.open(tmp_path)
    w = ShardWriter(tmp_path / "d", "SDSS", {})
    with pytest.raises(ValueError, match="flux"):
        w.write(0, {"object_id": ["a"], "survey": ["x"], "instrument": ["SDSS"], "z": [0.1], "z_err": [0.0],
                    "flux": np.zeros((1, 10)), "ivar": np.zeros((1, 10)), "mask": np.zeros((1, 10))})  # fmt: skip


def test_plan_shards_known_answers_and_bounds():
    """Shards hold at most the byte budget (so each worker's memory is bounded), every row of
    every file exactly once, in input order; the plan depends only on its inputs."""
    from speculum.io.ingest import plan_shards, row_bytes

    # a 500-fibre DESI coadd with resolution is 218 MB of decoded arrays: 256 MiB holds 614 fibres
    assert row_bytes("DESI") == 7781 * 12 + 11 * 7781 * 4 + 1024 == 436760
    assert row_bytes("DESI", keep_resolution=False) == 7781 * 12 + 1024
    plan = plan_shards([500, 500, 500], row_bytes("DESI"), 256 * 2**20)
    assert plan == [[(0, 0, 500), (1, 0, 114)], [(1, 114, 500), (2, 0, 228)], [(2, 228, 500)]]
    # small files share a shard up to files_per_shard; unsplittable files are never cut
    assert plan_shards([1] * 5, 10, 10**6, files_per_shard=2) == [[(0, 0, 1), (1, 0, 1)], [(2, 0, 1), (3, 0, 1)],
                                                                    [(4, 0, 1)]]  # fmt: skip
    assert plan_shards([3, 640, 2], 10, 100, splittable=False) == [[(0, 0, 3)], [(1, 0, 640)], [(2, 0, 2)]]
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 700, 60)
    budget, per_row = 50 * 2**20, 436760
    plan = plan_shards(counts, per_row, budget, rows_per_shard=100, files_per_shard=7)
    assert plan == plan_shards(counts, per_row, budget, rows_per_shard=100, files_per_shard=7)
    seen = {i: [] for i in range(len(counts))}
    for units in plan:
        rows = sum(hi - lo for _, lo, hi in units)
        assert rows * per_row <= budget and rows <= 100 and len(units) <= 7
        for i, lo, hi in units:
            seen[i].append((lo, hi))
    flat = [(i, lo, hi) for units in plan for i, lo, hi in units]
    assert flat == sorted(flat)  # input order
    for i, ranges in seen.items():  # contiguous cover of 0..n (an empty file still gets one unit)
        assert ranges[0][0] == 0 and ranges[-1][1] == max(int(counts[i]), 1)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_desi_row_range_reads_equal_whole_file(shared_data):
    from speculum.io import read_desi_coadd

    path = shared_data / "desi" / "coadd-5-169-thru20210419.fits"
    whole = read_desi_coadd(path, fiberstatus_ok=512)  # fibres 0..4, of which 2 are targets that pass
    parts = [read_desi_coadd(path, fiberstatus_ok=512, rows=r) for r in ((0, 2), (2, 4), (4, 5))]
    assert sum(len(p) for p in parts) == len(whole) == 2
    np.testing.assert_array_equal(np.concatenate([p.flux for p in parts]), whole.flux)
    np.testing.assert_array_equal(np.concatenate([p.resolution for p in parts]), whole.resolution)
    assert [o for p in parts for o in p.object_id] == whole.object_id


def test_shard_writer_removes_stale_temporaries(tmp_path):
    """Temporary files of killed writers (dead pid) go when the folder is opened again; live ones stay."""
    import os
    import subprocess
    import sys

    from speculum.io.shards import remove_stale_temps

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    b = GalaxySimulator(SimConfig()).simulate(8, seed=0)
    ShardWriter(tmp_path, "SDSS", {}).write(0, b.columns("SDSS"))
    stale = [
        tmp_path / f".tmp-{proc.pid}-0123abcd-part-00001.parquet",
        tmp_path / f".part-00001.parquet.{proc.pid}.tmp",
    ]
    keep = [tmp_path / f".tmp-{os.getpid()}-0123abcd-part-00002.parquet", tmp_path / ".hidden", tmp_path / "x.tmp"]
    for p in stale + keep:
        p.write_bytes(b"partial")
    w = ShardWriter(tmp_path, "SDSS", {})
    assert w.done(0) and not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert remove_stale_temps(tmp_path) == [] and remove_stale_temps(tmp_path / "missing") == []


def test_decode_table_record_batches_and_slices():
    """The one Arrow decoder: tables and record batches, slice offsets of fixed-size lists respected."""
    import pyarrow as pa

    from speculum.io import decode_table

    flux = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = pa.record_batch(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(flux.reshape(-1)), 3),
            pa.array(["a", "b", "c", "d"]),
            pa.array([0.1, None, 0.3, 0.4]),
            pa.array([[1.0, 2.0], [3.0, 4.0], [5.0], [6.0, 7.0]]),
        ],
        names=["flux", "object_id", "z", "windows"],
    )
    for source in (batch, pa.Table.from_batches([batch, batch])):
        cols = decode_table(source.slice(1, 2))
        np.testing.assert_array_equal(cols["flux"], flux[1:3])
        assert cols["object_id"].tolist() == ["b", "c"] and cols["object_id"].dtype == object
        assert np.isnan(cols["z"][0]) and cols["z"][1] == pytest.approx(0.3)
        assert cols["windows"].shape == (2,) and cols["windows"][0].tolist() == [3.0, 4.0]
    assert list(decode_table(batch, ["z", "flux"])) == ["z", "flux"]


def test_pixel_weights_policy():
    """ivar where the mask is 0 and ivar is finite and positive, else 0 (the one bad-pixel policy)."""
    from speculum.io import pixel_weights

    ivar = np.array([[1.0, 2.0, np.nan, np.inf, -1.0, 0.0, 3.0]])
    mask = np.array([[0, 4, 0, 0, 0, 0, 0]])
    w = pixel_weights(ivar, mask)
    assert w.dtype == np.float32 and w.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]]
    assert pixel_weights(ivar, mask, dtype=np.float64).dtype == np.float64

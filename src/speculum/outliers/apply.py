"""Scoring a survey: latents, log p under the flow, fit quality, rank and flags for every object.

:func:`score` streams the shards one at a time through the autoencoder and its flow and
writes one catalogue row per object. The work is cut into one task per shard, each
writing its own part (Parquet, atomically) beside the output: an interrupted run resumes
with the parts already written (checked against the model, flow and shard checksums), and
``scheduler=`` runs the same tasks on a Dask cluster (one task per shard) for catalogues
beyond one machine. The parts are gathered into one catalogue, ranked globally.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speculum._runtime import pick_device
from speculum.io import SpectraSet, prepare_spectra, read_results, write_results
from speculum.io.results import read_result_meta
from speculum.models.flow import DensityFlow
from speculum.train import load_model, reduced_chi2
from speculum.train.flow import FLOW_NAME
from speculum.train.runs import content_hash

__all__ = ["CATALOGUE_UNITS", "FLAGS", "OutlierModel", "score"]

log = logging.getLogger("speculum.outliers")

FLAGS = {"not_scored": 1, "poor_fit": 2, "low_coverage": 4, "extrapolated": 8}
"""Bits of the catalogue's ``flags`` column.

* ``not_scored``: no usable redshift or normalisation (``log_p`` and ``reduced_chi2`` NaN);
* ``poor_fit``: reduced chi2 above :data:`POOR_FIT` (the model does not describe the spectrum:
  its latents, and so ``log_p``, are less meaningful);
* ``low_coverage``: fewer than half of the instrument's pixels usable;
* ``extrapolated``: a latent more than :data:`EXTRAPOLATED` training standard deviations out.
"""
POOR_FIT = 5.0
EXTRAPOLATED = 5.0
CATALOGUE_UNITS = {"z": "", "log_p": "", "reduced_chi2": "", "n_valid": "pix"}


@dataclass
class OutlierModel:
    """An autoencoder and the flow fitted to its latents, loaded together.

    Attributes:
        model: The :class:`~speculum.models.SpectrumAutoencoder`.
        flow: The :class:`~speculum.models.flow.DensityFlow` over its latents.
        model_path: ``model.safetensors``.
        flow_path: ``flow.safetensors``.
    """

    model: torch.nn.Module
    flow: DensityFlow
    model_path: Path
    flow_path: Path
    use_resolution: bool = True

    @classmethod
    def load(cls, where: str | Path, device: str = "auto", flow: str | Path | None = None) -> OutlierModel:
        """Load from a run folder (``model.safetensors`` + ``flow.safetensors``) or a model file.

        Raises:
            FileNotFoundError: No model or no flow (with the command that fits one).
            ValueError: The flow was fitted to another encoder.
        """
        where = Path(where)
        model_path = where / "model.safetensors" if where.is_dir() else where
        if not model_path.exists():
            raise FileNotFoundError(f"{model_path}: no model here; train one (speculum outliers train)")
        flow_path = Path(flow) if flow is not None else model_path.parent / FLOW_NAME
        if not flow_path.exists():
            raise FileNotFoundError(
                f"{flow_path}: no flow beside the model; fit one with `speculum outliers fit-flow {model_path.parent}`"
            )
        dev = pick_device(device)
        model = load_model(model_path, map_location=dev).eval()
        flw = load_model(flow_path, map_location=dev).eval()
        if not isinstance(flw, DensityFlow):
            raise ValueError(f"{flow_path}: not a flow (a {type(flw).__name__})")
        flw.check_source(model.encoder, what=str(flow_path))
        from speculum.autoencode._common import _trained_with_resolution

        return cls(model, flw, model_path, flow_path, _trained_with_resolution(model_path.parent / "history.json"))

    @property
    def identity(self) -> dict[str, str]:
        """Content hashes of the model and flow files."""
        return {"model_hash": content_hash(self.model_path), "flow_hash": content_hash(self.flow_path)}

    @torch.no_grad()
    def score_rows(self, chunk: dict[str, np.ndarray], batch_size: int = 256, z: float | None = None) -> dict:
        """Per-row ``latents``, ``log_p``, ``reduced_chi2``, ``n_valid``, ``flags`` of one chunk of shard rows.

        Args:
            chunk: Shard columns (``z``, ``flux``, ``ivar``, ``mask``, optionally ``resolution``).
            batch_size: Spectra per forward pass.
            z: Score every row at this redshift instead of its own (the star model: ``0``).

        Returns:
            Arrays with one entry per input row (NaN and the ``not_scored`` flag where unusable).
        """
        inst = self.model.config.instrument
        if z is not None:
            chunk = {**chunk, "z": np.full(len(chunk["z"]), z)}
        if not self.use_resolution and "resolution" in chunk:  # as the model was trained (--no-resolution)
            chunk = {k: v for k, v in chunk.items() if k != "resolution"}
        prep = prepare_spectra(chunk, inst, fit_amplitude=self.model.config.normalize)
        n, s_dim = len(chunk["z"]), self.model.config.n_latent
        out = {
            "latents": np.full((n, s_dim), np.nan, np.float32),
            "log_p": np.full(n, np.nan, np.float64),
            "reduced_chi2": np.full(n, np.nan, np.float32),
            "n_valid": np.zeros(n, np.int32),
            "flags": np.full(n, FLAGS["not_scored"], np.int32),
        }
        dev = next(self.model.parameters()).device
        n_pix = int(prep.y.shape[1]) if len(prep.z) else 1
        for idx in torch.arange(len(prep.z)).split(batch_size):
            y, w, zz = prep.y[idx].to(dev), prep.w[idx].to(dev), prep.z[idx].to(dev)
            res = None if prep.resolution is None else prep.resolution[idx].to(dev)
            fit = self.model(y, w, zz, resolution=res)
            s = fit.latents.float()
            wv = w * fit.valid
            rows = prep.index[idx.numpy()]
            out["latents"][rows] = s.cpu().numpy()
            out["log_p"][rows] = self.flow.log_prob(s).double().cpu().numpy()
            chi2 = reduced_chi2(y, wv, fit.observed).float().cpu().numpy()
            out["reduced_chi2"][rows] = chi2
            nv = (wv > 0).sum(1).cpu().numpy().astype(np.int32)
            out["n_valid"][rows] = nv
            far = self.flow.standardized(s).abs().amax(1).cpu().numpy()
            out["flags"][rows] = (
                FLAGS["poor_fit"] * (chi2 > POOR_FIT)
                + FLAGS["low_coverage"] * (nv < 0.5 * n_pix)
                + FLAGS["extrapolated"] * (far > EXTRAPOLATED)
                + FLAGS["not_scored"] * np.isnan(out["log_p"][rows])
            ).astype(np.int32)
        return out


def _one_shard(data: SpectraSet, index: int) -> SpectraSet:
    entry = data.manifest["shards"][index]
    return SpectraSet(data.root, {**data.manifest, "shards": [entry], "n_spectra": entry["n_rows"]})


def _columns(data: SpectraSet, extra: tuple[str, ...] = ()) -> list[str]:
    names = set(data.columns)
    return ["object_id", "z", "flux", "ivar", "mask", *(c for c in ("resolution", "split", *extra) if c in names)]


def score_shard(
    model: str | Path,
    data: str | Path,
    index: int,
    part: str | Path,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    read_batch: int = 4096,
) -> str:
    """Score shard ``index`` of ``data`` into the Parquet ``part`` (one task of :func:`score`).

    Skips the work when ``part`` exists and records the same model, flow, shard checksum and
    split (a resumed run). Returns the part's path.
    """
    om = OutlierModel.load(model, device)
    ds = SpectraSet.open(data)
    entry = ds.manifest["shards"][index]
    ident = {**om.identity, "shard": entry["path"], "shard_sha256": entry["sha256"], "split": split or ""}
    part = Path(part)
    if part.exists():
        try:
            if all(str(read_result_meta(part).get(k)) == str(v) for k, v in ident.items()):
                return str(part)
        except Exception:  # noqa: BLE001 - an unreadable part (killed mid-write elsewhere) is redone
            pass
    cols = _columns(ds, ("truth_class",))
    parts: dict[str, list] = {}
    for chunk in _one_shard(ds, index).iter_batches(cols, split=split, batch_size=read_batch):
        res = om.score_rows(chunk, batch_size)
        keep = {"object_id": chunk["object_id"], "z": np.asarray(chunk["z"], np.float64), **res}
        for name in ("split", "truth_class"):
            if name in chunk:
                keep[name] = chunk[name]
        for k, v in keep.items():
            parts.setdefault(k, []).append(np.asarray(v))
    if not parts:  # no row of this split here: an empty part with the same columns
        s_dim = om.model.config.n_latent
        parts = {"object_id": [np.zeros(0, object)], "z": [np.zeros(0)], "latents": [np.zeros((0, s_dim), np.float32)],
                 "log_p": [np.zeros(0)], "reduced_chi2": [np.zeros(0, np.float32)], "n_valid": [np.zeros(0, np.int32)],
                 "flags": [np.zeros(0, np.int32)]}  # fmt: skip
        parts.update({name: [np.zeros(0, object)] for name in ("split", "truth_class") if name in cols})
    cols_out = {k: np.concatenate(v) for k, v in parts.items()}
    write_results(part, cols_out, CATALOGUE_UNITS, ident)
    return str(part)


def _gather(paths: list[str], n_latent: int) -> dict[str, np.ndarray]:
    tables = [read_results(p) for p in paths]
    cat = {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in tables[0]}
    lat = np.asarray(cat.pop("latents"), np.float32).reshape(-1, n_latent)
    log_p = np.asarray(cat["log_p"], np.float64)
    ok = ~np.isnan(log_p)  # -inf (nothing like the training set) ranks first
    rank = np.zeros(len(log_p), np.int64)
    order = np.argsort(np.where(ok, log_p, np.inf), kind="stable")
    order = order[np.argsort(~ok[order], kind="stable")]  # NaN after every number, also after +inf
    rank[order[: ok.sum()]] = np.arange(1, ok.sum() + 1)
    out: dict[str, Any] = {"object_id": cat["object_id"], "z": cat["z"]}
    out.update({f"latent_{i}": lat[:, i] for i in range(n_latent)})
    out.update({"log_p": log_p, "reduced_chi2": cat["reduced_chi2"], "rank": rank, "flags": cat["flags"]})
    out.update({k: cat[k] for k in ("n_valid", "split", "truth_class") if k in cat})
    return out


def score(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = False,
    scheduler: str | Any | None = None,
    keep_parts: bool = False,
) -> dict[str, np.ndarray]:
    """Score every object of a shard folder; write the catalogue (Parquet or FITS by suffix).

    Columns: ``object_id``, ``z``, ``latent_0 ... latent_{S-1}``, ``log_p`` (natural log of the
    flow density of the latents; low = unusual), ``reduced_chi2``, ``rank`` (1 = least
    probable; 0 for rows not scored), ``flags`` (:data:`FLAGS`), ``n_valid``, and ``split`` /
    ``truth_class`` where the data have them.

    Args:
        data: Shard folder (``speculum ingest`` or ``simulate`` output).
        model: Run folder with ``model.safetensors`` and ``flow.safetensors`` (or the model file).
        out: ``.parquet``, ``.fits`` or ``.fits.gz``.
        split: Only rows of this split (default: all).
        batch_size: Spectra per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: A progress bar over shards and spectra.
        scheduler: A Dask scheduler address (``tcp://host:8786``) or ``dask.distributed.Client``:
            one task per shard on the cluster (workers must see ``data``, ``model`` and the
            output folder). Default: this process.
        keep_parts: Keep the per-shard parts (default: removed once the catalogue is written).

    Returns:
        The catalogue's columns.
    """
    from tqdm import tqdm

    ds = SpectraSet.open(data)
    om = OutlierModel.load(model, device)  # fail early, here, on a missing flow or a foreign encoder
    if om.model.config.instrument != ds.instrument.name:
        raise ValueError(f"{model}: model is for {om.model.config.instrument}, data {data} are {ds.instrument.name}")
    out = Path(out)
    work = out.parent / f".{out.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    shards = ds.manifest["shards"]
    tasks = [(str(om.model_path), str(ds.root), i, str(work / f"part-{i:05d}.parquet")) for i in range(len(shards))]
    total = sum(int(e.get("splits", {}).get(split, e["n_rows"]) if split else e["n_rows"]) for e in shards)
    bar = tqdm(total=total, desc="scoring", unit="spectra", disable=not progress)
    paths: list[str] = []
    if scheduler is None:
        for t, entry in zip(tasks, shards, strict=True):
            paths.append(score_shard(*t, split=split, batch_size=batch_size, device=device))
            bar.update(int(entry.get("splits", {}).get(split, entry["n_rows"]) if split else entry["n_rows"]))
    else:
        from speculum._optional import require

        distributed = require("dask.distributed", "scoring on a Dask cluster (--scheduler)")
        client = scheduler if isinstance(scheduler, distributed.Client) else distributed.Client(scheduler)
        try:
            futures = [client.submit(score_shard, *t, split=split, batch_size=batch_size, device=device, pure=False)
                       for t in tasks]  # fmt: skip
            done = {}
            for fut in distributed.as_completed(futures):
                done[fut.key] = fut.result()
                i = futures.index(fut)
                e = shards[i]
                bar.update(int(e.get("splits", {}).get(split, e["n_rows"]) if split else e["n_rows"]))
            paths = [done[f.key] for f in futures]
        finally:
            if client is not scheduler:
                client.close()
    bar.close()
    cat = _gather(paths, om.model.config.n_latent)
    n_bad = int(((cat["flags"] & FLAGS["not_scored"]) > 0).sum())
    if n_bad:
        log.warning("%s: %d of %d objects not scored (no usable redshift or normalisation)", data, n_bad, len(cat["z"]))
    meta = {**om.identity, "model": str(om.model_path), "flow": str(om.flow_path), "data": str(data),
            "data_hash": f"shards:{ds.fingerprint}", "instrument": ds.instrument.name, "split": split or "",
            "flags": json.dumps(FLAGS)}  # fmt: skip
    write_results(out, cat, CATALOGUE_UNITS, meta)
    if not keep_parts:
        shutil.rmtree(work, ignore_errors=True)
    return cat

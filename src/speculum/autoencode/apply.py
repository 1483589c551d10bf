"""Applying a trained autoencoder: latents, reconstructions and their quality, per object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speculum._runtime import pick_device
from speculum.autoencode._common import _columns, _log_skipped, _trained_with_resolution
from speculum.io import SpectraSet, prepare_spectra, write_results
from speculum.train import load_model, reduced_chi2
from speculum.train.runs import RUN_MANIFEST, content_hash, read_run_manifest

__all__ = ["RESULT_UNITS", "reconstruct"]


RESULT_UNITS = {"z": "", "latents": "", "reduced_chi2": "", "n_valid": "pix"}
"""Units of the per-object columns written by :func:`reconstruct`."""


@torch.no_grad()
def reconstruct(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = False,
    spectra_out: str | Path | None = None,
    read_batch: int = 4096,
    use_resolution: bool | None = None,
) -> dict[str, np.ndarray]:
    """Encode and reconstruct spectra, streamed shard by shard; write one row per object.

    Memory holds ``read_batch`` spectra at a time plus the per-object results (a few
    numbers each), whatever the size of the data set. Rows the model cannot use (no
    redshift, redshift outside the instrument's range, no normalisation pixel) are skipped
    and counted in the log. DESI resolution matrices are applied where the data carry them.

    Args:
        model_path: ``model.safetensors`` of :func:`:func:`speculum.autoencode.train``.
        data: Shard folder.
        out: ``.parquet``, ``.fits`` or ``.fits.gz`` table with columns ``object_id``, ``z``,
            ``split``, ``latents`` ``(N, S)``, ``reduced_chi2``, ``n_valid`` and any
            ``truth_class`` of simulated data.
        split: Only rows of this split (default: all).
        batch_size: Spectra per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: Show a progress bar.
        spectra_out: Also write the reconstructed spectra (wavelength, flux, model, ivar,
            mask, restframe model) as FITS readable by specutils; holds them in memory, so
            meant for selections of modest size.
        read_batch: Rows read from the shards at a time.
        use_resolution: Apply the data's resolution matrices; default: as the model was
            trained (``uses_resolution`` in the ``history.json`` beside it, else True).

    Returns:
        The written columns.
    """
    from tqdm import tqdm

    model_hash = content_hash(model_path)
    run_manifest = Path(model_path).parent / RUN_MANIFEST
    if run_manifest.exists():  # the model of a run folder must be the one the run wrote
        recorded = read_run_manifest(Path(model_path).parent)["outputs"].get("model", {})
        same_file = Path(recorded.get("path", "")).name == Path(model_path).name  # also for a moved run folder
        if same_file and recorded.get("hash") != model_hash:
            raise ValueError(
                f"{model_path}: not the model its run wrote ({run_manifest} records {recorded.get('hash')}, "
                f"the file is {model_hash}); it was replaced or modified"
            )
    model = load_model(model_path, map_location=pick_device(device)).eval()
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name
    if model.config.instrument != inst:
        raise ValueError(f"{model_path}: model is for {model.config.instrument}, data {data} are {inst}")
    if use_resolution is None:
        use_resolution = _trained_with_resolution(Path(model_path).parent / "history.json")
    cols = _columns(dataset, ("split", "truth_class"), use_resolution=use_resolution)
    dev = next(model.parameters()).device
    parts: dict[str, list] = {k: [] for k in ("object_id", "z", "split", "latents", "reduced_chi2", "n_valid")}
    has_truth = "truth_class" in cols
    if has_truth:
        parts["truth_class"] = []
    spectra: dict[str, list] = {k: [] for k in ("object_id", "flux", "model", "ivar", "mask", "restframe")}
    skipped: dict[str, int] = {}
    total = dataset.manifest["splits"][split] if split else len(dataset)
    bar = tqdm(total=total, desc="reconstructing", unit="spectra", disable=not progress)
    for chunk in dataset.iter_batches(cols, split=split, batch_size=read_batch):
        prep = prepare_spectra(chunk, inst, fit_amplitude=model.config.normalize)
        for k, v in prep.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
        for idx in torch.arange(len(prep.z)).split(batch_size):
            y, w, z = prep.y[idx].to(dev), prep.w[idx].to(dev), prep.z[idx].to(dev)
            res = None if prep.resolution is None else prep.resolution[idx].to(dev)
            fit = model(y, w, z, resolution=res)
            wv = w * fit.valid
            parts["latents"].append(fit.latents.float().cpu().numpy())
            parts["reduced_chi2"].append(reduced_chi2(y, wv, fit.observed).float().cpu().numpy())
            parts["n_valid"].append((wv > 0).sum(1).cpu().numpy().astype(np.int32))
            if spectra_out is not None:  # in the survey's units; the model is NaN where it does not reach
                nm = prep.norm[idx][:, None]
                model_obs = torch.where(fit.valid.cpu(), fit.observed.float().cpu() * nm, float("nan"))
                spectra["model"].append(model_obs.numpy())
                spectra["restframe"].append((fit.restframe.float().cpu() * nm).numpy())
        k = prep.index
        for name in ("object_id", "z", "split", *(["truth_class"] if has_truth else [])):
            parts[name].append(np.asarray(chunk[name])[k])
        if spectra_out is not None:
            for name in ("object_id", "flux", "ivar", "mask"):
                spectra[name].append(np.asarray(chunk[name])[k])
        bar.update(len(chunk["z"]))
    bar.close()
    _log_skipped(str(data), skipped)
    n_latent = model.config.n_latent
    empty = {"latents": np.zeros((0, n_latent), np.float32), "reduced_chi2": np.zeros(0, np.float32)}
    result = {
        k: np.concatenate(v) if v else empty.get(k, np.zeros(0, np.int32 if k == "n_valid" else object))
        for k, v in parts.items()
    }
    meta = {
        "model": str(model_path),
        "model_hash": model_hash,
        "data": str(data),
        "data_hash": f"shards:{dataset.fingerprint}",
        "instrument": inst,
    }
    write_results(out, result, RESULT_UNITS, meta)
    if spectra_out is not None:
        from speculum.io.interop import write_spectra_fits

        cat = {k: np.concatenate(v) if v else np.zeros((0, 0)) for k, v in spectra.items()}
        write_spectra_fits(
            spectra_out,
            wave=dataset.wave,
            flux=cat["flux"],
            model=cat["model"],
            ivar=cat["ivar"],
            mask=cat["mask"],
            restframe_wave=model.wave_rest.double().cpu().numpy(),
            restframe_model=cat["restframe"],
            object_id=cat["object_id"],
            meta=meta,
        )
    return result

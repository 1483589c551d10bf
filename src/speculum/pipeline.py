"""The spectrum-autoencoder workflow: simulate -> train -> reconstruct.

One function per CLI verb; each reads and writes the on-disk formats of
:mod:`speculum.io` so that steps can be run, interrupted and resumed separately.

Example:
    >>> import tempfile
    >>> from speculum.sim import SimConfig
    >>> out = simulate_dataset(tempfile.mkdtemp(), 64, SimConfig(), seed=0)
    >>> SpectraSet.open(out).manifest["n_spectra"]
    64
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speculum.instruments import get_instrument
from speculum.io import DataFormatError, ShardWriter, SpectraSet, atomic_write_text, write_results
from speculum.models import AutoencoderConfig, RestframeGrid, SpectrumAutoencoder
from speculum.models.config import config_from_dict
from speculum.physics import median_normalization
from speculum.sim import BLOCK_SIZE, GalaxySimulator, SimConfig
from speculum.train import fiducial_loss, load_model, reduced_chi2, save_model
from speculum.train.stream import StreamBatches
from speculum.train.trainer import TrainConfig, Trainer, load_checkpoint

__all__ = [
    "PRESETS",
    "RESULT_UNITS",
    "PreparedSpectra",
    "make_report",
    "prepare_spectra",
    "reconstruct",
    "simulate_dataset",
    "train_autoencoder",
]

log = logging.getLogger(__name__)


def _small(instrument: str) -> AutoencoderConfig:
    # CPU-demo size: narrower encoder, a 2x coarser restframe grid (the instrument's default range), smaller decoder
    full = RestframeGrid.for_instrument(instrument)
    rf = RestframeGrid(full.start, full.stop, (full.n + 1) // 2)
    return AutoencoderConfig(
        instrument=instrument,
        normalize=_needs_amplitude_fit(instrument),
        n_latent=8,
        restframe=rf,
        encoder_channels=(32, 64, 128),
        encoder_hidden=(64, 32),
        decoder_hidden=(64, 256, 512),
    )


def _paper(instrument: str) -> AutoencoderConfig:
    return AutoencoderConfig(
        instrument=instrument,
        restframe=RestframeGrid.for_instrument(instrument),
        normalize=_needs_amplitude_fit(instrument),
    )


def _needs_amplitude_fit(instrument: str) -> bool:
    """Whether the 5300-5850 A normalisation window leaves the instrument's range within its redshifts.

    Then (BOSS beyond z = 0.78, DESI beyond z = 0.68) the presets fit each spectrum's amplitude
    in the model (``AutoencoderConfig.normalize``), so those spectra stay usable.
    """
    inst = get_instrument(instrument)
    return 5850.0 * (1 + inst.z_range[1]) > float(inst.wave_obs[-1])


PRESETS: dict[str, Callable[[str], AutoencoderConfig]] = {"small": _small, "paper": _paper}
"""Named model sizes: ``small`` (CPU demo) and ``paper`` (Melchior et al. 2023)."""


def simulate_dataset(
    out: str | Path,
    n: int,
    config: SimConfig,
    seed: int = 0,
    shard_size: int = 8 * BLOCK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Simulate ``n`` spectra into a shard folder; re-running resumes (finished shards are kept).

    Args:
        out: Output folder.
        n: Number of spectra.
        config: Simulator configuration (saved in the manifest).
        seed: Data-set seed.
        shard_size: Rows per shard (rounded up to a multiple of the simulator block).
        progress: Called with the number of rows finished after every shard.

    Returns:
        The output folder.
    """
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    shard_size = max(BLOCK_SIZE, -(-shard_size // BLOCK_SIZE) * BLOCK_SIZE)
    out = Path(out)
    sim = GalaxySimulator(config)
    extra = {"simulator": {"config": config.to_dict(), "seed": seed, "n": n, "shard_size": shard_size}}
    manifest = out / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text()).get("simulator")
        if old != json.loads(json.dumps(extra["simulator"])):
            raise DataFormatError(f"{manifest}: holds a different simulation ({old}); choose another --out")
    writer = ShardWriter(out, config.instrument, {"source": "speculum.sim.GalaxySimulator"}, extra)
    done = 0
    for index, start in enumerate(range(0, n, shard_size)):
        rows = min(shard_size, n - start)
        if not writer.done(index):
            blocks = sim.iter_blocks(rows, seed=seed, start=start)
            writer.write(index, (b.columns(config.instrument) for b in blocks))
        done += rows
        if progress is not None:
            progress(done)
    writer.close()
    return out


@dataclass
class PreparedSpectra:
    """Model-ready tensors.

    ``y`` normalised flux ``(N, L)``, ``w`` weights ``(N, L)``, ``z`` redshifts ``(N,)``,
    ``index`` the input rows kept, ``norm`` the normalisation of each kept row,
    ``resolution`` the per-spectrum banded resolution matrices ``(N, D, L)`` where the data
    carry them (DESI), else None; ``skipped`` counts dropped rows by reason.
    """

    y: torch.Tensor
    w: torch.Tensor
    z: torch.Tensor
    index: np.ndarray
    norm: torch.Tensor
    skipped: dict[str, int]
    resolution: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        out = {"y": self.y, "w": self.w, "z": self.z}
        if self.resolution is not None:
            out["resolution"] = self.resolution
        return out


def prepare_spectra(
    columns: dict[str, np.ndarray], instrument: str, keep_all: bool = False, fit_amplitude: bool = False
) -> PreparedSpectra:
    """Weights from ``ivar`` and ``mask``, SPENDER median normalisation, unusable rows dropped.

    A row is dropped (and counted in ``skipped``) when its redshift is missing or outside
    the instrument's range, or when the normalisation window has no good pixel. With
    ``keep_all`` such rows are kept with zero weight (and ``z = 0``) instead, so that
    streamed batches keep their size. A ``resolution`` column (DESI: ``D`` diagonals x
    ``L`` pixels per row, flattened) becomes ``PreparedSpectra.resolution`` ``(N, D, L)``.
    Nothing is logged here: callers report ``skipped`` once for all their chunks.

    With ``fit_amplitude`` (for models that fit each spectrum's amplitude themselves,
    ``AutoencoderConfig.normalize``) a row whose normalisation window is not observed
    (DESI at z > 0.68, BOSS at z > 0.78) is kept, scaled by the median of its usable flux.
    """
    inst = get_instrument(instrument)
    z = np.asarray(columns["z"], dtype=np.float64)
    w = np.where(np.asarray(columns["mask"]) == 0, np.asarray(columns["ivar"]), 0.0).astype(np.float32)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0).astype(np.float32)
    flux = np.nan_to_num(np.asarray(columns["flux"], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    skipped = {}
    no_z = ~np.isfinite(z)
    skipped["no_redshift"] = int(no_z.sum())
    lo, hi = inst.z_range
    out_z = ~no_z & ((z < lo) | (z > hi))
    skipped["redshift_out_of_range"] = int(out_z.sum())
    keep = ~(no_z | out_z)
    zt = torch.from_numpy(np.where(keep, z, 0.0))
    norm = median_normalization(inst.wave(torch.float64), torch.from_numpy(flux), torch.from_numpy(w), zt)
    bad_norm = keep & ~(torch.isfinite(norm) & (norm > 0)).numpy()
    if fit_amplitude and bad_norm.any():
        for i in np.nonzero(bad_norm)[0]:
            good = flux[i][w[i] > 0]
            scale = float(np.median(np.abs(good))) if len(good) else 0.0
            if scale > 0:
                norm[i], bad_norm[i] = scale, False
    skipped["no_normalisation"] = int(bad_norm.sum())
    keep &= ~bad_norm
    if keep_all:
        norm = torch.where(torch.from_numpy(keep), norm, torch.ones_like(norm))
        w = np.where(keep[:, None], w, 0.0).astype(np.float32)
        zt = torch.where(torch.from_numpy(keep), zt, torch.zeros_like(zt))
        idx = np.arange(len(z))
    else:
        idx = np.nonzero(keep)[0]
    nm = norm[idx].float()
    y = torch.from_numpy(flux[idx]) / nm[:, None]
    wt = torch.from_numpy(w[idx]) * nm[:, None] ** 2
    res = columns.get("resolution")
    if res is not None:
        res = np.asarray(res, dtype=np.float32)
        length = flux.shape[1]
        if res.ndim != 2 or res.shape[0] != len(z) or res.shape[1] % length:
            raise DataFormatError(
                f"column 'resolution': expected (N, D * {length}) for {len(z)} spectra, got {res.shape}"
            )
        res = torch.from_numpy(res[idx].reshape(len(idx), -1, length))
    return PreparedSpectra(y=y, w=wt, z=zt[idx].float(), index=idx, norm=nm, skipped=skipped, resolution=res)


def _log_skipped(what: str, skipped: dict[str, int]) -> None:
    if any(skipped.values()):
        log.warning("%s: skipped spectra: %s", what, {k: v for k, v in skipped.items() if v})


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return fiducial_loss(batch["y"], batch["w"] * out.valid, out.observed.float(), reduce=False)


def _metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return {"chi2": reduced_chi2(batch["y"], batch["w"] * out.valid, out.observed.float())}


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch.device(name)


def _columns(dataset: SpectraSet, extra: tuple[str, ...] = (), use_resolution: bool = True) -> list[str]:
    """Columns the autoencoder reads: spectra, redshift, and DESI resolution matrices when present."""
    names = set(dataset.columns)
    optional = ("resolution", *extra) if use_resolution else extra
    return ["object_id", "z", "flux", "ivar", "mask", *(c for c in optional if c in names)]


def train_autoencoder(
    data: str | Path,
    run_dir: str | Path,
    model_config: AutoencoderConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = False,
    limit: int | None = None,
    stream: bool = False,
    shuffle_buffer: int = 4096,
    val_limit: int | None = None,
    use_resolution: bool = True,
) -> dict:
    """Train a SPENDER autoencoder on a shard folder (train/val splits by object-id hash).

    Writes ``run_dir/checkpoint.pt`` (resumable), ``run_dir/model.safetensors`` (best
    validation loss) and ``run_dir/history.json``. Where the data carry per-spectrum
    resolution matrices (DESI), the model's forward pass applies them.

    Args:
        data: Folder written by ``speculum simulate`` or ``speculum ingest``.
        run_dir: Output folder.
        model_config: Architecture (default: the ``small`` preset for the data's
            instrument). On resume, taken from the checkpoint and must match if given.
        train_config: Optimisation settings.
        resume: Continue from ``run_dir/checkpoint.pt``. The checkpoint records the data
            (:attr:`SpectraSet.fingerprint`) and ``limit``, ``stream``, ``shuffle_buffer``,
            ``val_limit`` and the DDP world size; resuming with any of them changed is refused.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
        progress: Progress bars.
        limit: Use at most this many training rows (quick runs; in-memory mode).
        stream: Stream the training split from the shards (:class:`StreamBatches`: each
            DDP rank reads its own shards, memory independent of the catalogue) instead
            of holding it in memory. Unusable rows are zero-weighted rather than dropped;
            ``skipped_train`` then counts them over every epoch this process ran.
        shuffle_buffer: Rows in the stream's shuffle buffer.
        val_limit: Validate on at most this many rows (default: all; when streaming, 20,000
            or as many as fit in ~1 GiB, whichever is fewer).
        use_resolution: Apply the data's per-spectrum resolution matrices (DESI) in the
            forward model; ``False`` ignores them (the decoder then learns the broadening).

    Returns:
        Summary: history, best validation loss and reduced chi2, paths, counts.
    """
    run_dir = Path(run_dir)
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name
    tcfg = train_config or TrainConfig()
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
        saved = config_from_dict(load_checkpoint(ckpt_path)["metadata"]["model_config"])
        if model_config is not None and model_config != saved:
            diff = {k: (v, getattr(model_config, k)) for k, v in vars(saved).items() if getattr(model_config, k) != v}
            raise ValueError(f"{ckpt_path}: model config differs from the checkpoint's (saved, given): {diff}")
        model_config = saved
    elif not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path}: a run exists here; use --resume to continue it or choose another folder")
    model_config = model_config or PRESETS["small"](inst)
    if model_config.instrument != inst:
        raise ValueError(f"model_config.instrument: {model_config.instrument} but the data are {inst}")
    cols = _columns(dataset, use_resolution=use_resolution)
    if stream:
        if val_limit is None:  # validation is held in memory: at most 20,000 rows or ~1 GiB
            row_bytes = 12 * dataset.instrument.n_pixels * (1 + ("resolution" in cols) * 11 / 3)
            val_limit = int(min(20_000, 2**30 // row_bytes))
        skipped: dict[str, int] = {}

        def transform(c: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            prep = prepare_spectra(c, inst, keep_all=True, fit_amplitude=model_config.normalize)
            for k, v in prep.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            return prep.as_dict()

        source = StreamBatches(
            data,
            tcfg.batch_size,
            transform,
            columns=tuple(c for c in cols if c != "object_id"),
            seed=tcfg.seed,
            shuffle_buffer=shuffle_buffer,
        )
        n_train = int(dataset.manifest["splits"]["train"])
    else:
        train = prepare_spectra(
            dataset.read(cols, split="train", limit=limit), inst, fit_amplitude=model_config.normalize
        )
        source, n_train, skipped = train.as_dict(), len(train.z), train.skipped
        _log_skipped(f"{data} (train)", skipped)
    val = prepare_spectra(dataset.read(cols, split="val", limit=val_limit), inst, fit_amplitude=model_config.normalize)
    _log_skipped(f"{data} (val)", val.skipped)
    log.info(
        "training on %d spectra (%s), validating on %d", n_train, "streamed" if stream else "in memory", len(val.z)
    )
    dev = _device(device)
    torch.manual_seed(tcfg.seed)
    model = SpectrumAutoencoder(model_config).to(dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = run_dir / "model.safetensors"
    identity = {
        "data": dataset.fingerprint,
        "limit": limit,
        "stream": stream,
        "shuffle_buffer": shuffle_buffer if stream else None,
        "val_limit": val_limit,
        "use_resolution": use_resolution,
    }
    trainer = Trainer(
        model,
        _loss,
        tcfg,
        run_dir,
        metrics_fn=_metrics,
        metadata={"model_config": model_config.to_dict(), "data": str(Path(data).resolve())},
        identity=identity,
        on_best=lambda m: save_model(m, model_path),
        progress=progress,
    )
    t0 = time.perf_counter()
    history = trainer.fit(source, val.as_dict(), resume=resume)
    if stream:
        _log_skipped(f"{data} (train, streamed: zero-weighted rows over every epoch this process ran)", skipped)
    if not model_path.exists():  # no validation rows: keep the last weights
        save_model(model, model_path)
    summary = {
        "data": str(Path(data).resolve()),
        "data_fingerprint": dataset.fingerprint,
        "instrument": inst,
        "n_train": n_train,
        "n_val": len(val.z),
        "streamed": stream,
        "uses_resolution": use_resolution,
        "skipped_train": skipped,
        "skipped_val": val.skipped,
        "epochs_run": len(history),
        "best_val_loss": min((h.get("val_loss", np.inf) for h in history), default=None),
        "best_val_chi2": min((h.get("val_chi2", np.inf) for h in history), default=None),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "model": str(model_path),
        "model_config": model_config.to_dict(),
        "train_config": tcfg.__dict__,
        "history": history,
    }
    if trainer.rank == 0:
        atomic_write_text(run_dir / "history.json", json.dumps(summary, indent=1, default=float))
    return summary


def _trained_with_resolution(history: Path) -> bool:
    if history.exists():
        return bool(json.loads(history.read_text()).get("uses_resolution", True))
    return True


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
        model_path: ``model.safetensors`` of :func:`train_autoencoder`.
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

    model = load_model(model_path, map_location=_device(device)).eval()
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
    meta = {"model": str(model_path), "data": str(data), "instrument": inst, "data_fingerprint": dataset.fingerprint}
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


def make_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    data: str | Path | None = None,
    reconstructions: str | Path | None = None,
    n_examples: int = 4,
    title: str = "speculum: spectrum autoencoder",
    progress: bool = False,
) -> Path:
    """Write the self-contained HTML report of a training run; needs only the run folder.

    Args:
        run_dir: Folder of ``speculum train`` (``history.json``, ``model.safetensors``).
        out: HTML file to write (default ``run_dir/report.html``).
        data: The shard folder (default: the training data recorded in ``history.json``).
        reconstructions: Table of ``speculum reconstruct`` (``.parquet`` or ``.fits``;
            default ``run_dir/reconstructions.parquet``, made from the test split when absent).
        n_examples: Example spectra to draw: per class (normal first, then anomalies) the
            one whose reduced chi2 is closest to its class median.
        progress: Progress bars for the reconstruction and the scan for examples.

    Returns:
        The report path.
    """
    from speculum.io import read_results
    from speculum.report import Report
    from speculum.report import autoencoder as sections

    run_dir = Path(run_dir)
    hist_path = run_dir / "history.json"
    if not hist_path.exists():
        raise FileNotFoundError(f"{hist_path}: no training history; run `speculum train` first")
    summary = json.loads(hist_path.read_text())
    data = Path(data) if data is not None else Path(summary["data"])
    out = Path(out) if out is not None else run_dir / "report.html"
    if reconstructions is None:
        found = [run_dir / f"reconstructions{s}" for s in (".parquet", ".fits", ".fits.gz")]
        found = [p for p in found if p.exists()]
        rec_path = found[0] if found else run_dir / "reconstructions.parquet"
        if not found:
            log.info("no reconstructions in %s: reconstructing the test split of %s", run_dir, data)
            reconstruct(run_dir / "model.safetensors", data, rec_path, split="test", progress=progress)
    else:
        rec_path = Path(reconstructions)
        if not rec_path.exists():
            raise FileNotFoundError(f"{rec_path}: no reconstructions; run `speculum reconstruct` first")
    rec = read_results(rec_path)
    chi2 = np.asarray(rec["reduced_chi2"], dtype=np.float64)
    latents = np.asarray(rec["latents"], dtype=np.float64).reshape(len(chi2), -1)
    rec_ids = np.asarray(rec["object_id"]).astype(str)
    classes = np.asarray(rec["truth_class"]).astype(str) if "truth_class" in rec else None
    model = load_model(run_dir / "model.safetensors").eval()
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name

    # per class, the spectrum whose reduced chi2 is closest to its class median: typical, not lucky
    cls = classes if classes is not None else np.array(["spectrum"] * len(chi2))
    wanted: list[str] = []
    for c in ["normal", *sorted(set(cls.tolist()) - {"normal"})]:
        hits = np.nonzero((cls == c) & np.isfinite(chi2))[0]
        if len(hits):
            wanted.append(rec_ids[hits[np.argmin(np.abs(chi2[hits] - np.median(chi2[hits])))]])
        if len(wanted) == n_examples:
            break
    if len(wanted) < n_examples:
        wanted += [o for o in rec_ids if o not in wanted][: n_examples - len(wanted)]
    # one streamed pass picks those rows out of the shards
    found_rows: dict[str, dict[str, np.ndarray]] = {}
    want = set(wanted)
    cols = _columns(dataset, use_resolution=_trained_with_resolution(hist_path))
    for chunk in dataset.iter_batches(cols, batch_size=4096):
        ids = np.asarray(chunk["object_id"]).astype(str)
        for i in np.nonzero(np.isin(ids, list(want - set(found_rows))))[0]:
            found_rows[ids[i]] = {k: np.asarray(v)[i : i + 1] for k, v in chunk.items()}
        if len(found_rows) == len(want):
            break
    picks = [o for o in wanted if o in found_rows]
    if not picks:
        raise ValueError(f"{rec_path}: none of its objects is in {data}; pass the data folder that was reconstructed")
    rows = {k: np.concatenate([found_rows[o][k] for o in picks]) for k in found_rows[picks[0]]}
    prep = prepare_spectra(rows, inst, keep_all=True, fit_amplitude=model.config.normalize)
    with torch.no_grad():
        res = model(prep.y, prep.w, prep.z, resolution=prep.resolution)
        ex_chi2 = reduced_chi2(prep.y, prep.w * res.valid, res.observed).numpy()
    label = dict(zip(rec_ids, cls, strict=True))

    best = min(summary["history"], key=lambda h: h.get("val_loss", np.inf)) if summary["history"] else {}
    rf = model.config.restframe
    info = {
        "instrument": inst,
        "training spectra": summary["n_train"],
        "validation spectra": summary["n_val"],
        "epochs run": summary["epochs_run"],
        "training time [s]": summary["train_seconds"],
        "best validation median reduced chi2": float(best.get("val_chi2", float("nan"))),
        "reconstructed spectra": len(chi2),
        "median reduced chi2 (all reconstructed)": float(np.nanmedian(chi2)) if len(chi2) else float("nan"),
        "latent dimension": model.config.n_latent,
        "restframe grid": f"{rf.start:.0f}-{rf.stop:.0f} A, {rf.n} px",
    }
    report = Report(title, subtitle=f"data: {data.resolve()}  run: {run_dir.resolve()}")
    report.add("Summary", sections.summary_section(info, chi2, classes))
    report.add("Training", sections.training_section(summary["history"]))
    report.add(
        "Example reconstructions",
        sections.examples_section(
            dataset.wave,
            prep.y.numpy(),
            (prep.w * res.valid).numpy(),
            res.observed.numpy(),
            prep.z.numpy(),
            ex_chi2,
            [f"{o} ({label[o]})" for o in picks],
            model.wave_rest.numpy(),
            res.restframe.numpy(),
        ),
    )
    report.add("Reduced chi-square", sections.chi2_section(chi2, classes))
    report.add("Latent space", sections.latent_section(latents, np.asarray(rec["z"], dtype=np.float64), classes))
    return report.write(out)

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
    "PreparedSpectra",
    "make_report",
    "prepare_spectra",
    "reconstruct",
    "simulate_dataset",
    "train_autoencoder",
]

log = logging.getLogger(__name__)


def _small(instrument: str) -> AutoencoderConfig:
    # CPU-demo size: narrower encoder, a 2x coarser restframe grid, a smaller decoder
    rf = RestframeGrid(2359.0, 9332.0, 3500) if instrument == "SDSS" else RestframeGrid(2000.0, 9824.0, 4890)
    return AutoencoderConfig(
        instrument=instrument,
        n_latent=8,
        restframe=rf,
        encoder_channels=(32, 64, 128),
        encoder_hidden=(64, 32),
        decoder_hidden=(64, 256, 512),
    )


def _paper(instrument: str) -> AutoencoderConfig:
    rf = RestframeGrid() if instrument == "SDSS" else RestframeGrid.desi()
    return AutoencoderConfig(instrument=instrument, restframe=rf)


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
    """Model-ready tensors: ``y`` normalised flux, ``w`` weights, ``z`` redshifts, ``index`` rows kept."""

    y: torch.Tensor
    w: torch.Tensor
    z: torch.Tensor
    index: np.ndarray
    norm: torch.Tensor
    skipped: dict[str, int]

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"y": self.y, "w": self.w, "z": self.z}


def prepare_spectra(columns: dict[str, np.ndarray], instrument: str, keep_all: bool = False) -> PreparedSpectra:
    """Weights from ``ivar`` and ``mask``, SPENDER median normalisation, unusable rows dropped.

    A row is dropped (and counted in ``skipped``) when its redshift is missing or outside
    the instrument's range, or when the normalisation window has no good pixel. With
    ``keep_all`` such rows are kept with zero weight (and ``z = 0``) instead, so that
    streamed batches keep their size.
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
    skipped["no_normalisation"] = int(bad_norm.sum())
    keep &= ~bad_norm
    if keep_all:
        norm = torch.where(torch.from_numpy(keep), norm, torch.ones_like(norm))
        w = np.where(keep[:, None], w, 0.0).astype(np.float32)
        zt = torch.where(torch.from_numpy(keep), zt, torch.zeros_like(zt))
        idx = np.arange(len(z))
    else:
        idx = np.nonzero(keep)[0]
        if any(skipped.values()):
            log.warning("skipped spectra: %s", {k: v for k, v in skipped.items() if v})
    nm = norm[idx].float()
    y = torch.from_numpy(flux[idx]) / nm[:, None]
    wt = torch.from_numpy(w[idx]) * nm[:, None] ** 2
    return PreparedSpectra(y=y, w=wt, z=zt[idx].float(), index=idx, norm=nm, skipped=skipped)


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(batch["y"], batch["w"], batch["z"], check=False)
    return fiducial_loss(batch["y"], batch["w"] * out.valid, out.observed.float(), reduce=False)


def _metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = model(batch["y"], batch["w"], batch["z"], check=False)
    return {"chi2": reduced_chi2(batch["y"], batch["w"] * out.valid, out.observed.float())}


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch.device(name)


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
) -> dict:
    """Train a SPENDER autoencoder on a shard folder (train/val splits by object-id hash).

    Writes ``run_dir/checkpoint.pt`` (resumable), ``run_dir/model.safetensors`` (best
    validation loss) and ``run_dir/history.json``.

    Args:
        data: Folder written by ``speculum simulate`` or ``speculum ingest``.
        run_dir: Output folder.
        model_config: Architecture (default: the ``small`` preset for the data's
            instrument). On resume, taken from the checkpoint and must match if given.
        train_config: Optimisation settings.
        resume: Continue from ``run_dir/checkpoint.pt``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
        progress: Progress bars.
        limit: Use at most this many training rows (quick runs; in-memory mode).
        stream: Stream the training split from the shards (:class:`StreamBatches`: each
            DDP rank reads its own shards, memory independent of the catalogue) instead
            of holding it in memory. Unusable rows are zero-weighted rather than dropped.
        shuffle_buffer: Rows in the stream's shuffle buffer.
        val_limit: Validate on at most this many rows (default: all; 20,000 when streaming).

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
            raise ValueError(f"{ckpt_path}: model config differs from the checkpoint's; omit it to resume")
        model_config = saved
    elif not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path}: a run exists here; use --resume to continue it or choose another folder")
    model_config = model_config or PRESETS["small"](inst)
    if model_config.instrument != inst:
        raise ValueError(f"model_config.instrument: {model_config.instrument} but the data are {inst}")
    cols = ("object_id", "z", "flux", "ivar", "mask")
    if stream:
        source = StreamBatches(
            data,
            tcfg.batch_size,
            lambda c: prepare_spectra(c, inst, keep_all=True).as_dict(),
            seed=tcfg.seed,
            shuffle_buffer=shuffle_buffer,
        )
        n_train, skipped = int(dataset.manifest["splits"]["train"]), {}
        val_limit = 20_000 if val_limit is None else val_limit
    else:
        train = prepare_spectra(dataset.read(cols, split="train", limit=limit), inst)
        source, n_train, skipped = train.as_dict(), len(train.z), train.skipped
    val = prepare_spectra(dataset.read(cols, split="val", limit=val_limit), inst)
    log.info(
        "training on %d spectra (%s), validating on %d", n_train, "streamed" if stream else "in memory", len(val.z)
    )
    dev = _device(device)
    torch.manual_seed(tcfg.seed)
    model = SpectrumAutoencoder(model_config).to(dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = run_dir / "model.safetensors"
    trainer = Trainer(
        model,
        _loss,
        tcfg,
        run_dir,
        metrics_fn=_metrics,
        metadata={"model_config": model_config.to_dict(), "data": str(Path(data).resolve())},
        on_best=lambda m: save_model(m, model_path),
        progress=progress,
    )
    t0 = time.perf_counter()
    history = trainer.fit(source, val.as_dict(), resume=resume)
    if not model_path.exists():  # no validation rows: keep the last weights
        save_model(model, model_path)
    summary = {
        "data": str(Path(data).resolve()),
        "instrument": inst,
        "n_train": n_train,
        "n_val": len(val.z),
        "streamed": stream,
        "skipped_train": skipped,
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


@torch.no_grad()
def reconstruct(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, np.ndarray]:
    """Encode and reconstruct spectra; write one row per object (``.parquet`` or ``.fits``).

    Columns: ``object_id``, ``z``, ``split``, ``latents`` (list), ``reduced_chi2``,
    ``n_valid`` and any ``truth_class`` of simulated data.

    Returns:
        The written columns.
    """
    model = load_model(model_path, map_location=_device(device)).eval()
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name
    if model.config.instrument != inst:
        raise ValueError(f"{model_path}: model is for {model.config.instrument}, data {data} are {inst}")
    names = dataset.columns
    cols = ["object_id", "z", "flux", "ivar", "mask", "split"] + [c for c in ("truth_class",) if c in names]
    table = dataset.read(cols, split=split)
    prep = prepare_spectra(table, inst)
    dev = next(model.parameters()).device
    latents, chi2, nval = [], [], []
    for idx in torch.arange(len(prep.z)).split(batch_size):
        y, w, z = prep.y[idx].to(dev), prep.w[idx].to(dev), prep.z[idx].to(dev)
        res = model(y, w, z)
        latents.append(res.latents.cpu())
        chi2.append(reduced_chi2(y, w * res.valid, res.observed).cpu())
        nval.append(((w * res.valid) > 0).sum(1).cpu())
    k = prep.index
    result = {
        "object_id": table["object_id"][k],
        "z": table["z"][k],
        "split": table["split"][k],
        "latents": torch.cat(latents).numpy() if latents else np.zeros((0, model.config.n_latent), np.float32),
        "reduced_chi2": torch.cat(chi2).numpy() if chi2 else np.zeros(0, np.float32),
        "n_valid": torch.cat(nval).numpy().astype(np.int32) if nval else np.zeros(0, np.int32),
    }
    if "truth_class" in table:
        result["truth_class"] = table["truth_class"][k]
    units = {"z": "", "latents": "", "reduced_chi2": "", "n_valid": "pix"}
    write_results(out, result, units, {"model": str(model_path), "data": str(data), "instrument": inst})
    return result


def make_report(
    run_dir: str | Path,
    data: str | Path,
    reconstructions: str | Path,
    out: str | Path,
    n_examples: int = 4,
    title: str = "speculum: spectrum autoencoder",
) -> Path:
    """Write the self-contained HTML report of a training run.

    Args:
        run_dir: Folder of ``speculum train`` (``history.json``, ``model.safetensors``).
        data: The shard folder that was reconstructed.
        reconstructions: Parquet file of ``speculum reconstruct``.
        out: HTML file to write.
        n_examples: Example spectra to draw: per class (normal first, then anomalies) the
            one whose reduced chi2 is closest to its class median.

    Returns:
        The report path.
    """
    import pyarrow.parquet as pq

    from speculum.report import Report
    from speculum.report import autoencoder as sections

    run_dir = Path(run_dir)
    hist_path = run_dir / "history.json"
    if not hist_path.exists():
        raise FileNotFoundError(f"{hist_path}: no training history; run `speculum train` first")
    summary = json.loads(hist_path.read_text())
    rec_path = Path(reconstructions)
    if not rec_path.exists():
        raise FileNotFoundError(f"{rec_path}: no reconstructions; run `speculum reconstruct` first")
    rec = pq.read_table(rec_path).to_pydict()
    chi2 = np.asarray(rec["reduced_chi2"], dtype=np.float64)
    latents = np.asarray(rec["latents"], dtype=np.float64)
    classes = np.asarray(rec["truth_class"]) if "truth_class" in rec else None
    model = load_model(run_dir / "model.safetensors").eval()
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name

    # example spectra: held-out rows, one normal galaxy then anomalies of different classes
    names = dataset.columns
    cols = ["object_id", "z", "flux", "ivar", "mask"] + [c for c in ("truth_class",) if c in names]
    table = dataset.read(cols, split="test") or dataset.read(cols)
    prep = prepare_spectra(table, inst)
    cls = (
        np.asarray(table["truth_class"])[prep.index] if "truth_class" in table else np.array(["spectrum"] * len(prep.z))
    )
    # per class, the spectrum whose reduced chi2 is closest to its class median: typical, not lucky
    rec_chi2 = dict(zip(rec["object_id"], chi2, strict=True))
    ex_ids = np.asarray(table["object_id"])[prep.index]
    picks = []
    for c in ["normal", *sorted(set(cls.tolist()) - {"normal"})]:
        hits = np.nonzero(cls == c)[0]
        scores = np.array([rec_chi2.get(ex_ids[h], np.nan) for h in hits])
        if len(hits):
            ok = np.isfinite(scores)
            best = hits[ok][np.argmin(np.abs(scores[ok] - np.median(scores[ok])))] if ok.any() else hits[0]
            picks.append(int(best))
        if len(picks) == n_examples:
            break
    if len(picks) < n_examples:
        picks += [i for i in range(len(prep.z)) if i not in picks][: n_examples - len(picks)]
    picks = picks[:n_examples]
    with torch.no_grad():
        res = model(prep.y[picks], prep.w[picks], prep.z[picks])
        ex_chi2 = reduced_chi2(prep.y[picks], prep.w[picks] * res.valid, res.observed).numpy()
    ids = np.asarray(table["object_id"])[prep.index][picks]

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
    report = Report(title, subtitle=f"data: {Path(data).resolve()}  run: {run_dir.resolve()}")
    report.add("Summary", sections.summary_section(info, chi2, classes))
    report.add("Training", sections.training_section(summary["history"]))
    report.add(
        "Example reconstructions",
        sections.examples_section(
            dataset.wave,
            prep.y[picks].numpy(),
            (prep.w[picks] * res.valid).numpy(),
            res.observed.numpy(),
            prep.z[picks].numpy(),
            ex_chi2,
            [f"{o} ({c})" for o, c in zip(ids, cls[picks], strict=True)],
            model.wave_rest.numpy(),
            res.restframe.numpy(),
        ),
    )
    report.add("Reduced chi-square", sections.chi2_section(chi2, classes))
    report.add("Latent space", sections.latent_section(latents, np.asarray(rec["z"], dtype=np.float64), classes))
    return report.write(out)

"""Training entry point of the autoencoder method."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from speculum._files import atomic_write_text
from speculum._runtime import pick_device
from speculum.autoencode._common import _columns, _log_skipped, log
from speculum.autoencode.config import PRESETS
from speculum.autoencode.losses import AutoencoderMethod
from speculum.io import SpectraSet, prepare_spectra
from speculum.models import AutoencoderConfig, SpectrumAutoencoder, config_from_dict
from speculum.train import (
    CHECKPOINT_NAME,
    CheckpointError,
    Method,
    StreamBatches,
    TrainConfig,
    Trainer,
    content_hash,
    load_checkpoint,
    load_model,
    save_model,
    write_run_manifest,
)
from speculum.train.checkpoint import LEGACY_CHECKPOINT_NAME

__all__ = ["train"]


def train(
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
    init: str | Path | None = None,
    method: Callable[[SpectrumAutoencoder, TrainConfig], Method] | None = None,
    method_config: dict | None = None,
) -> dict:
    """Train a SPENDER autoencoder on a shard folder (train/val splits by object-id hash).

    Writes ``run_dir/checkpoint.safetensors`` (resumable), ``run_dir/model.safetensors`` (best
    validation loss) and ``run_dir/history.json``. Where the data carry per-spectrum
    resolution matrices (DESI), the model's forward pass applies them.

    Args:
        data: Folder written by ``speculum simulate`` or ``speculum ingest``.
        run_dir: Output folder.
        model_config: Architecture (default: the ``small`` preset for the data's
            instrument). On resume, taken from the checkpoint and must match if given.
        train_config: Optimisation settings.
        resume: Continue from ``run_dir/checkpoint.safetensors``. The checkpoint records the data
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
        init: Start from the weights of this ``model.safetensors`` (e.g. a model trained with
            the fiducial loss, before the outlier method's added losses); its config must
            equal the run's (taken from it when ``model_config`` is not given).
        method: ``method(model, train_config) -> Method``: what the trainer drives (default
            :class:`AutoencoderMethod`; the outlier method adds its losses this way).
        method_config: The method's own settings, saved in the checkpoint, the history and
            the run manifest (``{"name": ..., ...}``); a resume must match them.

    Returns:
        Summary: history, best validation loss and reduced chi2, paths, counts.
    """
    run_dir = Path(run_dir)
    dataset = SpectraSet.open(data)
    inst = dataset.instrument.name
    tcfg = train_config or TrainConfig()
    ckpt_path = run_dir / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        saved = config_from_dict(load_checkpoint(ckpt_path)["metadata"]["model_config"])
        if model_config is not None and model_config != saved:
            diff = {k: (v, getattr(model_config, k)) for k, v in vars(saved).items() if getattr(model_config, k) != v}
            raise ValueError(f"{ckpt_path}: model config differs from the checkpoint's (saved, given): {diff}")
        model_config = saved
    if (run_dir / LEGACY_CHECKPOINT_NAME).exists():
        raise CheckpointError(
            f"{run_dir / LEGACY_CHECKPOINT_NAME}: a run in the checkpoint format before speculum's safetensors "
            "checkpoints; it can be neither resumed nor overwritten: choose a new folder"
        )
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path}: a run exists here; use --resume to continue it or choose another folder")
    if init is not None and not (resume and ckpt_path.exists()):
        start = load_model(init)
        if model_config is not None and model_config != start.config:
            raise ValueError(f"{init}: its model config differs from the requested one")
        model_config = start.config
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
    dev = pick_device(device)
    torch.manual_seed(tcfg.seed)
    model = SpectrumAutoencoder(model_config)
    if init is not None and not (resume and ckpt_path.exists()):
        model.load_state_dict(start.state_dict())
        log.info("starting from the weights of %s", init)
    model = model.to(dev)
    method_config = method_config or {"name": "autoencode"}
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = run_dir / "model.safetensors"
    identity = {
        "data": dataset.fingerprint,
        "limit": limit,
        "stream": stream,
        "shuffle_buffer": shuffle_buffer if stream else None,
        "val_limit": val_limit,
        "use_resolution": use_resolution,
        "init": None if init is None else content_hash(init),
        "method": json.dumps(method_config, sort_keys=True),
    }
    trainer = Trainer(
        AutoencoderMethod(model) if method is None else method(model, tcfg),
        config=tcfg,
        run_dir=run_dir,
        metadata={"model_config": model_config.to_dict(), "data": str(Path(data).resolve()), "method": method_config},
        identity=identity,
        on_best=lambda _: save_model(model, model_path),
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
        "method": method_config,
        "init": None if init is None else str(init),
        "history": history,
    }
    if trainer.rank == 0:
        atomic_write_text(run_dir / "history.json", json.dumps(summary, indent=1, default=float))
        write_run_manifest(
            run_dir,
            inputs={"data": data, **({"init": init} if init is not None else {})},
            outputs={"model": model_path},
            config={
                "method": method_config["name"],
                "method_config": method_config,
                "model_config": model_config.to_dict(),
                "train_config": tcfg.__dict__,
            },
        )
    return summary

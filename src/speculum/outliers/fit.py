"""Training entry points of the outlier method: the invariant autoencoder, then the flow over its latents."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from speculum._files import atomic_write_text
from speculum._runtime import pick_device
from speculum.autoencode import train as train_autoencoder
from speculum.io import SpectraSet
from speculum.models.flow import FlowConfig, fingerprint
from speculum.outliers.apply import _columns
from speculum.outliers.config import InvarianceConfig
from speculum.outliers.losses import OutlierMethod
from speculum.train import TrainConfig, load_model, write_run_manifest
from speculum.train.flow import FLOW_NAME
from speculum.train.flow import fit_flow as _fit_flow

__all__ = ["encode", "fit_flow", "train"]

log = logging.getLogger("speculum.outliers")


def train(
    data: str | Path,
    run_dir: str | Path,
    invariance: InvarianceConfig | None = None,
    init: str | Path | None = None,
    **kwargs,
) -> dict:
    """Train an autoencoder with redshift augmentation and the similarity and consistency losses.

    Everything else (resume, streaming, DDP, the data's splits, ``model.safetensors``) is
    :func:`speculum.autoencode.train`'s, to which ``kwargs`` go (``model_config``,
    ``train_config``, ``device``, ``progress``, ``limit``, ``stream``, ...).

    Args:
        data: Shard folder.
        run_dir: Output folder.
        invariance: The added losses (default: the published form, :class:`InvarianceConfig`).
        init: Continue from this fiducial-loss ``model.safetensors`` (the papers train the
            fiducial model first, then add the losses).

    Returns:
        The training summary (as :func:`speculum.autoencode.train`), with ``method``
        holding the invariance config.
    """
    inv = invariance or InvarianceConfig()
    return train_autoencoder(
        data,
        run_dir,
        init=init,
        method=lambda model, tcfg: OutlierMethod(model, inv, tcfg.epochs),
        method_config={"name": "outliers", "invariance": inv.to_dict()},
        **kwargs,
    )


@torch.no_grad()
def encode(
    model: str | Path | torch.nn.Module,
    data: str | Path,
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    limit: int | None = None,
) -> dict[str, np.ndarray]:
    """Latents ``(N, S)``, ``z`` and ``object_id`` of a shard folder's usable rows, streamed."""
    from speculum.io import prepare_spectra

    if not isinstance(model, torch.nn.Module):
        model = load_model(Path(model) / "model.safetensors" if Path(model).is_dir() else model,
                           map_location=pick_device(device))  # fmt: skip
    model = model.eval()
    ds = SpectraSet.open(data)
    dev = next(model.parameters()).device
    out: dict[str, list] = {"latents": [], "z": [], "object_id": []}
    n = 0
    for chunk in ds.iter_batches(_columns(ds), split=split, batch_size=4096):
        prep = prepare_spectra(chunk, model.config.instrument, fit_amplitude=model.config.normalize)
        for idx in torch.arange(len(prep.z)).split(batch_size):
            s = model.encode(prep.y[idx].to(dev), prep.w[idx].to(dev))
            out["latents"].append(s.float().cpu().numpy())
        out["z"].append(prep.z.numpy())
        out["object_id"].append(np.asarray(chunk["object_id"])[prep.index])
        n += len(prep.z)
        if limit is not None and n >= limit:
            break
    res = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    if limit is not None:
        res = {k: v[:limit] for k, v in res.items()}
    return res


def fit_flow(
    run_dir: str | Path,
    data: str | Path | None = None,
    config: FlowConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = False,
    device: str = "auto",
    limit: int | None = None,
) -> dict:
    """Fit a flow to the latents of a run's autoencoder over the data's training split.

    Writes ``run_dir/flow.safetensors`` (the best held-out flow; its config records the
    encoder's :func:`~speculum.models.flow.fingerprint`, so it refuses latents of another
    encoder), ``run_dir/flow/`` (its resumable run) and ``run_dir/flow.json`` (summary).

    Args:
        run_dir: The autoencoder's run folder (``model.safetensors``).
        data: Shard folder (default: the one the run was trained on, from its ``history.json``).
        config: Flow architecture (default: MAF, 5 transforms, hidden 50; ``features`` is set
            from the model).
        train_config: Flow optimisation (default: 100 epochs, batch 256, lr 1e-3, patience 10).
        resume: Continue an interrupted flow fit.
        progress: Progress bars.
        device: Device of the encoding pass.
        limit: Fit to at most this many training spectra.

    Returns:
        Summary: held-out ``-log p`` per epoch, counts, paths.
    """
    run_dir = Path(run_dir)
    model_path = run_dir / "model.safetensors"
    if data is None:
        hist = run_dir / "history.json"
        if not hist.exists():
            raise FileNotFoundError(f"{hist}: no training history to find the data; pass the data folder")
        data = json.loads(hist.read_text())["data"]
    model = load_model(model_path, map_location=pick_device(device))
    lat = encode(model, data, split="train", limit=limit)["latents"]
    if len(lat) < 10:
        raise ValueError(f"{data}: {len(lat)} usable training spectra; a flow needs more")
    source = fingerprint(model.encoder)
    base = config or FlowConfig(features=model.config.n_latent)
    cfg = FlowConfig(**{**base.to_dict(), "features": model.config.n_latent, "source": source})
    tcfg = train_config or TrainConfig(epochs=100, batch_size=256, lr=1e-3, patience=10, precision="fp32")
    flow, history = _fit_flow(
        torch.from_numpy(lat), run_dir / "flow", cfg, tcfg, resume=resume, progress=progress,
        identity={"source": source, "data": SpectraSet.open(data).fingerprint}, out=run_dir / FLOW_NAME,
    )  # fmt: skip
    summary = {
        "flow": str(run_dir / FLOW_NAME),
        "flow_config": cfg.to_dict(),
        "train_config": tcfg.__dict__,
        "n_latents": len(lat),
        "data": str(data),
        "best_val_nll": min((h["val_loss"] for h in history if "val_loss" in h), default=None),
        "history": history,
    }
    atomic_write_text(run_dir / "flow.json", json.dumps(summary, indent=1, default=float))
    write_run_manifest(
        run_dir / "flow",
        inputs={"model": model_path, "data": data},
        outputs={"flow": run_dir / FLOW_NAME},
        config={"method": "outliers.flow", "flow_config": cfg.to_dict(), "train_config": tcfg.__dict__},
    )
    return summary

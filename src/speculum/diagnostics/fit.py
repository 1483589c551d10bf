"""Training a score-based prior (denoising score matching) through the one trainer.

Example:
    >>> import tempfile, torch
    >>> from speculum.models.score import ScoreConfig
    >>> from speculum.train import TrainConfig
    >>> x = torch.randn(256, 8, 8)
    >>> net, hist = train_prior(x, tempfile.mkdtemp(), ScoreConfig(shape=(8, 8), channels=8, levels=1),
    ...                         TrainConfig(epochs=2, batch_size=64, lr=1e-3, precision="fp32"))
    >>> len(hist), net.config.shape
    (2, (8, 8))
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from speculum.diagnostics.losses import dsm_loss
from speculum.models.score import ScoreConfig, ScoreNet
from speculum.train.checkpoint import load_model, save_model
from speculum.train.sources import holdout_split
from speculum.train.trainer import LossMethod, TrainConfig, Trainer

__all__ = ["PRIOR_NAME", "train_prior"]

log = logging.getLogger(__name__)

PRIOR_NAME = "prior.safetensors"


def _loss(net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return dsm_loss(net, batch["x"])


def train_prior(
    x: torch.Tensor,
    run_dir: str | Path,
    config: ScoreConfig,
    train_config: TrainConfig | None = None,
    val_fraction: float = 0.1,
    resume: bool = False,
    progress: bool = False,
) -> tuple[ScoreNet, list[dict]]:
    """Fit a :class:`~speculum.models.score.ScoreNet` to samples ``x`` ``(N, *config.shape)``.

    The trainer owns the loop (checkpoints every epoch and every ``checkpoint_every`` steps,
    exact resume with ``resume=True``, early stopping on the held-out denoising loss). The
    best network is written to ``run_dir/prior.safetensors``.

    Args:
        x: Training samples (images ``(N, H, W)`` or spectra ``(N, L)``).
        run_dir: The prior's run folder.
        config: Architecture and noise range.
        train_config: Optimisation (default: 30 epochs, batch 64, lr 2e-3, patience 5).
        val_fraction: Held-out fraction (after a seeded shuffle).
        resume: Continue from ``run_dir``'s checkpoint.
        progress: Progress bars.

    Returns:
        The best network (eval mode) and the per-epoch history.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if tuple(x.shape[1:]) != config.shape:
        want = ", ".join(map(str, config.shape))
        raise ValueError(f"x: expected (N, {want}) for this ScoreConfig, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"x: {int((~torch.isfinite(x)).flatten(1).any(1).sum())} samples with NaN or inf values")
    tcfg = train_config or TrainConfig(epochs=30, batch_size=64, lr=2e-3, patience=5, precision="fp32")
    run_dir = Path(run_dir)
    train, val, digest = holdout_split({"x": x}, val_fraction, tcfg.seed, what="samples")
    with torch.random.fork_rng():
        torch.manual_seed(tcfg.seed)
        net = ScoreNet(config)
    net.standardize_to(train["x"])
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / PRIOR_NAME
    trainer = Trainer(
        LossMethod(net, _loss),
        config=tcfg,
        run_dir=run_dir,
        metadata={"score_config": config.to_dict()},
        identity={"rows": digest, "val_fraction": val_fraction},
        on_best=lambda _: save_model(net, out),
        progress=progress,
    )
    history = trainer.fit(train, val, resume=resume)
    if val is None or not out.exists():
        save_model(net, out)
    best = load_model(out)
    log.info("score prior: %d epochs, final train loss %.4g", len(history), history[-1].get("train_loss", float("nan")))
    return best.eval(), history

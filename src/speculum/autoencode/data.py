"""Simulated training data for the autoencoder method: the galaxy simulator written as shards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from speculum.io import DataFormatError, ShardWriter
from speculum.sim import BLOCK_SIZE, GalaxySimulator, SimConfig

__all__ = ["simulate_dataset"]


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

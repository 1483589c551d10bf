"""Stars among galaxies: a star model beside the galaxy model (after Liang et al. 2023b, DESI).

A second autoencoder and flow trained on stellar spectra observed through the same
instrument (:class:`~speculum.sim.stars.StarSimulator`, ``z <= 0.005``) gives every object
a second probability beside the galaxy model's: the galaxy model encodes the object at its
catalogued redshift, the star model at rest (``z = 0``). Two statistics, both in nats:

* **latent** (the outlier method's ``log p``): ``log_p_galaxy`` and ``log_p_star``, each flow's
  log density of its own encoder's latents, and ``delta_log_p = log_p_star - log_p_galaxy``.
  The two densities live in two different latent spaces (the models may even have
  different latent sizes), so their ratio is a likelihood ratio only up to the encoders'
  unknown changes of variables, and an encoder maps a spectrum unlike its training set
  wherever it likes, often into the bulk of its latents: a star's galaxy latents can look
  perfectly ordinary.
* **spectrum** (the default): each model's log probability of the *spectrum*,
  ``log_like = log_p - chi2 / 2``: the flow's density of the latents times the Gaussian noise
  likelihood of the flux given the model's reconstruction, ``prod_i N(f_i; m_i, 1 / ivar_i)``,
  evaluated at the encoder's latents. The Gaussian normalisation ``sum_i log(ivar_i / 2 pi) / 2``
  is the same for both models over the same pixels and cancels in the difference (the
  median normalisation each model applies to the flux changes ``chi2`` by nothing: residuals
  are in units of the noise); ``chi2 = reduced_chi2 * n`` with ``n`` the smaller of the two
  models' counts of usable pixels, so both are summed over as many pixels.
  ``delta_log_like = log_like_star - log_like_galaxy`` is then the log likelihood ratio of the
  two models for the observed spectrum, the quantity a template pipeline compares when it
  picks the class with the lowest chi2 (redrock), plus the flows' priors.

``star_flag`` marks objects labelled as galaxies (or unlabelled, as simulations are; see
:data:`GALAXY_LABELS`) whose chosen statistic exceeds a threshold. The default
:data:`DEFAULT_THRESHOLD` is a margin of 10 nats, a likelihood ratio of ``e**10 ~ 2e4`` in
favour of the star model: twice the "very strong evidence" of Kass & Raftery (1995,
``2 ln B > 10``), so that objects the two models describe about equally well (a galaxy with
a strong stellar continuum, a star-galaxy blend) stay unflagged. Stars themselves reach
``delta_log_like`` of thousands of nats. Measured purity and completeness:
:func:`star_flag_benchmark` (and the project README).

Parts:

* :func:`simulate_star_dataset`: simulated stars as a shard folder (the star model's data);
* :func:`simulate_star_mix`: galaxies with a fraction of stars, all labelled ``GALAXY``
  (the misclassification test set; ``truth_class`` says which are stars);
* :func:`train_star_model`: :func:`speculum.autoencode.train` on star shards, then
  :func:`speculum.outliers.fit_flow`;
* :func:`classify`: the catalogue (``object_id``, ``z``, ``log_p_galaxy``, ``log_p_star``,
  ``delta_log_p``, ``log_like_galaxy``, ``log_like_star``, ``delta_log_like``, ``star_flag``, fit
  quality and flags of both models, ``class`` / ``truth_class`` where present);
* :func:`star_flag_quality`: purity and completeness of ``star_flag`` against the truth;
* :func:`star_flag_benchmark`: simulate, train both models, classify a mix, measure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speculum.io import DataFormatError, ShardWriter, SpectraSet, read_results, write_results
from speculum.metrics import roc_auc
from speculum.schema import spectra_columns
from speculum.sim import GalaxySimulator, SimConfig, SimulatedSpectra
from speculum.sim.stars import STAR_BLOCK_SIZE, StarConfig, StarSimulator

if TYPE_CHECKING:
    from speculum.models.flow import FlowConfig
    from speculum.train import TrainConfig

__all__ = [
    "CLASSIFY_UNITS",
    "DEFAULT_THRESHOLD",
    "GALAXY_LABELS",
    "STATISTICS",
    "classify",
    "simulate_star_dataset",
    "simulate_star_mix",
    "star_flag_benchmark",
    "star_flag_quality",
    "train_star_model",
]

log = logging.getLogger("speculum.outliers")

DEFAULT_THRESHOLD = 10.0
"""Default margin (nats) of the statistic above which a galaxy-labelled object is flagged (module docstring)."""
STATISTICS = {"spectrum": "delta_log_like", "latent": "delta_log_p"}
"""What ``star_flag`` can be decided on: statistic name to catalogue column (module docstring)."""
GALAXY_LABELS = ("GALAXY", "")
"""Values of a ``class`` column (stripped, upper case) that count as "labelled a galaxy" (empty: unknown)."""
CLASSIFY_UNITS = {
    "z": "",
    "log_p_galaxy": "",
    "log_p_star": "",
    "delta_log_p": "",
    "log_like_galaxy": "",
    "log_like_star": "",
    "delta_log_like": "",
    "n_valid_galaxy": "pix",
    "n_valid_star": "pix",
}


# ---------------------------------------------------------------------------------------------- data
def simulate_star_dataset(
    out: str | Path,
    n: int,
    instrument: str = "SDSS",
    source: str = "templates",
    seed: int = 0,
    config: StarConfig | None = None,
    shard_size: int = 8 * STAR_BLOCK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Simulate ``n`` stars into a shard folder; re-running resumes (finished shards are kept).

    Args:
        out: Output folder.
        n: Number of stars.
        instrument: Instrument (ignored when ``config`` is given).
        source: Template source, ``templates``, ``mastar`` or ``miles`` (ignored when ``config`` is given).
        seed: Data-set seed.
        config: Full simulator configuration (default ``StarConfig(instrument, source=source)``).
        shard_size: Rows per shard (rounded up to a multiple of the simulator block).
        progress: Called with the number of rows finished after every shard.

    Returns:
        The output folder.

    Raises:
        DataFormatError: ``out`` holds a different simulation.
    """
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    cfg = config or StarConfig(instrument=instrument, source=source)
    shard_size = max(STAR_BLOCK_SIZE, -(-shard_size // STAR_BLOCK_SIZE) * STAR_BLOCK_SIZE)
    sim = StarSimulator(cfg)
    extra = {"simulator": {"kind": "stars", "config": cfg.to_dict(), "seed": seed, "n": n, "shard_size": shard_size}}
    writer = _writer(Path(out), cfg.instrument, "speculum.sim.stars.StarSimulator", extra)
    done = 0
    for index, start in enumerate(range(0, n, shard_size)):
        rows = min(shard_size, n - start)
        if not writer.done(index):
            writer.write(index, (b.columns(cfg.instrument) for b in sim.iter_blocks(rows, seed=seed, start=start)))
        done += rows
        if progress is not None:
            progress(done)
    writer.close()
    return Path(out)


def _writer(out: Path, instrument: str, source: str, extra: dict) -> ShardWriter:
    manifest = out / "manifest.json"
    if manifest.exists():
        old = json.loads(manifest.read_text()).get("simulator")
        if old != json.loads(json.dumps(extra["simulator"])):
            raise DataFormatError(f"{manifest}: holds a different simulation ({old}); choose another --out")
    return ShardWriter(out, instrument, {"source": source}, extra)


def _labelled(spectra: SimulatedSpectra, instrument: str, label: str) -> dict[str, object]:
    """The shard columns every row of a mix shares, with the (pipeline) ``class`` label."""
    n = len(spectra)
    return spectra_columns(
        spectra.object_id, "sim", instrument, spectra.z, spectra.flux, spectra.ivar, spectra.mask,
        resolution=spectra.resolution, **{"class": [label] * n}, truth_class=np.asarray(spectra.truth["class"]),
        truth_snr=np.asarray(spectra.truth["snr"], np.float32),
    )  # fmt: skip


def simulate_star_mix(
    out: str | Path,
    n: int,
    star_fraction: float = 0.05,
    galaxies: SimConfig | None = None,
    stars: StarConfig | None = None,
    seed: int = 0,
    shard_size: int = 8 * STAR_BLOCK_SIZE,
) -> Path:
    """Galaxies with ``round(n * star_fraction)`` stars among them, all labelled ``GALAXY``.

    The misclassification test set: the ``class`` column says ``GALAXY`` for every row (as a
    pipeline that took the stars for galaxies would), ``truth_class`` is ``star`` for the stars
    and the galaxy simulator's class (``normal`` or an anomaly) for the galaxies. Galaxies
    ``sim-<seed>-…`` come first, then stars ``star-<seed>-…``, in shards of ``shard_size`` rows.

    Args:
        out: Output folder.
        n: Rows in all.
        star_fraction: Fraction of them that are stars.
        galaxies: Galaxy simulator configuration (default ``SimConfig()``).
        stars: Star simulator configuration (default :meth:`StarConfig.matching` the galaxies').
        seed: Seed of both simulations.
        shard_size: Rows per shard (at most; galaxy and star shards are separate).
    """
    if n < 1 or not 0.0 <= star_fraction <= 1.0:
        raise ValueError(f"n, star_fraction: expected >= 1 and a fraction in [0, 1], got {n}, {star_fraction}")
    gcfg = galaxies or SimConfig()
    scfg = stars or StarConfig.matching(gcfg)
    if scfg.instrument != gcfg.instrument:
        raise ValueError(f"stars: instrument {scfg.instrument} differs from the galaxies' {gcfg.instrument}")
    n_star = int(round(n * star_fraction))
    n_gal = n - n_star
    shard_size = max(STAR_BLOCK_SIZE, -(-shard_size // STAR_BLOCK_SIZE) * STAR_BLOCK_SIZE)
    extra = {"simulator": {"kind": "star_mix", "galaxies": gcfg.to_dict(), "stars": scfg.to_dict(), "seed": seed,
                           "n": n, "star_fraction": star_fraction, "shard_size": shard_size}}  # fmt: skip
    writer = _writer(Path(out), gcfg.instrument, "speculum.outliers.stars.simulate_star_mix", extra)
    jobs: list[tuple[str, int, int]] = [("galaxy", s, min(shard_size, n_gal - s)) for s in range(0, n_gal, shard_size)]
    jobs += [("star", s, min(shard_size, n_star - s)) for s in range(0, n_star, shard_size)]
    gsim = ssim = None
    for index, (kind, start, rows) in enumerate(jobs):
        if writer.done(index):
            continue
        if kind == "galaxy":
            gsim = gsim or GalaxySimulator(gcfg)
            blocks = gsim.iter_blocks(rows, seed=seed, start=start)
        else:
            ssim = ssim or StarSimulator(scfg)
            blocks = ssim.iter_blocks(rows, seed=seed, start=start)
        writer.write(index, (_labelled(b, gcfg.instrument, "GALAXY") for b in blocks))
    writer.close()
    return Path(out)


# ---------------------------------------------------------------------------------------------- model
def train_star_model(
    star_data: str | Path,
    run_dir: str | Path,
    flow_config: FlowConfig | None = None,
    flow_train_config: TrainConfig | None = None,
    device: str = "auto",
    progress: bool = False,
    **kwargs,
) -> dict:
    """Train the star model: an autoencoder on star shards, then the flow over its latents.

    :func:`speculum.autoencode.train` (``kwargs``: ``model_config`` (default the ``small``
    preset of the data's instrument), ``train_config``, ``limit``, ``resume``, ...), then
    :func:`speculum.outliers.fit_flow` (``flow_config``, ``flow_train_config``). The run folder
    then holds ``model.safetensors`` and ``flow.safetensors`` like any outlier run, and
    :func:`classify` takes it as ``star_model``.

    Returns:
        ``{"autoencoder": <training summary>, "flow": <flow summary>}``.
    """
    from speculum.autoencode import train as train_autoencoder
    from speculum.outliers.fit import fit_flow

    ae = train_autoencoder(star_data, run_dir, device=device, progress=progress, **kwargs)
    fl = fit_flow(run_dir, star_data, config=flow_config, train_config=flow_train_config, progress=progress,
                  device=device, resume=bool(kwargs.get("resume", False)))  # fmt: skip
    return {"autoencoder": ae, "flow": fl}


# ---------------------------------------------------------------------------------------------- classify
def _galaxy_label(chunk: dict, n: int) -> np.ndarray:
    if "class" not in chunk:
        return np.ones(n, bool)
    labels = np.char.upper(np.char.strip(np.asarray(chunk["class"]).astype(str)))
    return np.isin(labels, GALAXY_LABELS)


def classify(
    data: str | Path,
    galaxy_model: str | Path,
    star_model: str | Path,
    out: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    statistic: str = "spectrum",
    split: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Galaxy and star probabilities of every object of a shard folder; flag likely stars. Writes the catalogue.

    The galaxy model scores each object at its own ``z``, the star model at ``z = 0``; the two
    models may have different latent sizes (each uses its own flow). Columns (module docstring):
    ``object_id``, ``z``, ``log_p_galaxy``, ``log_p_star``, ``delta_log_p`` (latent),
    ``log_like_galaxy``, ``log_like_star``, ``delta_log_like`` (spectrum), ``star_flag``
    (labelled a galaxy or unlabelled, :data:`GALAXY_LABELS`, and the chosen statistic above
    ``threshold``), ``reduced_chi2_galaxy``, ``reduced_chi2_star``, ``n_valid_galaxy``,
    ``n_valid_star``, ``flags_galaxy``, ``flags_star`` (each model's
    :data:`~speculum.outliers.FLAGS`), and ``class``, ``truth_class``, ``split`` where the data
    have them. Differences are NaN (and ``star_flag`` false) where either model could not
    score the object.

    Args:
        data: Shard folder.
        galaxy_model: Galaxy run folder (``model.safetensors`` + ``flow.safetensors``).
        star_model: Star run folder (:func:`train_star_model`).
        out: Catalogue, ``.parquet``, ``.fits`` or ``.fits.gz``.
        threshold: Margin in nats (default :data:`DEFAULT_THRESHOLD`).
        statistic: ``spectrum`` (``delta_log_like``, default) or ``latent`` (``delta_log_p``).
        split: Only rows of this split (default all).
        batch_size: Spectra per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ...
        progress: A progress bar over the spectra.

    Returns:
        The catalogue's columns.

    Raises:
        ValueError: A model is for another instrument than the data; an unknown statistic.
    """
    from tqdm import tqdm

    from speculum.outliers.apply import OutlierModel, _columns

    if not np.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number of nats, got {threshold}")
    if statistic not in STATISTICS:
        raise ValueError(f"statistic: expected one of {tuple(STATISTICS)}, got {statistic!r}")
    ds = SpectraSet.open(data)
    gal = OutlierModel.load(galaxy_model, device)
    star = OutlierModel.load(star_model, device)
    for what, om, path in (("galaxy", gal, galaxy_model), ("star", star, star_model)):
        if om.model.config.instrument != ds.instrument.name:
            raise ValueError(
                f"{path}: {what} model is for {om.model.config.instrument}, data {data} are {ds.instrument.name}"
            )
    cols = _columns(ds, ("class", "truth_class"))
    total = int(ds.manifest["splits"].get(split, 0)) if split else int(ds.manifest["n_spectra"])
    bar = tqdm(total=total, desc="classifying", unit="spectra", disable=not progress)
    parts: dict[str, list] = {}
    for chunk in ds.iter_batches(cols, split=split, batch_size=4096):
        n = len(chunk["z"])
        rg = gal.score_rows(chunk, batch_size)
        rs = star.score_rows(chunk, batch_size, z=0.0)
        n_common = np.minimum(rg["n_valid"], rs["n_valid"]).astype(np.float64)
        like_g = rg["log_p"] - 0.5 * rg["reduced_chi2"].astype(np.float64) * n_common
        like_s = rs["log_p"] - 0.5 * rs["reduced_chi2"].astype(np.float64) * n_common
        keep = {
            "object_id": np.asarray(chunk["object_id"]),
            "z": np.asarray(chunk["z"], np.float64),
            "log_p_galaxy": rg["log_p"],
            "log_p_star": rs["log_p"],
            "delta_log_p": rs["log_p"] - rg["log_p"],
            "log_like_galaxy": like_g,
            "log_like_star": like_s,
            "delta_log_like": like_s - like_g,
            "reduced_chi2_galaxy": rg["reduced_chi2"],
            "reduced_chi2_star": rs["reduced_chi2"],
            "n_valid_galaxy": rg["n_valid"],
            "n_valid_star": rs["n_valid"],
            "flags_galaxy": rg["flags"],
            "flags_star": rs["flags"],
        }
        keep["star_flag"] = _galaxy_label(chunk, n) & (keep[STATISTICS[statistic]] > threshold)
        for name in ("class", "truth_class", "split"):
            if name in chunk:
                keep[name] = np.asarray(chunk[name]).astype(str)
        for k, v in keep.items():
            parts.setdefault(k, []).append(v)
        bar.update(n)
    bar.close()
    if not parts:
        raise ValueError(f"{data}: no rows to classify" + (f" in split {split!r}" if split else ""))
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    cat["star_flag"] = cat["star_flag"].astype(bool)
    meta = {
        "threshold": float(threshold),
        "statistic": statistic,
        "galaxy_model_hash": gal.identity["model_hash"],
        "galaxy_flow_hash": gal.identity["flow_hash"],
        "star_model_hash": star.identity["model_hash"],
        "star_flow_hash": star.identity["flow_hash"],
        "data_fingerprint": ds.fingerprint,
    }
    write_results(out, cat, CLASSIFY_UNITS, meta)
    log.info("classified %d objects: %d flagged as stars; wrote %s", len(cat["z"]), int(cat["star_flag"].sum()), out)
    return cat


# ---------------------------------------------------------------------------------------------- quality
def star_flag_quality(
    catalogue: str | Path | dict, truth_column: str = "truth_class", star_value: str = "star"
) -> dict[str, float | int]:
    """Purity and completeness of ``star_flag`` against the truth, among galaxy-labelled objects.

    Stars are rows with ``truth_column == star_value``; only rows labelled a galaxy (or
    unlabelled) count, the population ``star_flag`` is defined on. Purity = flagged stars /
    flagged (NaN when nothing is flagged); completeness = flagged stars / stars (NaN without
    stars); ``false_positive_rate`` = flagged non-stars / non-stars.

    Args:
        catalogue: :func:`classify`'s catalogue, or its file.
        truth_column: The truth column.
        star_value: Its value for stars.

    Returns:
        ``purity``, ``completeness``, ``false_positive_rate``, ``n``, ``n_stars``, ``n_flagged``,
        ``n_true_flagged``.
    """
    cat = read_results(catalogue) if isinstance(catalogue, (str, Path)) else catalogue
    if truth_column not in cat:
        raise ValueError(f"catalogue: no {truth_column!r} column to measure against (simulated data carry it)")
    labelled = _galaxy_label(cat, len(cat["star_flag"]))
    is_star = (np.asarray(cat[truth_column]).astype(str) == star_value)[labelled]
    flag = np.asarray(cat["star_flag"], bool)[labelled]
    n_star, n_flag, n_tp = int(is_star.sum()), int(flag.sum()), int((flag & is_star).sum())
    n_other = int((~is_star).sum())
    return {
        "purity": n_tp / n_flag if n_flag else float("nan"),
        "completeness": n_tp / n_star if n_star else float("nan"),
        "false_positive_rate": (n_flag - n_tp) / n_other if n_other else float("nan"),
        "n": int(labelled.sum()),
        "n_stars": n_star,
        "n_flagged": n_flag,
        "n_true_flagged": n_tp,
    }


def star_flag_benchmark(
    work: str | Path,
    n_train: int = 1024,
    n_mix: int = 2048,
    star_fraction: float = 0.05,
    epochs: int = 10,
    flow_epochs: int = 20,
    galaxies: SimConfig | None = None,
    source: str = "templates",
    thresholds: tuple[float, ...] = (0.0, DEFAULT_THRESHOLD, 100.0),
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 64,
) -> dict:
    """Simulate, train a galaxy and a star model, classify a mix, measure ``star_flag``.

    Galaxies (seed ``seed``) and stars (seed ``seed + 1``) of ``n_train`` each train the two
    models (``small`` preset, ``epochs`` epochs of ``batch_size``, no early stop; flows of 2 transforms,
    hidden 16, ``flow_epochs`` epochs); the mix (:func:`simulate_star_mix`, seed ``seed + 2``,
    objects neither model saw) is classified and :func:`star_flag_quality` measured for both
    statistics at every threshold, with each statistic's AUC (stars against everything else).

    Returns:
        ``{"default": quality (spectrum statistic, DEFAULT_THRESHOLD), "statistics": {stat: {"auc": ...,
        "thresholds": {str(t): quality}, "quantiles": {"stars": [...], "others": [...]}}}, "catalogue": path,
        "seconds": ..., ...}`` (quantiles at ``quantile_levels``).
    """
    import time

    from speculum.autoencode import PRESETS, simulate_dataset
    from speculum.autoencode import train as train_autoencoder
    from speculum.models.flow import FlowConfig
    from speculum.outliers.fit import fit_flow
    from speculum.train import TrainConfig

    t0 = time.perf_counter()
    work = Path(work)
    gcfg = galaxies or SimConfig()
    inst = gcfg.instrument
    scfg = StarConfig.matching(gcfg, source=source)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, patience=0, seed=seed)
    ftcfg = TrainConfig(epochs=flow_epochs, batch_size=128, lr=1e-3, patience=0, precision="fp32", seed=seed)
    flow_cfg = FlowConfig(features=1, transforms=2, hidden=16)
    model_cfg = PRESETS["small"](inst)
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - t0 - sum(timings.values()), 1)

    gdata = simulate_dataset(work / "galaxies", n_train, gcfg, seed=seed)
    sdata = simulate_star_dataset(work / "stars", n_train, config=scfg, seed=seed + 1)
    mix = simulate_star_mix(work / "mix", n_mix, star_fraction, gcfg, scfg, seed=seed + 2)
    lap("simulate")
    train_autoencoder(gdata, work / "galaxy_run", model_config=model_cfg, train_config=tcfg, device=device)
    fit_flow(work / "galaxy_run", gdata, config=flow_cfg, train_config=ftcfg, device=device)
    lap("galaxy_model")
    train_star_model(sdata, work / "star_run", flow_config=flow_cfg, flow_train_config=ftcfg, device=device,
                     model_config=model_cfg, train_config=tcfg)  # fmt: skip
    lap("star_model")
    cat = classify(mix, work / "galaxy_run", work / "star_run", work / "classified.parquet", device=device)
    lap("classify")
    is_star = cat["truth_class"] == "star"
    labelled = _galaxy_label(cat, len(cat["z"]))
    levels = (0.0, 0.05, 0.5, 0.95, 1.0)
    res: dict = {"default": star_flag_quality(cat), "statistics": {}}
    for stat, column in STATISTICS.items():
        v = np.nan_to_num(np.asarray(cat[column], np.float64), nan=-np.inf, posinf=np.finfo(float).max)
        v = np.where(np.isneginf(v), np.finfo(float).min, v)  # unscored rows lowest
        entry: dict = {"auc": roc_auc(v, is_star), "thresholds": {}}
        for t in thresholds:
            entry["thresholds"][str(float(t))] = star_flag_quality({**cat, "star_flag": labelled & (cat[column] > t)})
        entry["quantiles"] = {
            name: [round(float(v), 2) for v in np.nanquantile(cat[column][sel], levels)] if sel.any() else []
            for name, sel in (("stars", is_star), ("others", ~is_star))
        }
        res["statistics"][stat] = entry
    res.update({"quantile_levels": list(levels), "catalogue": str(work / "classified.parquet"), "n_train": n_train,
                "n_mix": n_mix, "star_fraction": star_fraction, "epochs": epochs, "flow_epochs": flow_epochs,
                "source": source, "instrument": inst, "default_threshold": DEFAULT_THRESHOLD,
                "batch_size": batch_size, "timings": timings,
                "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    return res

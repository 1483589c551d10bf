"""Report sections of a diagnostics run folder: where the reconstruction is the prior's.

A run folder holds ``prior.safetensors`` (``speculum diagnostics train-prior``) and
``hallucination.npz`` (``speculum diagnostics fisher``): the reconstructions, ``F_L``,
``F_P``, ``ΔF``, ``r`` and the observation they came from (``weights``; ``truth`` when
simulated; ``grid``, ``coverage`` for spectra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from speculum.diagnostics.apply import read_diagnosis
from speculum.diagnostics.fisher import source_confidence
from speculum.report import figure_to_html, pyplot, register_sections, table_to_html

__all__ = ["MAPS_NAME", "report_sections", "summary_rows"]

MAPS_NAME = "hallucination.npz"


def _holds(run_dir: Path) -> bool:
    return (run_dir / MAPS_NAME).exists()


def summary_rows(maps: dict[str, np.ndarray]) -> list[dict]:
    """Per object: prior share ``r`` on observed and unobserved pixels, the fraction with ``ΔF > 0``,
    the flux-weighted data share (``confidence``) and, with a truth, the reconstruction's RMS error."""
    rows = []
    r, delta, x = maps["prior_fraction"], maps["delta"], maps["reconstruction"]
    observed = maps["fisher_likelihood"] > 0
    for i in range(len(r)):
        row = {
            "object": i,
            "median r (data)": float(np.median(r[i][observed[i]])) if observed[i].any() else float("nan"),
            "median r (no data)": float(np.median(r[i][~observed[i]])) if (~observed[i]).any() else float("nan"),
            "ΔF > 0 fraction": float((delta[i] > 0).mean()),
            "confidence": float(source_confidence(torch.from_numpy(r[i]), torch.from_numpy(x[i]))[0]),
        }
        if "truth" in maps:
            row["rms error"] = float(np.sqrt(np.mean((x[i] - maps["truth"][i]) ** 2)))
        rows.append(row)
    return rows


def _image_figure(maps: dict[str, np.ndarray], n: int = 4) -> str:
    plt = pyplot()
    has_truth = "truth" in maps
    cols = [("observed", maps.get("image")), ("reconstruction", maps["reconstruction"])]
    if has_truth:
        cols += [("truth", maps["truth"]), ("reconstruction - truth", maps["reconstruction"] - maps["truth"])]
    cols += [("sign(ΔF) log10(1 + |ΔF|)", None), ("prior share r", maps["prior_fraction"])]
    cols = [c for c in cols if c[0].startswith("sign") or c[1] is not None]
    k = min(n, len(maps["reconstruction"]))
    fig, axes = plt.subplots(k, len(cols), figsize=(2.3 * len(cols), 2.3 * k), squeeze=False)
    for i in range(k):
        for j, (name, arr) in enumerate(cols):
            ax = axes[i, j]
            if name.startswith("sign"):
                d = maps["delta"][i]
                img, cmap, lim = np.sign(d) * np.log10(1 + np.abs(d)), "RdBu_r", None
                lim = float(np.abs(img).max()) or 1.0
                im = ax.imshow(img, origin="lower", cmap=cmap, vmin=-lim, vmax=lim)
            elif name == "prior share r":
                im = ax.imshow(arr[i], origin="lower", cmap="magma", vmin=0, vmax=1)
            elif name == "reconstruction - truth":
                lim = float(np.abs(arr[i]).max()) or 1.0
                im = ax.imshow(arr[i], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                im = ax.imshow(arr[i], origin="lower", cmap="viridis")
            if "weights" in maps and name == "observed":
                ax.contour(maps["weights"][i] > 0, levels=[0.5], colors="w", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.tight_layout()
    return figure_to_html(
        fig,
        "Per object: the observation (white contour: unmasked pixels), the MAP reconstruction, the truth and the "
        "error where simulated, ΔF = F_P - F_L (red: the prior decides, blue: the data) and the prior's share "
        "r = F_P / (F_P + F_L).",
    )


def _spectrum_figure(maps: dict[str, np.ndarray], n: int = 3) -> str:
    from speculum.diagnostics.spectra import plot_spectrum_diagnosis

    plt = pyplot()
    k = min(n, len(maps["reconstruction"]))
    fig, axes = plt.subplots(2 * k, 1, figsize=(9, 3.2 * k), squeeze=False, height_ratios=[3, 1] * k)
    for i in range(k):
        plot_spectrum_diagnosis(
            axes[2 * i, 0],
            axes[2 * i + 1, 0],
            maps["grid"],
            maps["reconstruction"][i],
            maps["truth"][i] if "truth" in maps else None,
            maps["prior_fraction"][i],
            maps["coverage"][i] if "coverage" in maps else maps["fisher_likelihood"][i] > 0,
        )
    fig.tight_layout()
    return figure_to_html(
        fig,
        "Restframe reconstructions (shaded: no observed data) with the prior's share r(λ) below: r > 0.5 "
        "(ΔF > 0) where the prior, not the spectrum, sets the flux.",
    )


@register_sections("diagnostics", holds=_holds, title="speculum: hallucination diagnostic")
def report_sections(run_dir: str | Path) -> list[tuple[str, str]]:
    """The diagnostic's sections for a run folder with ``hallucination.npz``."""
    from speculum.train.runs import RUN_MANIFEST, content_hash, read_run_manifest

    run_dir = Path(run_dir)
    if (run_dir / RUN_MANIFEST).exists():
        recorded = read_run_manifest(run_dir)["outputs"].get("maps", {}).get("hash")
        if recorded and recorded != content_hash(run_dir / MAPS_NAME):
            raise ValueError(
                f"{run_dir / MAPS_NAME}: not the maps this run wrote (run.json records {recorded}); "
                "rerun `speculum diagnostics fisher` before the report"
            )
    maps = read_diagnosis(run_dir / MAPS_NAME)
    spectra = maps["reconstruction"].ndim == 2
    probes = int(np.median(maps["probes"]))
    exact = bool(np.all(maps["exact"])) if "exact" in maps else False
    how = "unit vectors (exact)" if exact else "Hutchinson probes"
    note = f"<p>λ = {float(maps['prior_weight']):g}; F_P from {probes} {how} per object; F_L exact.</p>"
    figure = _spectrum_figure(maps) if spectra else _image_figure(maps)
    return [
        ("Hallucination maps", note + figure),
        ("Prior and data per object", table_to_html(summary_rows(maps), "{:.3g}")),
    ]

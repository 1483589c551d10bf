"""Report sections of the outlier method: log p distribution, the least probable objects, AUCs, invariance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speculum.metrics import roc_auc
from speculum.report import register_sections
from speculum.report.builder import figure_to_html, pyplot, table_to_html

__all__ = ["CATALOGUE_NAME", "INVARIANCE_NAME", "auc_table", "report_sections"]

CATALOGUE_NAME = "catalogue.parquet"
INVARIANCE_NAME = "invariance.json"


def _holds(run_dir: Path) -> bool:
    return (run_dir / "flow.safetensors").exists() and (run_dir / CATALOGUE_NAME).exists()


def auc_table(cat: dict) -> list[dict]:
    """Per anomaly class: objects, AUC of ``-log p`` and of the reduced chi2 against normal galaxies."""
    cls = np.asarray(cat["truth_class"]).astype(str)
    ok = np.asarray(cat["rank"]) > 0
    rows = []
    for c in [*sorted(set(cls[ok]) - {"normal"}), "all anomalies"]:
        pos = (cls != "normal") if c == "all anomalies" else (cls == c)
        sel = ok & (pos | (cls == "normal"))
        if pos[sel].sum() == 0:
            continue
        rows.append({
            "class": c,
            "objects": int(pos[sel].sum()),
            "AUC -log p (flow)": roc_auc(-np.asarray(cat["log_p"])[sel], pos[sel]),
            "AUC reduced chi2": roc_auc(np.asarray(cat["reduced_chi2"])[sel], pos[sel]),
        })  # fmt: skip
    return rows


def _distribution(cat: dict) -> str:
    plt = pyplot()
    lp = np.asarray(cat["log_p"], float)
    ok = np.isfinite(lp)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    bins = np.linspace(np.percentile(lp[ok], 0.5), lp[ok].max(), 50) if ok.sum() > 1 else 20
    if "truth_class" in cat:
        cls = np.asarray(cat["truth_class"]).astype(str)
        for i, c in enumerate(sorted(set(cls[ok]), key=lambda c: (c != "normal", c))):
            sel = ok & (cls == c)
            ax.hist(lp[sel], bins=bins, histtype="step", lw=1.5, density=True, label=f"{c} ({sel.sum()})",
                    color="0.4" if c == "normal" else f"C{i}")  # fmt: skip
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.hist(lp[ok], bins=bins, color="0.5")
    ax.set_xlabel("log p (flow density of the latents)")
    ax.set_ylabel("density")
    fig.tight_layout()
    return figure_to_html(fig, "log p of every scored object; outliers sit in the low tail.")


def _top_outliers(run_dir: Path, cat: dict, data: Path, n: int = 4) -> str:
    import torch

    from speculum.io import SpectraSet, prepare_spectra
    from speculum.outliers.apply import OutlierModel

    ok = np.asarray(cat["rank"]) > 0
    ids = np.asarray(cat["object_id"])[ok][np.argsort(np.asarray(cat["rank"])[ok])[:n]]
    om = OutlierModel.load(run_dir, "cpu")
    ds = SpectraSet.open(data)
    names = set(ds.columns)
    cols = ["object_id", "z", "flux", "ivar", "mask", *(c for c in ("truth_class", "resolution") if c in names)]
    rows: dict[str, dict] = {}
    for chunk in ds.iter_batches(cols, batch_size=4096):
        hit = np.isin(np.asarray(chunk["object_id"]), ids)
        for i in np.nonzero(hit)[0]:
            rows[str(chunk["object_id"][i])] = {k: v[i] for k, v in chunk.items()}
        if len(rows) == len(ids):
            break
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.4 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1.2]})  # fmt: skip
    wave = ds.wave
    lp = dict(zip(np.asarray(cat["object_id"]).astype(str), np.asarray(cat["log_p"]), strict=True))
    for ax, oid in zip(axes, [str(i) for i in ids if str(i) in rows], strict=False):
        r = rows[oid]
        one = {
            k: np.asarray([v]) if np.ndim(v) == 0 or isinstance(v, str) else np.asarray(v)[None] for k, v in r.items()
        }
        prep = prepare_spectra(one, ds.instrument.name, fit_amplitude=om.model.config.normalize)
        with torch.no_grad():
            res = None if prep.resolution is None else prep.resolution
            fit = om.model(prep.y, prep.w, prep.z, resolution=res)
        y, w = prep.y[0].numpy(), prep.w[0].numpy()
        m = np.where(fit.valid[0].numpy(), fit.observed[0].float().numpy(), np.nan)
        ax[0].plot(wave, np.where(w > 0, y, np.nan), color="0.6", lw=0.5, label="data")
        ax[0].plot(wave, m, color="C3", lw=0.8, label="model")
        top = np.nanpercentile(np.where(w > 0, y, np.nan), 99.5)
        ax[0].set_ylim(min(-0.2, np.nanpercentile(y, 0.5)), 1.3 * top)
        truth = str(r.get("truth_class", "")) or "?"
        ax[0].set_title(f"{oid}  z={float(r['z']):.3f}  log p={lp[oid]:.1f}  truth: {truth}", fontsize=9)
        ax[0].legend(fontsize=7, loc="upper right")
        ax[1].plot(om.model.wave_rest.numpy(), fit.restframe[0].float().numpy(), color="C0", lw=0.7)
        ax[1].set_title("restframe model", fontsize=9)
    axes[-1][0].set_xlabel("observed wavelength [Å]")
    axes[-1][1].set_xlabel("restframe wavelength [Å]")
    fig.tight_layout()
    return figure_to_html(fig, f"The {len(rows)} least probable objects: data (grey), model (red), restframe model.")


def _invariance(inv: dict) -> str:
    rows = [{"model": k, "latent scatter across z / population": v.get("latent_scatter"),
             "Spearman of log p ranks across z": v.get("rank_spearman_across_z")}
            for k, v in inv.items() if isinstance(v, dict)]  # fmt: skip
    z = next((v.get("z_values") for v in inv.values() if isinstance(v, dict)), None)
    note = (
        f"<p>The same simulated galaxies observed at z = {', '.join(f'{x:g}' for x in z)}: how far their latents "
        "move (relative to the population's spread; 0 = invariant) and how stable their outlier ranks are "
        "(1 = independent of the redshift).</p>"
        if z
        else ""
    )
    return note + table_to_html(rows)


@register_sections("outliers", holds=_holds, title="speculum: outliers")
def report_sections(run_dir: str | Path, data: str | Path | None = None) -> list[tuple[str, str]]:
    """The outlier method's sections for a run folder with ``flow.safetensors`` and ``catalogue.parquet``."""
    from speculum.io import read_result_meta, read_results
    from speculum.train.runs import content_hash

    run_dir = Path(run_dir)
    meta = read_result_meta(run_dir / CATALOGUE_NAME)
    for name, key in (("model.safetensors", "model_hash"), ("flow.safetensors", "flow_hash")):
        if meta.get(key) and meta[key] != content_hash(run_dir / name):
            raise ValueError(
                f"{run_dir / CATALOGUE_NAME}: scored with another {name} than the one in {run_dir} "
                f"(the catalogue records {meta[key]}); rerun `speculum score` before the report"
            )
    cat = read_results(run_dir / CATALOGUE_NAME)
    data = Path(data) if data is not None else Path(str(meta["data"]))
    sections = [("Outliers: log p", _distribution(cat)), ("Least probable objects", _top_outliers(run_dir, cat, data))]
    if "truth_class" in cat:
        sections.append(("Anomaly detection (simulated truth)", table_to_html(auc_table(cat), "{:.3f}")))
    if (run_dir / INVARIANCE_NAME).exists():
        sections.append(("Redshift invariance", _invariance(json.loads((run_dir / INVARIANCE_NAME).read_text()))))
    return sections

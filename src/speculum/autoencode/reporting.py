"""The autoencoder method's report: sections from a run folder, and the HTML file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from speculum.autoencode import sections
from speculum.autoencode._common import _columns, _trained_with_resolution, log
from speculum.autoencode.apply import reconstruct
from speculum.io import SpectraSet, prepare_spectra, read_result_meta, read_results
from speculum.report import Report, register_sections
from speculum.train import load_model, reduced_chi2
from speculum.train.runs import RUN_MANIFEST, check_inputs, content_hash, read_run_manifest

__all__ = ["report", "report_sections"]


TITLE = "speculum: spectrum autoencoder"


def _holds(run_dir: Path) -> bool:
    return (run_dir / "history.json").exists() and (run_dir / "model.safetensors").exists()


@register_sections("autoencode", holds=_holds, title=TITLE)
def report_sections(
    run_dir: str | Path,
    data: str | Path | None = None,
    reconstructions: str | Path | None = None,
    n_examples: int = 4,
    progress: bool = False,
) -> list[tuple[str, str]]:
    """The autoencoder's report sections of a training run: ``[(title, html), ...]``.

    Args:
        run_dir: Folder of ``speculum train`` (``history.json``, ``model.safetensors``).
        data: The shard folder (default: the training data recorded in ``history.json``).
        reconstructions: Table of ``speculum reconstruct`` (``.parquet`` or ``.fits``;
            default ``run_dir/reconstructions.parquet``, made from the test split when absent).
        n_examples: Example spectra to draw: per class (normal first, then anomalies) the
            one whose reduced chi2 is closest to its class median.
        progress: Progress bars for the reconstruction and the scan for examples.

    Returns:
        Summary, training curves, example reconstructions, reduced chi2 and latent space.
    """
    run_dir = Path(run_dir)
    hist_path = run_dir / "history.json"
    if not hist_path.exists():
        raise FileNotFoundError(f"{hist_path}: no training history; run `speculum train` first")
    summary = json.loads(hist_path.read_text())
    model_path = run_dir / "model.safetensors"
    if (run_dir / RUN_MANIFEST).exists():  # the run's own artefacts must be the ones it wrote and read
        recorded = read_run_manifest(run_dir)["outputs"]["model"]["hash"]
        if content_hash(model_path) != recorded:
            raise ValueError(f"{model_path}: not the model this run wrote ({recorded}); it was replaced or modified")
        if data is None:
            check_inputs(run_dir, "data", summary["data"])
    data = Path(data) if data is not None else Path(summary["data"])
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
    made_by = read_result_meta(rec_path).get("model_hash") or read_result_meta(rec_path).get("MODEL_HASH")
    if made_by is not None and made_by != content_hash(model_path):
        raise ValueError(f"{rec_path}: made by another model ({made_by}) than {model_path}; reconstruct again")
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
        "data": str(data.resolve()),
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
    return [
        ("Summary", sections.summary_section(info, chi2, classes)),
        ("Training", sections.training_section(summary["history"])),
        (
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
        ),
        ("Reduced chi-square", sections.chi2_section(chi2, classes)),
        ("Latent space", sections.latent_section(latents, np.asarray(rec["z"], dtype=np.float64), classes)),
    ]


def report(
    run_dir: str | Path,
    out: str | Path | None = None,
    data: str | Path | None = None,
    reconstructions: str | Path | None = None,
    n_examples: int = 4,
    title: str = TITLE,
    progress: bool = False,
) -> Path:
    """Write the self-contained HTML report of a training run; needs only the run folder.

    Args:
        run_dir: Folder of ``speculum train``.
        out: HTML file to write (default ``run_dir/report.html``).
        data, reconstructions, n_examples, progress: see :func:`report_sections`.
        title: Page title.

    Returns:
        The report path.
    """
    run_dir = Path(run_dir)
    page = Report(title, subtitle=f"run: {run_dir.resolve()}")
    for name, html in report_sections(run_dir, data, reconstructions, n_examples, progress):
        page.add(name, html)
    return page.write(Path(out) if out is not None else run_dir / "report.html")

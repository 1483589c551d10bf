"""Outlier detection against known answers: simulated spectra with injected, labelled anomalies.

Project issue 11 ("Known answers and evaluation"). In one run:

1. simulates SDSS training spectra and a separate held-out evaluation set (another seed, so
   no evaluated object was trained on; ``SimConfig(anomaly_rate=0.1)``; positives are
   ``truth_class != "normal"``);
2. trains a fiducial autoencoder (:func:`speculum.autoencode.train`), then the outlier model
   continuing from it (:func:`speculum.outliers.train` with ``init=``) for every form of
   the added losses (:data:`speculum.outliers.LOSS_FORMS`), and a flow over each model's
   latents (:func:`speculum.outliers.fit_flow`);
3. scores the evaluation set with each (:func:`speculum.outliers.score`) and reports the ROC
   AUC and the precision among the top 1 % (all classes together and per class, each class
   against the normal galaxies) of

   * ``flow``: ``-log p`` of the latents under the flow (the method);
   * ``chi2``: the autoencoder's reconstruction reduced chi2 (same catalogue);
   * ``iforest``: an isolation forest on the latents (fitted to the training split's latents);
   * ``pca_train``: the classic PCA residual, a restframe PCA of the normalised training
     spectra (as many components as the model has latents, mean fixed), fitted by weighted
     least squares to each spectrum at its redshift (reduced chi2);
   * ``pca_yip``: the same with the SDSS galaxy eigenspectra of Yip et al. (2004)
     (``../shared/data/eigenspectra/gal_eigenspec_Yip2004.fits``, first 8, all free);

4. measures redshift invariance (:func:`speculum.outliers.redshift_invariance`:
   ``latent_scatter``, lower is better; ``rank_spearman_across_z``, higher is better) of the
   fiducial model and of each form;
5. times end-to-end scoring (``score``, spectra/s: median and min-max over repetitions, each
   after a float32 matmul peak measurement, interleaved, as ``benchmarks/autoencoder.py``);
6. ``realism_ratio``: median reduced chi2 of real SDSS galaxies over simulated held-out normal
   galaxies for the fiducial model (``benchmarks/realism.py``'s ``evaluate``; needs
   ``../shared/data``).

Keys of the published (package default) form have no suffix; ``_fiducial`` is the model
without the added losses, ``_scale_invariant`` / ``_running`` the other forms. The PCA
baselines do not depend on the model and appear once.

Usage:
    python benchmarks/outliers.py --quick --json benchmarks/results/outliers-quick.json
    python benchmarks/outliers.py --out runs/outliers-bench     # full run, artefacts kept
    python benchmarks/outliers.py --tiny                        # a smoke run of the script (figures meaningless)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
YIP = SHARED / "eigenspectra" / "gal_eigenspec_Yip2004.fits"
SCORES = ("flow", "chi2", "iforest", "pca_train", "pca_yip")
MODEL_SCORES = ("flow", "chi2", "iforest")

# spectra simulated for training / evaluation, epochs of the fiducial model and of each form (which
# continue from it on at most form_limit training rows, None: all), flow epochs, galaxies of the
# invariance test, repetitions of the throughput timing. quick: sized for <= 10 min on 2 cores alone.
SIZES = {
    "tiny": dict(n_train=512, n_eval=512, fid_epochs=1, form_epochs=2, form_limit=256, flow_epochs=3, n_inv=64,
                 reps=3),
    "quick": dict(n_train=2048, n_eval=2048, fid_epochs=5, form_epochs=2, form_limit=1024, flow_epochs=40, n_inv=256,
                  reps=3),
    "full": dict(n_train=16384, n_eval=16384, fid_epochs=20, form_epochs=10, form_limit=None, flow_epochs=100,
                 n_inv=512, reps=5),
}  # fmt: skip


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)


def _prepared(data: Path, split: str | None = None) -> dict:
    """Normalised spectra of a shard folder (the models' normalisation): y, w, z, object_id, truth_class."""
    import torch

    from speculum.io import SpectraSet, prepare_spectra

    ds = SpectraSet.open(data)
    cols = ["object_id", "z", "flux", "ivar", "mask"] + (["truth_class"] if "truth_class" in ds.columns else [])
    out: dict[str, list] = {"y": [], "w": [], "z": [], "object_id": [], "truth_class": []}
    for chunk in ds.iter_batches(cols, split=split, batch_size=2048):
        prep = prepare_spectra(chunk, ds.instrument.name)
        out["y"].append(prep.y.numpy())
        out["w"].append(prep.w.numpy())
        out["z"].append(prep.z.numpy() if isinstance(prep.z, torch.Tensor) else np.asarray(prep.z))
        out["object_id"].append(np.asarray(chunk["object_id"])[prep.index])
        if "truth_class" in chunk:
            out["truth_class"].append(np.asarray(chunk["truth_class"])[prep.index])
    return {k: np.concatenate(v) for k, v in out.items() if v}


def pca_scores(train_data: Path, ev: dict, n_components: int, t0: float) -> tuple[dict, dict]:
    """PCA residual (reduced chi2) of every evaluation spectrum: trained restframe PCA and Yip et al. (2004)."""
    from speculum.instruments import get_instrument
    from speculum.outliers.evaluate import fit_pca, pca_residual, read_yip_eigenspectra, to_restframe

    inst = get_instrument("SDSS")
    wave_obs = np.asarray(inst.wave_obs, np.float64)
    zmax = inst.z_range[1]
    # restframe grid at the SDSS pixel spacing (1e-4 dex), covering every redshift of the instrument
    wave_rest = 10 ** np.arange(np.log10(wave_obs[0] / (1 + zmax)), np.log10(wave_obs[-1]), 1e-4)
    tr = _prepared(train_data, split="train")
    yr, wr = to_restframe(tr["y"], tr["w"], tr["z"], wave_obs, wave_rest)
    mean, comps = fit_pca(yr, wr, n_components, iterations=8)
    scores, info = {}, {"pca_train_components": n_components, "pca_train_spectra": len(tr["z"])}
    scores["pca_train"] = pca_residual(ev["y"], ev["w"], ev["z"], wave_obs, wave_rest, comps, mean=mean)
    _log(f"PCA of {len(tr['z'])} training spectra in the restframe ({n_components} components) fitted and applied", t0)
    if YIP.exists():
        wave_b, basis = read_yip_eigenspectra(YIP, n_components)
        scores["pca_yip"] = pca_residual(ev["y"], ev["w"], ev["z"], wave_obs, wave_b, basis)
        info["pca_yip_components"] = n_components
    else:
        print(f"pca_yip skipped: {YIP} not found (../shared/data absent)")
    return scores, info


def class_figures(scores: dict[str, np.ndarray], truth: np.ndarray, classes: tuple[str, ...], suffix: str) -> dict:
    """AUC and precision at the top 1 % of each score: all anomalies, and each class, against normal galaxies."""
    from speculum.outliers.evaluate import precision_at, roc_auc

    out = {}
    normal = truth == "normal"
    for name, s in scores.items():
        out[f"auc_{name}{suffix}"] = roc_auc(s, ~normal)
        out[f"p1_{name}{suffix}"] = precision_at(s, ~normal, 0.01)
        for c in classes:
            sel = normal | (truth == c)
            if (truth == c).any():
                out[f"auc_{name}_{c}{suffix}"] = roc_auc(s[sel], truth[sel] == c)
                out[f"p1_{name}_{c}{suffix}"] = precision_at(s[sel], truth[sel] == c, 0.01)
    return out


def model_scores(run: Path, cat: dict, train_data: Path) -> dict[str, np.ndarray]:
    """flow (-log p), chi2 and isolation-forest scores of a catalogue's rows."""
    from sklearn.ensemble import IsolationForest

    from speculum.outliers import encode

    s_dim = sum(1 for k in cat if k.startswith("latent_"))
    lat = np.stack([np.asarray(cat[f"latent_{i}"], np.float64) for i in range(s_dim)], 1)
    train_lat = encode(run, train_data, split="train")["latents"]
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train_lat)
    ok = np.isfinite(lat).all(1)
    iso = np.full(len(lat), np.nan)
    iso[ok] = -forest.score_samples(lat[ok])
    return {
        "flow": -np.asarray(cat["log_p"], np.float64),
        "chi2": np.asarray(cat["reduced_chi2"], np.float64),
        "iforest": iso,
    }


def matmul_peak() -> float:
    sys.path.insert(0, str(HERE))
    from autoencoder import matmul_peak_gflops

    return matmul_peak_gflops()


def throughput(data: Path, run: Path, n: int, reps: int, tmp: Path) -> dict:
    """End-to-end ``score`` throughput, each repetition after a matmul peak measurement (interleaved)."""
    from speculum.outliers import score

    score(data, run, tmp / "warm.parquet")  # warm-up: imports, page cache
    rates, peaks = [], []
    for r in range(reps):
        peaks.append(matmul_peak())
        t = time.perf_counter()
        score(data, run, tmp / f"rep{r}.parquet")
        rates.append(n / (time.perf_counter() - t))
    return {
        "score_spectra_per_s": round(statistics.median(rates), 1),
        "score_spectra_per_s_min": round(min(rates), 1),
        "score_spectra_per_s_max": round(max(rates), 1),
        "matmul_gflops": round(statistics.median(peaks), 1),
        "matmul_gflops_min": round(min(peaks), 1),
        "matmul_gflops_max": round(max(peaks), 1),
        "score_reps": reps,
        "score_n_spectra": n,
    }


def realism(model: Path, data: Path, tmp: Path) -> dict:
    if not (SHARED / "sdss_boss" / "spec").is_dir():
        print(f"realism_ratio skipped: real SDSS files not found under {SHARED}")
        return {}
    sys.path.insert(0, str(HERE))
    from realism import evaluate

    res = evaluate(model, data, tmp)
    return {
        "realism_ratio": res["ratio_real_to_sim"],
        "realism_n_real": res["n_real"],
        "realism_chi2_real": res["median_reduced_chi2_real"],
        "realism_chi2_sim": res["median_reduced_chi2_sim"],
    }


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def print_tables(res: dict, classes: tuple[str, ...], forms: tuple[str, ...]) -> None:
    for suffix, title in (("", "outlier model, published form (package default)"),
                          ("_fiducial", "fiducial model (no similarity/consistency losses)")):  # fmt: skip
        print(f"\nROC AUC on the held-out set ({res['n_eval']} spectra, {res['n_positive']} anomalies): {title}")
        head = f"{'score':10s} {'all':>6s} {'p@1%':>6s} " + " ".join(f"{c[:10]:>10s}" for c in classes)
        print(head)
        for name in SCORES:
            suf = suffix if name in MODEL_SCORES else ""
            if f"auc_{name}{suf}" not in res:
                continue
            row = f"{name:10s} {_fmt(res[f'auc_{name}{suf}']):>6s} {_fmt(res[f'p1_{name}{suf}']):>6s} "
            print(row + " ".join(f"{_fmt(res.get(f'auc_{name}_{c}{suf}')):>10s}" for c in classes))
    print("\nper form (AUC all classes; invariance: scatter lower is better, Spearman higher is better)")
    cols = ("auc_flow", "auc_chi2", "auc_ifor", "p1_flow", "scatter", "spearman")
    print(f"{'model':16s} " + " ".join(f"{c:>8s}" for c in cols))
    for m in ("fiducial", *forms):
        suf = "" if m == "published" else f"_{m}"
        vals = [res.get(f"{k}{suf}") for k in ("auc_flow", "auc_chi2", "auc_iforest", "p1_flow")]
        vals += [res.get(f"latent_scatter_{m}"), res.get(f"rank_spearman_across_z_{m}")]
        print(f"{m:16s} " + " ".join(f"{_fmt(v):>8s}" for v in vals))
    print(f"best form on latent_scatter: {res['best_form']}; on rank_spearman_across_z: {res['best_form_by_rank']}")


def goals(res: dict) -> list[str]:
    """The issue's targets, each met or with its shortfall."""
    lines = []
    auc = res["auc_flow"]
    lines.append(f"auc_flow {auc:.3f} >= 0.9: " + ("met" if auc >= 0.9 else f"NOT met, short by {0.9 - auc:.3f}"))
    for other in ("chi2", "iforest", "pca_train", "pca_yip"):
        v = res.get(f"auc_{other}")
        if v is None:
            continue
        lines.append(
            f"auc_flow >= auc_{other} ({v:.3f}): " + ("met" if auc >= v else f"NOT met, short by {v - auc:.3f}")
        )
    r = res["score_spectra_per_s"]
    lines.append(f"score {r:.0f} spectra/s >= 1,000: " + ("met" if r >= 1000 else f"NOT met ({r / 1000:.2f}x)"))
    rho = res.get("rank_spearman_across_z")
    if rho is not None:
        lines.append(f"rank_spearman_across_z {rho:.3f} >= 0.9: " + ("met" if rho >= 0.9 else "NOT met"))
    ratio = res.get("realism_ratio")
    if ratio is not None:
        lines.append(f"realism_ratio {ratio:.3f} <= 1.3: " + ("met" if ratio <= 1.3 else "NOT met"))
    return lines


def run(args: argparse.Namespace, out: Path) -> dict:
    import torch

    from speculum.autoencode import simulate_dataset
    from speculum.autoencode import train as train_autoencoder
    from speculum.io import SpectraSet
    from speculum.models.flow import FlowConfig
    from speculum.outliers import LOSS_FORMS, InvarianceConfig, OutlierModel, fit_flow, redshift_invariance, score
    from speculum.outliers import train as train_outliers
    from speculum.sim import ANOMALY_CLASSES, SimConfig
    from speculum.train import TrainConfig

    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    size = SIZES["tiny" if args.tiny else "quick" if args.quick else "full"]
    res: dict = {"mode": "tiny" if args.tiny else "quick" if args.quick else "full", "threads": args.threads, **size}
    res["matmul_gflops_start"] = round(matmul_peak(), 1)
    sim_cfg = SimConfig(instrument="SDSS", anomaly_rate=args.anomaly_rate)
    res["anomaly_rate"] = args.anomaly_rate
    train_data = simulate_dataset(out / "sim-train", size["n_train"], sim_cfg, seed=0)
    eval_data = simulate_dataset(out / "sim-eval", size["n_eval"], sim_cfg, seed=1)
    _log(f"simulated {size['n_train']} training and {size['n_eval']} evaluation spectra", t0)

    def tcfg(epochs: int, lr: float = 3e-3) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=64, lr=lr, patience=0, precision="fp32")

    runs = {"fiducial": out / "fiducial"}
    t = time.perf_counter()
    if not (runs["fiducial"] / "model.safetensors").exists():
        train_autoencoder(train_data, runs["fiducial"], train_config=tcfg(size["fid_epochs"]))
    res["train_s_fiducial"] = round(time.perf_counter() - t, 1)
    _log(f"fiducial model trained ({size['fid_epochs']} epochs)", t0)
    init = runs["fiducial"] / "model.safetensors"
    forms = tuple(LOSS_FORMS)
    for form in forms:
        runs[form] = out / form
        t = time.perf_counter()
        if not (runs[form] / "model.safetensors").exists():
            inv = InvarianceConfig(form=form, k_cycle=size["form_epochs"], off_epochs=1)
            train_outliers(train_data, runs[form], inv, init=init, train_config=tcfg(size["form_epochs"], 1e-3),
                           limit=size["form_limit"])  # fmt: skip
        res[f"train_s_{form}"] = round(time.perf_counter() - t, 1)
        _log(f"outlier model, form {form!r}, trained ({size['form_epochs']} epochs from the fiducial model)", t0)
    flow_cfg = FlowConfig(features=1, transforms=5, hidden=50)
    for run_dir in runs.values():
        if not (run_dir / "flow.safetensors").exists():
            fit_flow(run_dir, train_data, config=flow_cfg,
                     train_config=TrainConfig(epochs=size["flow_epochs"], batch_size=256, lr=1e-3, patience=0,
                                              precision="fp32"))  # fmt: skip
    _log(f"flows fitted ({size['flow_epochs']} epochs each)", t0)

    ev = _prepared(eval_data)
    cats = {name: score(eval_data, run_dir, out / f"catalogue-{name}.parquet") for name, run_dir in runs.items()}
    _log("evaluation set scored by every model", t0)
    ids = np.asarray(ev["object_id"]).astype(str)
    pos = {o: i for i, o in enumerate(ids)}
    n_latent = OutlierModel.load(runs["fiducial"]).model.config.n_latent
    baseline, info = pca_scores(train_data, ev, n_latent, t0)
    res.update(info)
    per_model = {}
    for name, run_dir in runs.items():
        cat = cats[name]
        order = np.array([pos.get(str(o), -1) for o in cat["object_id"]])
        ms = model_scores(run_dir, cat, train_data)
        aligned = {k: np.full(len(ids), np.nan) for k in ms}
        keep = order >= 0
        for k, v in ms.items():
            aligned[k][order[keep]] = v[keep]
        per_model[name] = aligned
    _log("isolation forests fitted; scores aligned", t0)
    everything = [*per_model.values(), baseline]
    ok = np.logical_and.reduce([np.isfinite(s) for d in everything for s in d.values()])
    truth = np.asarray(ev["truth_class"]).astype(str)[ok]
    classes = tuple(c for c in ANOMALY_CLASSES if (truth == c).any())
    res["n_eval"] = int(ok.sum())
    res["n_eval_dropped"] = int(len(ok) - ok.sum())
    res["n_positive"] = int((truth != "normal").sum())
    res.update({f"n_{c}": int((truth == c).sum()) for c in classes})
    res.update(class_figures({k: v[ok] for k, v in baseline.items()}, truth, classes, ""))
    for name in runs:
        suffix = "" if name == "published" else f"_{name}"
        res.update(class_figures({k: v[ok] for k, v in per_model[name].items()}, truth, classes, suffix))

    for name, run_dir in runs.items():
        om = OutlierModel.load(run_dir)
        inv = redshift_invariance(om.model, om.flow, n=size["n_inv"], seed=12345)
        res[f"latent_scatter_{name}"] = inv["latent_scatter"]
        res[f"rank_spearman_across_z_{name}"] = inv["rank_spearman_across_z"]
    res["z_values_invariance"] = ",".join(f"{z:g}" for z in inv["z_values"])
    res["latent_scatter"] = res["latent_scatter_published"]
    res["rank_spearman_across_z"] = res["rank_spearman_across_z_published"]
    res["best_form"] = min(forms, key=lambda f: res[f"latent_scatter_{f}"])
    res["best_form_by_rank"] = max(forms, key=lambda f: res[f"rank_spearman_across_z_{f}"])
    _log(f"redshift invariance measured ({size['n_inv']} galaxies x {len(inv['z_values'])} redshifts per model)", t0)

    n_eval_rows = SpectraSet.open(eval_data).manifest["n_spectra"]
    res.update(throughput(eval_data, runs["published"], n_eval_rows, size["reps"], out))
    _log(f"scoring throughput timed ({size['reps']} repetitions)", t0)
    with tempfile.TemporaryDirectory() as tmp:
        res.update(realism(init, train_data, Path(tmp)))
    _log("realism measured", t0)
    res["matmul_gflops_end"] = round(matmul_peak(), 1)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["classes"] = ",".join(classes)
    res["forms"] = ",".join(forms)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the <= 10-minute configuration (2 cores)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run of the whole script (figures meaningless)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one flat JSON object")
    parser.add_argument("--out", type=Path, help="keep the data, runs and catalogues here (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--anomaly-rate", type=float, default=0.1, help="fraction of simulated anomalies (0.1)")
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        res = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            res = run(args, Path(tmp))
    res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    print_tables(res, tuple(res["classes"].split(",")), tuple(res["forms"].split(",")))
    print(
        f"\nscore: {res['score_spectra_per_s']:.0f} spectra/s (median of {res['score_reps']}, "
        f"{res['score_spectra_per_s_min']:.0f}-{res['score_spectra_per_s_max']:.0f}), float32 matmul peak "
        f"{res['matmul_gflops']:.0f} GFLOP/s ({res['matmul_gflops_min']:.0f}-{res['matmul_gflops_max']:.0f}), "
        f"{res['threads']} threads"
    )
    if "realism_ratio" in res:
        print(
            f"realism_ratio: {res['realism_ratio']:.2f} (median reduced chi2 real {res['realism_chi2_real']:.2f}, "
            f"n = {res['realism_n_real']}, / simulated normal {res['realism_chi2_sim']:.2f}; fiducial model)"
        )
    print("\ngoals:")
    for line in goals(res):
        print("  " + line)
    print(f"wall time {res['wall_s']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

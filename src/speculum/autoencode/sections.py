"""Report sections of the autoencoder method. Each function takes arrays and returns HTML."""

from __future__ import annotations

import numpy as np

from speculum.report.builder import figure_to_html, pyplot, table_to_html

__all__ = ["chi2_section", "examples_section", "latent_section", "summary_section", "training_section"]

_CLASS_COLOURS = {
    "normal": "0.6",
    "agn": "C3",
    "star_blend": "C1",
    "reddened": "C5",
    "odd_lines": "C2",
    "pair": "C4",
    "artefact": "C0",
}


def summary_section(info: dict, chi2: np.ndarray, classes: np.ndarray | None) -> str:
    rows = [{"quantity": k, "value": v} for k, v in info.items()]
    html = table_to_html(rows)
    if classes is not None and len(chi2):
        per = []
        for c in sorted(set(classes.tolist()), key=lambda c: (c != "normal", c)):
            sel = classes == c
            per.append({"class": c, "spectra": int(sel.sum()), "median reduced chi2": float(np.nanmedian(chi2[sel]))})
        html += "<p>Reduced &chi;&sup2; by simulated class:</p>" + table_to_html(per)
    return html


def training_section(history: list[dict]) -> str:
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(ep, [h["train_loss"] for h in history], "o-", label="training")
    if history and "val_loss" in history[0]:
        axes[0].plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("fidelity loss")
    axes[0].legend()
    if history and "val_chi2" in history[0]:
        axes[1].plot(ep, [h["val_chi2"] for h in history], "s-", color="C1")
        axes[1].axhline(1.0, color="0.5", ls=":", lw=1)
        axes[1].set_ylabel("validation median reduced $\\chi^2$")
        axes[1].set_xlabel("epoch")
    fig.tight_layout()
    return figure_to_html(fig, "Loss per epoch (left) and median reduced chi-square of validation spectra (right).")


def examples_section(
    wave_obs: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    model_obs: np.ndarray,
    z: np.ndarray,
    chi2: np.ndarray,
    labels: list[str],
    wave_rest: np.ndarray,
    restframe: np.ndarray,
) -> str:
    """Observed spectra with reconstructions, masks, residuals, and the restframe models."""
    plt = pyplot()
    k = len(y)
    fig, axes = plt.subplots(
        2 * k, 2, figsize=(12, 3.3 * k), gridspec_kw={"height_ratios": [3, 1] * k, "width_ratios": [3, 2]}
    )
    for i in range(k):
        ax, axr, axf = axes[2 * i, 0], axes[2 * i + 1, 0], axes[2 * i, 1]
        good = w[i] > 0
        ax.plot(wave_obs, np.where(good, y[i], np.nan), lw=0.5, color="0.45", label="data")
        ax.plot(wave_obs, model_obs[i], lw=0.8, color="C3", label="reconstruction")
        lo, hi = np.nanpercentile(np.where(good, y[i], np.nan), [0.5, 99.5])
        ax.set_ylim(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo))
        bad = ~good
        if bad.any():
            ax.fill_between(wave_obs, 0, 1, where=bad, transform=ax.get_xaxis_transform(), color="C0", alpha=0.15, lw=0)
        ax.set_title(f"{labels[i]}  z = {z[i]:.3f}  reduced $\\chi^2$ = {chi2[i]:.2f}", fontsize=9)
        ax.set_ylabel("normalised flux")
        resid = np.where(good, (y[i] - model_obs[i]) * np.sqrt(np.clip(w[i], 0, None)), np.nan)
        axr.plot(wave_obs, resid, lw=0.4, color="0.3")
        axr.axhline(0, color="C3", lw=0.6)
        axr.set_ylim(-5, 5)
        axr.set_ylabel("resid/$\\sigma$")
        axf.plot(wave_rest, restframe[i], lw=0.6, color="C3")
        axf.axvspan(wave_obs[0] / (1 + z[i]), wave_obs[-1] / (1 + z[i]), color="0.9", zorder=-1)
        axf.set_title("restframe model (grey: observed range)", fontsize=9)
        axes[2 * i + 1, 1].axis("off")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("observed wavelength [$\\AA$]")
    axes[-2, 1].set_xlabel("restframe wavelength [$\\AA$]")
    fig.tight_layout()
    return figure_to_html(
        fig,
        "Held-out spectra (grey) with their reconstructions (red); shaded: masked pixels (zero weight); "
        "below: residuals in units of the noise. Right: the restframe model over the decoder's full range.",
    )


def chi2_section(chi2: np.ndarray, classes: np.ndarray | None) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    finite = chi2[np.isfinite(chi2)]
    bins = np.logspace(np.log10(max(finite.min(), 0.3)), np.log10(max(finite.max(), 3.0)), 50) if len(finite) else 10
    if classes is None:
        ax.hist(finite, bins=bins, color="0.5")
    else:
        for c in sorted(set(classes.tolist()), key=lambda c: (c != "normal", c)):
            sel = (classes == c) & np.isfinite(chi2)
            ax.hist(
                chi2[sel],
                bins=bins,
                histtype="step",
                lw=1.4,
                color=_CLASS_COLOURS.get(c, "k"),
                label=f"{c} ({sel.sum()})",
            )
        ax.legend(fontsize=8)
    ax.axvline(1.0, color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("reduced $\\chi^2$")
    ax.set_ylabel("spectra")
    fig.tight_layout()
    return figure_to_html(fig, "Reduced chi-square of every reconstructed spectrum; 1 is a fit at the noise level.")


def latent_section(latents: np.ndarray, z: np.ndarray, classes: np.ndarray | None) -> str:
    """2-D principal-component view of the latents, coloured by redshift and by class."""
    plt = pyplot()
    x = latents - latents.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    pc = x @ vt[:2].T
    frac = (s[:2] ** 2 / (s**2).sum()) if s.sum() > 0 else np.zeros(2)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    sc = axes[0].scatter(pc[:, 0], pc[:, 1], c=z, s=4, cmap="viridis")
    fig.colorbar(sc, ax=axes[0], label="redshift")
    if classes is not None:
        order = sorted(set(classes.tolist()), key=lambda c: (c != "normal", c))
        for c in order:
            sel = classes == c
            axes[1].scatter(
                pc[sel, 0], pc[sel, 1], s=4 if c == "normal" else 14, color=_CLASS_COLOURS.get(c, "k"), label=c
            )
        axes[1].legend(fontsize=8, markerscale=1.5)
    for ax in axes:
        ax.set_xlabel(f"latent PC 1 ({frac[0]:.0%})")
        ax.set_ylabel(f"latent PC 2 ({frac[1]:.0%})")
    fig.tight_layout()
    return figure_to_html(
        fig,
        "Latent vectors projected on their two principal components, coloured by redshift (left) and by simulated "
        "class (right). A redshift gradient on the left shows how much the latents still depend on the observed "
        "wavelength coverage: the decoder works in the restframe, but the encoder sees the observed frame.",
    )

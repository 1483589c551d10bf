"""Where is a reconstruction made up? The Fisher-information hallucination diagnostic.

Sampson & Melchior (2023): a MAP reconstruction with a learned (score-based) prior, and per
pixel the diagonal Fisher information of the likelihood (``F_L``) and of the prior (``F_P``);
``ΔF = F_P - F_L > 0`` marks pixels the prior, not the data, decided.

Entry points: :func:`train_prior` (a score network by denoising score matching),
:func:`map_reconstruct`, :func:`diagnose_images` / :func:`diagnose` (the maps), and the
estimators in :mod:`speculum.diagnostics.fisher`.

Example (end to end on the linear-Gaussian problem, whose prior score is exact: a MAP
reconstruction of a half-masked image and its maps; the masked half is the prior's):
    >>> import torch
    >>> from speculum.diagnostics.gaussian import GaussianInpainting
    >>> p = GaussianInpainting(size=8)
    >>> x_true, y = p.sample(1)
    >>> fl = fisher_diag_likelihood_psf(p.psf(), p.weights())
    >>> fp = fisher_diag_prior(p.score, p.map_estimate(y)[0], method="exact")
    >>> m = hallucination_map(fl, fp.diagonal)
    >>> bool((m.delta[:, 6:] > 0).all()), bool((m.delta[:, :4] < 0).all())
    (True, True)
"""

from speculum.diagnostics.apply import (
    Diagnosis,
    diagnose,
    diagnose_images,
    map_reconstruct,
    read_diagnosis,
    write_diagnosis,
)
from speculum.diagnostics.config import FisherConfig, MapConfig
from speculum.diagnostics.fisher import (
    DiagonalEstimate,
    HallucinationMap,
    exact_diagonal,
    fisher_diag_likelihood,
    fisher_diag_likelihood_psf,
    fisher_diag_prior,
    hallucination_map,
    hutchinson_diagonal,
    source_confidence,
)
from speculum.diagnostics.fit import PRIOR_NAME, train_prior
from speculum.diagnostics.reporting import MAPS_NAME, report_sections
from speculum.diagnostics.spectra import diagnose_spectra, observe, restframe_grid, restframe_spectra

__all__ = [
    "MAPS_NAME",
    "diagnose_spectra",
    "observe",
    "report_sections",
    "restframe_grid",
    "restframe_spectra",
    "PRIOR_NAME",
    "Diagnosis",
    "FisherConfig",
    "MapConfig",
    "diagnose",
    "diagnose_images",
    "map_reconstruct",
    "read_diagnosis",
    "train_prior",
    "write_diagnosis",
    "DiagonalEstimate",
    "HallucinationMap",
    "exact_diagonal",
    "fisher_diag_likelihood",
    "fisher_diag_likelihood_psf",
    "fisher_diag_prior",
    "hallucination_map",
    "hutchinson_diagonal",
    "source_confidence",
]

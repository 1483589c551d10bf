"""Known answers of the hallucination diagnostic (speculum.diagnostics)."""

import pytest
import torch

from speculum.diagnostics import (
    fisher_diag_likelihood,
    fisher_diag_likelihood_psf,
    fisher_diag_prior,
    hallucination_map,
    hutchinson_diagonal,
    source_confidence,
)
from speculum.diagnostics.gaussian import GaussianInpainting
from speculum.physics import convolve_psf, correlate_psf, gaussian_psf


@pytest.fixture(scope="module")
def problem():
    return GaussianInpainting()


def rel(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def test_psf_convolution_matches_dense_operator_and_adjoint(problem):
    x = torch.randn(3, *problem.shape, dtype=torch.float64)
    dense = (x.reshape(3, -1) @ problem.matrix().T).reshape(x.shape)
    assert torch.allclose(problem.forward(x), dense, atol=1e-14)
    y = torch.randn_like(x)
    assert torch.allclose((problem.forward(x) * y).sum(), (x * correlate_psf(y, problem.psf())).sum(), rtol=1e-12)
    point = torch.zeros(31, 31, dtype=torch.float64)
    point[15, 15] = 2.5
    assert convolve_psf(point, gaussian_psf(1.3)).sum().item() == pytest.approx(2.5, rel=1e-12)


def test_exact_likelihood_diagonal_matches_analytic(problem):
    analytic = problem.fisher_likelihood()
    observed = problem.weights() > 0
    closed = fisher_diag_likelihood_psf(problem.psf(), problem.weights())
    cols = fisher_diag_likelihood(problem.forward, torch.zeros(problem.shape, dtype=torch.float64), problem.weights())
    # far in the masked half F_L underflows towards 0: compare relative where it carries information
    big = analytic > 1e-8 * analytic.max()
    assert rel(closed[big], analytic[big]) < 1e-10 and rel(cols[big], analytic[big]) < 1e-10
    assert (closed[~big].abs() < 1e-6 * analytic.max()).all()
    assert big[observed].all()


def test_exact_prior_diagonal_and_hutchinson(problem):
    x = torch.zeros(problem.shape, dtype=torch.float64)
    analytic = problem.fisher_prior()
    exact = fisher_diag_prior(problem.score, x, method="exact")
    assert exact.exact and rel(exact.diagonal, analytic) < 1e-6
    hutch = fisher_diag_prior(problem.score, x, method="hutchinson", max_probes=2000, batch=250)
    err = (hutch.diagonal / analytic - 1).abs()
    assert hutch.probes == 2000 and not hutch.exact
    assert err.median() < 0.05, err.median()  # measured 0.011
    # the reported standard errors describe the actual errors (about 68 % within 1 sigma)
    within = ((hutch.diagonal - analytic).abs() < hutch.stderr).double().mean()
    assert 0.55 < within < 0.8, within


def test_delta_f_signs_and_posterior_precision_identity(problem):
    fl, fp = problem.fisher_likelihood(), problem.fisher_prior()
    m = hallucination_map(fisher_diag_likelihood_psf(problem.psf(), problem.weights()), fp)
    observed = problem.weights() > 0
    assert (m.delta[observed] < 0).all()
    assert (m.delta[problem.far_from_data()] > 0).all()
    assert ((m.prior_fraction >= 0) & (m.prior_fraction <= 1)).all()
    assert (m.prior_fraction[observed] < 0.5).all() and (m.prior_fraction[problem.far_from_data()] > 0.5).all()
    # the Hessian of -log L - lambda log p, by autograd, has diagonal F_L + F_P
    y = problem.sample(1)[1][0]
    prec = problem.precision()

    def objective(v):
        v = v.reshape(problem.shape)
        r = problem.forward(v) - y
        v = v.flatten()
        return 0.5 * (problem.weights() * r.pow(2)).sum() + 0.5 * problem.prior_weight * v @ prec @ v

    hess = torch.func.hessian(objective)(torch.zeros(problem.size**2, dtype=torch.float64))
    assert torch.allclose(hess, problem.posterior_precision(), rtol=1e-10, atol=1e-8)
    assert torch.allclose(hess.diagonal().reshape(problem.shape), fl + fp, rtol=1e-10, atol=1e-8)


def test_hutchinson_nonlinear_likelihood():
    """f(x) = A (x²/2): J = A diag(x), so diag(Jᵀ W J) = x² diag(Aᵀ W A) exactly."""
    p = GaussianInpainting(size=8)
    x = torch.linspace(0.5, 2.0, 64, dtype=torch.float64).reshape(8, 8)

    def forward(v):
        return p.forward(v.pow(2) / 2)

    truth = x.pow(2) * fisher_diag_likelihood_psf(p.psf(), p.weights())
    exact = fisher_diag_likelihood(forward, x, p.weights(), method="exact")
    big = truth > 1e-8 * truth.max()
    assert rel(exact[big], truth[big]) < 1e-10
    hutch = fisher_diag_likelihood(forward, x, p.weights(), method="hutchinson", max_probes=2000, batch=500)
    # on observed pixels; in the masked half F_L -> 0 while the off-diagonal terms do not, so the
    # relative error of any Hutchinson estimate grows there (its absolute error stays small)
    obs = p.weights() > 0
    assert (hutch[obs] / truth[obs] - 1).abs().median() < 0.05
    assert (hutch - truth).abs().max() < 0.15 * truth.max()  # measured 0.10


def test_stopping_rule():
    d = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def diag_matvec(v):
        return v * d

    # a diagonal matrix: z * M z = diag exactly, so the estimate stops changing after two batches
    est = hutchinson_diagonal(diag_matvec, (3,), max_probes=10_000, batch=10, rtol=1e-6)
    assert est.probes == 20 and torch.allclose(est.diagonal, d)
    m = torch.tensor([[1.0, 0.9, 0.0], [0.9, 2.0, 0.9], [0.0, 0.9, 3.0]], dtype=torch.float64)
    est = hutchinson_diagonal(lambda v: v @ m, (3,), max_probes=500, batch=50, rtol=1e-12)
    assert est.probes == 500 and est.rel_change > 1e-12


def test_source_confidence_and_errors():
    r = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    flux = torch.tensor([[1.0, 1.0], [2.0, 4.0]])
    seg = torch.tensor([[1, 1], [2, 2]])
    conf = source_confidence(r, flux, seg)
    assert torch.allclose(conf, torch.tensor([0.75, 4 / 6], dtype=torch.float64))
    assert source_confidence(torch.zeros(3), torch.ones(3)).item() == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        hallucination_map(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="negative"):
        hallucination_map(-torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="method"):
        fisher_diag_prior(lambda v: v, torch.zeros(3), method="magic")
    with pytest.raises(ValueError, match="non-finite"):
        fisher_diag_prior(lambda v: v, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="inverse variances"):
        fisher_diag_likelihood_psf(gaussian_psf(1.0), -torch.ones(4, 4))


@pytest.mark.slow
def test_hallucination_calibration(tmp_path):
    """benchmarks/fisher.py --quick's calibration: ΔF ranks made-up pixels above the rest (AUC >= 0.8)
    and better than the mask alone (measured: 0.885 vs 0.746; r within the mask 0.974). The full run's
    better prior gives 0.788: the issue's goal is not met there (README)."""
    pytest.importorskip("galsim", reason="galsim (the images extra) is not installed")
    from speculum.diagnostics.calibration import hallucination_figures

    fig = hallucination_figures(tmp_path, n_train=4000, n_test=12, epochs=10, probes=400)
    assert fig["hallucination_auc"] >= 0.8
    assert fig["hallucination_auc"] > fig["hallucination_auc_mask"]
    assert fig["calibration_delta_negative_observed"] > 0.95


def test_prior_fraction_is_one_half_where_nothing_informs_and_caller_network_untouched():
    m = hallucination_map(torch.tensor([0.0, 0.0, 0.0, 2.0]), torch.tensor([-1.0, 0.0, 2.0, 2.0]))
    assert m.prior_fraction.tolist() == [0.5, 0.5, 1.0, 0.5]
    assert ((m.prior_fraction > 0.5) == (m.delta > 0)).all()

    from speculum.diagnostics import FisherConfig, diagnose_images
    from speculum.models.score import ScoreConfig, ScoreNet

    net = ScoreNet(ScoreConfig(shape=(8, 8), channels=4, levels=1)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    diagnose_images(torch.rand(1, 8, 8), torch.ones(8, 8), gaussian_psf(1.0), net, 1.0, FisherConfig(max_probes=10))
    assert net.training and all(p.dtype == torch.float32 and p.requires_grad for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_shape_errors_name_the_argument():
    from speculum.diagnostics import MapConfig, map_reconstruct
    from speculum.models.score import ScoreConfig, ScoreNet

    psf = gaussian_psf(1.0)
    with pytest.raises(ValueError, match="weights must have the shape of one observation"):
        fisher_diag_likelihood(lambda v: convolve_psf(v, psf), torch.zeros(8, 8, dtype=torch.float64), torch.ones(8))
    net = ScoreNet(ScoreConfig(shape=(8, 8), channels=4, levels=1))
    with pytest.raises(ValueError, match=r"forward\(x\) gives \(2, 4, 4\)"):
        map_reconstruct(torch.zeros(2, 8, 8), torch.ones(8, 8), lambda v: v[:, :4, :4], net, MapConfig(steps=1))


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("mlp", dict(n=20_000, epochs=20, channels=128, levels=2)),  # measured max 0.03-0.065, median 0.015
        ("unet", dict(n=10_000, epochs=10, channels=16, levels=1)),  # the applications' network: max 0.047-0.075
    ],
)
def test_trained_score_network_recovers_gaussian_score_jacobian(tmp_path, arch, kwargs):
    """DSM on N(0, Σ) samples at one noise level σ: the exact score is -(Σ + σ² I)⁻¹ x (within 10 %)."""
    from speculum.diagnostics.calibration import score_jacobian_figures

    fig = score_jacobian_figures(tmp_path, sigma=0.3, arch=arch, **kwargs)
    assert fig["score_jacobian_rel_err"] < 0.10, fig

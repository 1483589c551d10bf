"""Pure, differentiable physics: redshift, resampling, line spread, normalisation, image PSFs.

Shapes: spectra ``(N, L)``, wavelength grids ``(L,)`` in vacuum Angstrom, redshifts
``(N,)``. Every function works in the dtype of its inputs (use float64 where sub-pixel
shifts matter).
"""

from speculum.physics.lsf import (
    apply_resolution_matrix,
    convolve_lsf,
    gaussian_kernel,
    gaussian_resolution_matrix,
    shrink_valid,
)
from speculum.physics.normalization import NORMALIZATION_RANGE, fit_amplitude, median_normalization, window_median
from speculum.physics.psf import convolve_psf, correlate_psf, gaussian_psf
from speculum.physics.redshift import interp_linear, redshift_grid, resample_log_uniform, resample_to_observed

__all__ = [
    "NORMALIZATION_RANGE",
    "apply_resolution_matrix",
    "convolve_lsf",
    "convolve_psf",
    "correlate_psf",
    "fit_amplitude",
    "gaussian_kernel",
    "gaussian_psf",
    "gaussian_resolution_matrix",
    "interp_linear",
    "median_normalization",
    "redshift_grid",
    "resample_log_uniform",
    "resample_to_observed",
    "shrink_valid",
    "window_median",
]

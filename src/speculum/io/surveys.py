"""Read any supported survey file: the layout is detected from its HDUs.

The readers live in :mod:`speculum.io.sdss` (SDSS/BOSS ``spec``, image-layout and
``spPlate`` files) and :mod:`speculum.io.desi` (DESI coadds with redrock/zbest redshifts);
both return :class:`~speculum.io.records.SpectrumRecords` and raise
:class:`~speculum.io.records.SpectrumFormatError` naming the file, the HDU/column and the
problem. This module picks the reader and re-exports the public names of all three.

Units: every reader returns flux densities in :data:`FLUX_UNIT` (what SDSS, BOSS and DESI
publish) on vacuum wavelength grids in Angstrom.
"""

from __future__ import annotations

from pathlib import Path

from speculum.instruments import Instrument, get_instrument
from speculum.io.desi import read_desi_coadd, read_desi_open, read_redshift_table
from speculum.io.records import SpectrumFormatError, SpectrumRecords, format_error, hdu_names, open_fits
from speculum.io.sdss import BRIGHTSKY, SDSS_BAD_BITS, read_sdss_fitsio, read_sdss_open, read_sdss_spec
from speculum.io.shards import FLUX_UNIT, WAVE_MEDIUM, WAVE_UNIT

__all__ = [
    "BRIGHTSKY",
    "FLUX_UNIT",
    "SDSS_BAD_BITS",
    "WAVE_MEDIUM",
    "WAVE_UNIT",
    "SpectrumFormatError",
    "SpectrumRecords",
    "read_desi_coadd",
    "read_redshift_table",
    "read_sdss_spec",
    "read_spectra",
]


def read_spectra(path: str | Path, instrument: str | Instrument | None = None, **desi_options) -> SpectrumRecords:
    """Read any supported survey file; the layout is detected from its HDUs.

    Well-formed SDSS/BOSS ``spec`` files are read with fitsio when it is installed (8x
    faster, ``benchmarks/io.py``); everything else, and every error message, goes through
    astropy.

    Args:
        path: A SDSS/BOSS ``spec``/``spPlate`` file or a DESI ``coadd`` file.
        instrument: Target grid for SDSS/BOSS files (default ``BOSS``, which contains
            the SDSS range); DESI files always use the DESI grid.
        desi_options: Passed to :func:`~speculum.io.desi.read_desi_coadd`.

    Returns:
        The file's spectra, ``flux`` ``(N, L)`` on the instrument's grid.
    """
    path = Path(path)
    sdss_inst = get_instrument(instrument or "BOSS")
    if sdss_inst.name != "DESI" and path.name.lower().endswith((".fits", ".fits.gz", ".fit")):
        fast = read_sdss_fitsio(path, sdss_inst)
        if fast is not None:
            return fast
    with open_fits(path) as hdul:
        names = hdu_names(hdul)
        if not ("FIBERMAP" in names or any(n.endswith("_FLUX") for n in names)):
            return read_sdss_open(path, hdul, sdss_inst)
        if instrument is not None and sdss_inst.name != "DESI":
            raise format_error(path, "layout", f"a DESI coadd cannot be placed on the {sdss_inst.name} grid")
        return read_desi_open(path, hdul, **desi_options)

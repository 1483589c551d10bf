"""Data in and out: survey readers, Parquet shards + manifest, streaming, model-ready spectra, result tables.

Modules: :mod:`~speculum.io.sdss` and :mod:`~speculum.io.desi` (survey readers, picked by
:func:`read_spectra`; both return :class:`SpectrumRecords`), :mod:`~speculum.io.shards`
(the on-disk format), :mod:`~speculum.io.ingest`, :mod:`~speculum.io.stream`,
:mod:`~speculum.io.prepare` (spectra -> weights, normalisation, usable rows),
:mod:`~speculum.io.results` and :mod:`~speculum.io.interop` (specutils, FITS).
"""

from speculum._files import atomic_write_text
from speculum.io.ingest import IngestConfig, expand_inputs, ingest
from speculum.io.interop import (
    from_specutils,
    records_to_specutils,
    spectrum_class,
    to_specutils,
    write_spectra_fits,
)
from speculum.io.prepare import PreparedSpectra, pixel_weights, prepare_spectra
from speculum.io.records import SpectrumFormatError, SpectrumRecords
from speculum.io.results import read_result_meta, read_results, write_results
from speculum.io.shards import (
    FLUX_UNIT,
    MANIFEST,
    SCHEMA_VERSION,
    DataFormatError,
    ShardWriter,
    SpectraSet,
    decode_table,
    split_of,
)
from speculum.io.stream import ShardStream
from speculum.io.surveys import read_desi_coadd, read_redshift_table, read_sdss_spec, read_spectra

__all__ = [
    "FLUX_UNIT",
    "MANIFEST",
    "SCHEMA_VERSION",
    "DataFormatError",
    "IngestConfig",
    "PreparedSpectra",
    "ShardStream",
    "ShardWriter",
    "SpectraSet",
    "SpectrumFormatError",
    "SpectrumRecords",
    "atomic_write_text",
    "decode_table",
    "expand_inputs",
    "from_specutils",
    "ingest",
    "pixel_weights",
    "prepare_spectra",
    "read_desi_coadd",
    "read_redshift_table",
    "read_result_meta",
    "read_results",
    "read_sdss_spec",
    "read_spectra",
    "records_to_specutils",
    "spectrum_class",
    "split_of",
    "to_specutils",
    "write_results",
    "write_spectra_fits",
]

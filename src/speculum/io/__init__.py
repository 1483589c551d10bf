"""Data in and out: survey readers, Parquet shards + manifest, streaming, result tables."""

from speculum.io.ingest import IngestConfig, expand_inputs, ingest
from speculum.io.interop import (
    from_specutils,
    records_to_specutils,
    spectrum_class,
    to_specutils,
    write_spectra_fits,
)
from speculum.io.results import read_results, write_results
from speculum.io.shards import (
    FLUX_UNIT,
    MANIFEST,
    SCHEMA_VERSION,
    DataFormatError,
    ShardWriter,
    SpectraSet,
    atomic_write_text,
    split_of,
)
from speculum.io.stream import ShardStream
from speculum.io.surveys import (
    SpectrumFormatError,
    SpectrumRecords,
    read_desi_coadd,
    read_redshift_table,
    read_sdss_spec,
    read_spectra,
)

__all__ = [
    "FLUX_UNIT",
    "MANIFEST",
    "SCHEMA_VERSION",
    "DataFormatError",
    "IngestConfig",
    "ShardStream",
    "ShardWriter",
    "SpectraSet",
    "SpectrumFormatError",
    "SpectrumRecords",
    "atomic_write_text",
    "expand_inputs",
    "from_specutils",
    "ingest",
    "read_desi_coadd",
    "read_redshift_table",
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

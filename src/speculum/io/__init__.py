"""Data in and out: survey readers, Parquet shards + manifest, streaming, result tables."""

from speculum.io.ingest import IngestConfig, expand_inputs, ingest
from speculum.io.results import write_results
from speculum.io.shards import (
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
    "ingest",
    "read_desi_coadd",
    "read_redshift_table",
    "read_sdss_spec",
    "read_spectra",
    "split_of",
    "write_results",
]

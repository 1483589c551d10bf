"""Data in and out: the Parquet-shard spectra format (survey readers come with the I/O issue)."""

from speculum.io.shards import (
    MANIFEST,
    SCHEMA_VERSION,
    DataFormatError,
    ShardWriter,
    SpectraSet,
    atomic_write_text,
    split_of,
)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "DataFormatError",
    "ShardWriter",
    "SpectraSet",
    "atomic_write_text",
    "split_of",
]

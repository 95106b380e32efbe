//! Market data storage: Parquet files partitioned by venue, instrument and date, written
//! with bounded buffering and read back as row streams; import of raw captures and
//! vendor files; inspection summaries.

pub mod bench;
mod import;
pub mod import_bybit;
pub mod import_csv;
mod pages;
mod reader;
mod schema;
mod writer;

pub use import::{Format, ImportOptions, ImportStats, import, import_with};
pub use reader::{
    FileMeta, MergedReader, SeriesFilter, SeriesSummary, data_files, inspect, read_file,
};
pub use schema::{Row, RowKind, SCHEMA_VERSION, arrow_schema, utc_date};
pub use writer::{DEFAULT_ROW_GROUP_ROWS, SeriesMeta, StoreWriter, WriteStats};

use std::path::{Path, PathBuf};
use thiserror::Error;

/// Store failures, each naming the file and, for bad input, where in it.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad input data.
    #[error("{}{}{at}: {reason}", path.display(), if at.is_empty() { "" } else { ": " })]
    Input {
        /// The file.
        path: PathBuf,
        /// Where in it (line, record, column), if known.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// The Parquet layer failed (corrupt file, encoder error).
    #[error("{}: {reason}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        reason: String,
    },
    /// Data that does not fit the schema.
    #[error("{0}")]
    Format(String),
}

impl StoreError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn parquet(path: &Path, e: parquet::errors::ParquetError) -> Self {
        StoreError::Parquet {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

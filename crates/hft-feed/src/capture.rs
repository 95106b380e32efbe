//! Raw capture files: one message per line, `<local_recv_ts_ns> <raw message>`, plain or
//! gzip (detected by its magic bytes). Read as a stream with one reused line buffer, so
//! a capture of any size replays in constant memory.

use flate2::read::MultiGzDecoder;
use hft_core::Nanos;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use thiserror::Error;

/// A capture line that is not `<ns> <message>`.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// Reading or decompressing failed (truncated or corrupt file).
    #[error("line {line}: {source}")]
    Io {
        /// Line being read.
        line: u64,
        /// The I/O or gzip error.
        source: io::Error,
    },
    /// The line does not start with a nanosecond timestamp and a space.
    #[error("line {line}: expected '<local_ts_ns> <message>'")]
    Format {
        /// Line number (1-based).
        line: u64,
    },
}

/// One line of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureLine<'a> {
    /// 1-based line number, for error messages.
    pub line: u64,
    /// Local receive time recorded by the collector.
    pub local_ts: Nanos,
    /// The raw message.
    pub message: &'a str,
}

/// A line with its 1-based number, or the read error with the number of the line.
pub type NumberedLine<'a> = Result<(u64, &'a str), (u64, io::Error)>;

/// Lines of a text file, plain or gzip (by its magic bytes), through one reused buffer.
pub struct LineReader {
    inner: Box<dyn BufRead + Send>,
    buf: String,
    line: u64,
}

impl LineReader {
    /// Opens a file, gzip or plain.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = BufReader::with_capacity(1 << 16, File::open(path)?);
        let gz = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(Self::from_reader(inner))
    }

    /// Lines of any buffered reader.
    pub fn from_reader(inner: Box<dyn BufRead + Send>) -> Self {
        Self {
            inner,
            buf: String::with_capacity(1 << 16),
            line: 0,
        }
    }

    /// The next non-empty line without its line ending, with its 1-based number; an
    /// error carries the number of the line being read.
    pub fn next_line(&mut self) -> Option<NumberedLine<'_>> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.inner.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err((self.line, e))),
            }
            if !self.buf.trim_end_matches(['\n', '\r']).is_empty() {
                break;
            }
        }
        Some(Ok((self.line, self.buf.trim_end_matches(['\n', '\r']))))
    }
}

/// Streaming reader of a capture.
pub struct CaptureReader {
    lines: LineReader,
}

impl CaptureReader {
    /// Opens a capture, gzip or plain.
    pub fn open(path: &Path) -> io::Result<Self> {
        LineReader::open(path).map(|lines| Self { lines })
    }

    /// Reads a capture from any buffered reader.
    pub fn from_reader(inner: Box<dyn BufRead + Send>) -> Self {
        Self {
            lines: LineReader::from_reader(inner),
        }
    }

    /// The next line, or `None` at the end. Empty lines are skipped.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<CaptureLine<'_>, CaptureError>> {
        let (line, text) = match self.lines.next_line()? {
            Ok(l) => l,
            Err((line, source)) => return Some(Err(CaptureError::Io { line, source })),
        };
        let parsed = text
            .split_once(' ')
            .and_then(|(ts, msg)| ts.parse::<Nanos>().ok().map(|ts| (ts, msg)))
            .ok_or(CaptureError::Format { line });
        Some(parsed.map(|(local_ts, message)| CaptureLine {
            line,
            local_ts,
            message,
        }))
    }

    /// Reads all remaining lines into memory (tests and benches of small files).
    pub fn read_all(mut self) -> Result<Vec<(Nanos, String)>, CaptureError> {
        let mut out = Vec::new();
        while let Some(l) = self.next() {
            let l = l?;
            out.push((l.local_ts, l.message.to_owned()));
        }
        Ok(out)
    }
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("line", &self.lines.line)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static str) -> CaptureReader {
        CaptureReader::from_reader(Box::new(text.as_bytes()))
    }

    #[test]
    fn reads_lines_and_reports_bad_ones_with_their_number() {
        let mut r = reader("1 {\"a\":1}\n\n2 {}\nnot-a-timestamp {}\n3 x");
        assert_eq!(
            r.next().unwrap().unwrap(),
            CaptureLine {
                line: 1,
                local_ts: 1,
                message: "{\"a\":1}"
            }
        );
        assert_eq!(r.next().unwrap().unwrap().line, 3);
        assert!(matches!(
            r.next().unwrap(),
            Err(CaptureError::Format { line: 4 })
        ));
        assert_eq!(r.next().unwrap().unwrap().message, "x");
        assert!(r.next().is_none());
    }

    #[test]
    fn truncated_gzip_is_an_error_not_a_panic() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, "1 {}\n".repeat(10_000).as_bytes()).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        let mut r = CaptureReader::from_reader(Box::new(BufReader::new(MultiGzDecoder::new(
            std::io::Cursor::new(bytes),
        ))));
        let mut saw_error = false;
        while let Some(l) = r.next() {
            if l.is_err() {
                saw_error = true;
                break;
            }
        }
        assert!(saw_error);
    }
}

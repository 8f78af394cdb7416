use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Every way a call into the core can be refused. The state is never changed when one is
/// returned. The Python bindings raise each as the matching exception: `Invalid` and `Format`
/// as ValueError, `Type` as TypeError, `Io` as OSError (FileNotFoundError, PermissionError, ...
/// by its kind).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A bad value (out of range, inconsistent, a state that does not fit): the message names it.
    Invalid(String),
    /// A value of the wrong type (text where a number belongs): the message names it.
    Type(String),
    /// A file that could not be opened, read or written.
    Io {
        path: PathBuf,
        kind: ErrorKind,
        message: String,
    },
    /// A file that was read but does not hold what it should (another format, damaged, cut short).
    Format { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, e: &std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// `path` does not hold what it should.
    pub fn format(path: &Path, message: impl Into<String>) -> Error {
        Error::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(msg) | Error::Type(msg) => f.write_str(msg),
            Error::Io { path, message, .. } | Error::Format { path, message } => {
                write!(f, "{}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}

pub(crate) fn check_num_prompts(num_prompts: usize) -> Result<()> {
    if num_prompts == 0 || num_prompts > u32::MAX as usize {
        return invalid(format!(
            "num_prompts must be in [1, 2^32), got {num_prompts}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_name_the_file() {
        let path = Path::new("/no/such/dir/rows.bin");
        let e = std::fs::File::open(path).unwrap_err();
        let err = Error::io(path, &e);
        assert!(matches!(
            err,
            Error::Io {
                kind: ErrorKind::NotFound,
                ..
            }
        ));
        assert!(err.to_string().starts_with("/no/such/dir/rows.bin: "));
        let err = Error::format(path, "not a saved log world");
        assert_eq!(
            err.to_string(),
            "/no/such/dir/rows.bin: not a saved log world"
        );
    }
}

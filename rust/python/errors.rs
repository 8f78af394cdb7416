//! The core's errors as the matching Python exceptions.

use std::io::ErrorKind;

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyTypeError, PyValueError,
};
use pyo3::PyErr;

use crate::error::Error;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let message = e.to_string();
        match e {
            Error::Invalid(_) | Error::Format { .. } => PyValueError::new_err(message),
            Error::Type(_) => PyTypeError::new_err(message),
            Error::Io { kind, .. } => match kind {
                ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
                ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
                ErrorKind::AlreadyExists => PyFileExistsError::new_err(message),
                ErrorKind::IsADirectory => PyIsADirectoryError::new_err(message),
                ErrorKind::NotADirectory => PyNotADirectoryError::new_err(message),
                _ => PyOSError::new_err(message),
            },
        }
    }
}

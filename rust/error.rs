use std::fmt;

/// Every way a call into the core can be refused. The state is never changed when one is returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A bad argument: the message names it.
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(msg) => f.write_str(msg),
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

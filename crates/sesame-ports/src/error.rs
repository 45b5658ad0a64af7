/// A store failure, sorted so the API can answer well.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service cannot be reached or timed out: worth a 503 and a retry.
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A uniqueness rule refused the write (e.g. a client id that exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The write would break a size limit of the data (metadata over `METADATA_MAX_BYTES`).
    #[error("too large: {0}")]
    TooLarge(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

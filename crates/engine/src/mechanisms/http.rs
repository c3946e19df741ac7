//! The one HTTP client: connect and read timeouts and an overall deadline per transfer, identity encoding (bytes are hashed as
//! they arrive, so no transparent decompression), errors that say which URL and why.

use std::io::Read;
use std::time::Duration;

/// Why a GET failed; callers try the next origin either way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The server answered, without the file.
    #[error("HTTP {0}")]
    Status(u16),
    /// No answer, or a broken one.
    #[error("{0}")]
    Transport(String),
}

/// How long one read may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A client with timeouts for every request (a stalled mirror cannot hang a build).
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub(crate) fn new() -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(READ_TIMEOUT)
            .user_agent("reprovm/1")
            .build();
        Client { agent }
    }

    /// Start a GET of at most `bytes`; the body is read from the returned reader, which gives
    /// at most `bytes + 1` bytes (one more than allowed: the caller tells a body that is too
    /// long) and ends (an error) at the transfer's overall deadline
    /// ([`reprovm_fs::util::transfer_deadline`]).
    pub(crate) fn get(
        &self,
        url: &str,
        bytes: u64,
    ) -> Result<Box<dyn Read + Send + Sync + 'static>, HttpError> {
        let deadline = reprovm_fs::util::transfer_deadline(READ_TIMEOUT, bytes);
        match self.agent.get(url).timeout(deadline).set("Accept-Encoding", "identity").call() {
            Ok(r) => Ok(Box::new(r.into_reader().take(bytes.saturating_add(1)))),
            Err(ureq::Error::Status(code, _)) => Err(HttpError::Status(code)),
            Err(e) => Err(HttpError::Transport(e.to_string().replace('\n', " "))),
        }
    }
}

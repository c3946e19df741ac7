//! A blob as it streams from a registry: at most its declared size, its digest checked at
//! its end, its transfer's deadline named when it runs out.

use super::*;

/// A blob streaming from a registry ([`Registry::blob_reader`]).
pub struct BlobReader {
    pub(super) inner: Box<dyn Read + Send + Sync>,
    pub(super) hashing: HashingWriter<std::io::Sink>,
    pub(super) size: u64,
    pub(super) digest: String,
    pub(super) repo: String,
    /// Bytes read so far.
    pub(super) read: u64,
    pub(super) verified: bool,
    /// The request's overall deadline, for messages.
    pub(super) deadline: Duration,
}

impl BlobReader {
    fn fail(e: RegistryError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    /// The registry's error inside an error this reader returned (or a transfer error).
    pub fn error(e: std::io::Error) -> RegistryError {
        match e.get_ref().and_then(|inner| inner.downcast_ref::<RegistryError>()) {
            Some(RegistryError::Refused(m)) => RegistryError::Refused(m.clone()),
            Some(RegistryError::Transfer(m)) => RegistryError::Transfer(m.clone()),
            None => RegistryError::Transfer(e.to_string()),
        }
    }

    /// The bytes read so far.
    pub fn read_so_far(&self) -> u64 {
        self.read
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        let (digest, size, repo) = (&self.digest, self.size, &self.repo);
        let n = self.inner.read(buf).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!(
                    "{e} (a read waits at most the per-read timeout, the whole transfer at most {})",
                    reprovm_fs::progress::human_duration(self.deadline)
                ),
                _ => e.to_string(),
            };
            Self::fail(RegistryError::Transfer(format!(
                "blob {digest} from {repo}: the transfer broke off after {} of {size} bytes: {why}",
                self.read
            )))
        })?;
        self.hashing.write_all(&buf[..n])?;
        self.read += n as u64;
        let got = self.read;
        if got > size {
            return Err(Self::fail(RegistryError::Refused(format!(
                "blob {digest} from {repo} refused: it sends more than the {size} bytes its descriptor declares (cut off)"
            ))));
        }
        if n == 0 {
            if got < size {
                return Err(Self::fail(RegistryError::Transfer(format!(
                    "blob {digest} from {repo}: the transfer ended after {got} of {size} bytes"
                ))));
            }
            let hashing = std::mem::replace(&mut self.hashing, HashingWriter::new(std::io::sink()));
            let (_, hex) = hashing.finish();
            if format!("sha256:{hex}") != *digest {
                return Err(Self::fail(RegistryError::Refused(format!(
                    "blob {digest} from {repo} refused: its {got} bytes hash to sha256:{hex}"
                ))));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

//! SHA-256 helpers: streaming file hashes, a hashing writer, and hex checks.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Hash a file by streaming it; returns (hex sha256, size).
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    sha256_reader(&mut f).with_context(|| format!("reading {}", path.display()))
}

pub fn sha256_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A writer that hashes and counts everything written through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }
    pub fn finish(self) -> (W, String) {
        (self.inner, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Incremental hasher for canonical text records (input hashes, manifest hashes).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new(domain: &str) -> Hasher {
        let mut h = Hasher(Sha256::new());
        h.field("domain", domain.as_bytes());
        h
    }
    /// Length-prefixed field so that no two field sequences collide.
    pub fn field(&mut self, key: &str, value: &[u8]) {
        self.0.update(format!("{}:{}:{}:", key.len(), key, value.len()).as_bytes());
        self.0.update(value);
        self.0.update(b"\n");
    }
    pub fn finish(self) -> String {
        hex::encode(self.finish_bytes())
    }
    pub fn finish_bytes(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn known_vector() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_bytes(b"")));
        assert!(!is_sha256_hex("ABC"));
    }
    #[test]
    fn hasher_fields_do_not_collide() {
        let mut a = Hasher::new("t");
        a.field("x", b"ab");
        a.field("y", b"c");
        let mut b = Hasher::new("t");
        b.field("x", b"a");
        b.field("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}

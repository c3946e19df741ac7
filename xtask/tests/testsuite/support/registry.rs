//! A registry for the hostile-registry tests: an in-memory OCI distribution registry on
//! 127.0.0.1 (blob uploads, blobs and manifests by digest and tag) that behaves honestly until
//! a test gives it a rule, which then answers whatever requests it wants to (a forged manifest,
//! an endless blob, a 401 with a foreign token realm, a redirect). Every request is recorded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A response body.
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `byte`, generated as they are sent (a stream of any size, no memory).
    Endless {
        byte: u8,
        len: u64,
    },
    /// `data`, one byte at a time with `every` between them (a registry that never stalls
    /// long enough for a per-read timeout, and never ends).
    Drip {
        data: Vec<u8>,
        every: std::time::Duration,
    },
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Claim this Content-Length instead of the body's (a lie), or none (close-delimited).
    pub content_length: Option<Option<u64>>,
}

impl Response {
    pub fn new(status: u16, body: Vec<u8>) -> Response {
        Response { status, headers: Vec::new(), body: Body::Bytes(body), content_length: None }
    }
    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

/// What the registry holds: blobs by digest, manifests by `repo:reference`.
#[derive(Default)]
pub struct State {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub manifests: BTreeMap<String, (Vec<u8>, String)>,
    uploads: u64,
}

impl State {
    /// The manifest bytes at `repo` and `reference` (a tag or a digest).
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Vec<u8>> {
        self.manifests.get(&format!("{repo}:{reference}")).map(|(b, _)| b.clone())
    }
    /// Put `bytes` at `repo:reference` (and at its digest); returns the digest.
    pub fn put_manifest(&mut self, repo: &str, reference: &str, bytes: Vec<u8>) -> String {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        let media = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        self.manifests.insert(format!("{repo}:{reference}"), (bytes.clone(), media.clone()));
        self.manifests.insert(format!("{repo}:{digest}"), (bytes, media));
        digest
    }
    /// Store a blob; returns its digest.
    pub fn put_blob(&mut self, bytes: Vec<u8>) -> String {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        self.blobs.insert(digest.clone(), bytes);
        digest
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

type Rule = Box<dyn FnMut(&Request, &mut State) -> Option<Response> + Send>;

/// The running registry.
pub struct FakeRegistry {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
    pub requests: Arc<Mutex<Vec<Request>>>,
    rule: Arc<Mutex<Option<Rule>>>,
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reg = FakeRegistry {
            addr,
            state: Arc::default(),
            requests: Arc::default(),
            rule: Arc::new(Mutex::new(None)),
        };
        let (state, requests, rule) = (reg.state.clone(), reg.requests.clone(), reg.rule.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, requests, rule) = (state.clone(), requests.clone(), rule.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &requests, &rule);
                });
            }
        });
        reg
    }

    /// From now on, `rule` answers first; requests it returns None for are served honestly.
    pub fn hostile(
        &self,
        rule: impl FnMut(&Request, &mut State) -> Option<Response> + Send + 'static,
    ) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    pub fn honest(&self) {
        *self.rule.lock().unwrap() = None;
    }

    /// `http://ADDR/REPO`: a repository as `--substituter` and `cache push` take it.
    pub fn repo(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn requests_to(&self, needle: &str) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.contains(needle))
            .cloned()
            .collect()
    }
}

fn read_request(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, target) =
        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, target, headers, body }))
}

fn serve(
    mut stream: TcpStream,
    state: &Mutex<State>,
    requests: &Mutex<Vec<Request>>,
    rule: &Mutex<Option<Rule>>,
) -> std::io::Result<()> {
    let Some(req) = read_request(&stream)? else { return Ok(()) };
    requests.lock().unwrap().push(req.clone());
    let answer = {
        let mut st = state.lock().unwrap();
        let hostile = rule.lock().unwrap().as_mut().and_then(|r| r(&req, &mut st));
        hostile.unwrap_or_else(|| honest(&req, &mut st, &stream))
    };
    let head_only = req.method == "HEAD";
    let len = match (&answer.content_length, &answer.body) {
        (Some(claimed), _) => *claimed,
        (None, Body::Bytes(b)) => Some(b.len() as u64),
        (None, Body::Endless { len, .. }) => Some(*len),
        (None, Body::Drip { data, .. }) => Some(data.len() as u64),
    };
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", answer.status);
    if let Some(l) = len {
        head.push_str(&format!("Content-Length: {l}\r\n"));
    }
    for (k, v) in &answer.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if head_only {
        return Ok(());
    }
    match answer.body {
        Body::Bytes(b) => stream.write_all(&b)?,
        Body::Drip { data, every } => {
            for b in data {
                stream.write_all(&[b])?;
                stream.flush()?;
                std::thread::sleep(every);
            }
        }
        Body::Endless { byte, len } => {
            let chunk = vec![byte; 64 << 10];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
    }
    stream.flush()
}

/// The honest registry.
fn honest(req: &Request, st: &mut State, stream: &TcpStream) -> Response {
    let path = req.path().to_string();
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Response::new(200, b"{}".to_vec());
    };
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        return match req.method.as_str() {
            "PUT" => {
                let digest = st.put_manifest(repo, reference, req.body.clone());
                Response::new(201, Vec::new()).header("Docker-Content-Digest", &digest)
            }
            _ => match st.manifests.get(&format!("{repo}:{reference}")) {
                Some((bytes, media)) => {
                    let digest = format!("sha256:{}", sha256_hex(bytes));
                    Response::new(200, bytes.clone())
                        .header("Content-Type", media)
                        .header("Docker-Content-Digest", &digest)
                }
                None => Response::new(404, br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#.to_vec()),
            },
        };
    }
    if let Some((repo, _)) = rest.split_once("/blobs/uploads/") {
        return match req.method.as_str() {
            "POST" => {
                st.uploads += 1;
                let addr = stream.local_addr().unwrap();
                Response::new(202, Vec::new()).header(
                    "Location",
                    &format!("http://{addr}/v2/{repo}/blobs/uploads/u{}", st.uploads),
                )
            }
            _ => {
                let digest = req
                    .target
                    .split("digest=")
                    .nth(1)
                    .unwrap_or("")
                    .replace("%3A", ":")
                    .replace("%3a", ":");
                if format!("sha256:{}", sha256_hex(&req.body)) != digest {
                    return Response::new(400, b"digest mismatch".to_vec());
                }
                st.blobs.insert(digest.clone(), req.body.clone());
                Response::new(201, Vec::new()).header("Docker-Content-Digest", &digest)
            }
        };
    }
    if let Some((_, digest)) = rest.split_once("/blobs/") {
        return match st.blobs.get(digest) {
            Some(b) => Response::new(200, b.clone()),
            None => Response::new(404, b"{}".to_vec()),
        };
    }
    Response::new(404, Vec::new())
}

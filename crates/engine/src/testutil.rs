//! Test helpers shared by unit tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// A tiny HTTP/1.1 server on 127.0.0.1: path -> (status, body, truncate_after).
pub(crate) fn serve(routes: Vec<(&str, u16, Vec<u8>, Option<usize>)>) -> String {
    let routes: Vec<(String, u16, Vec<u8>, Option<usize>)> =
        routes.into_iter().map(|(p, s, b, c)| (p.to_string(), s, b, c)).collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(32) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let route = routes.iter().find(|r| r.0 == path);
            let (status, body, cut) = match route {
                Some((_, s, b, c)) => (*s, b.clone(), *c),
                None => (404, b"not found".to_vec(), None),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let n = cut.unwrap_or(body.len());
            let _ = stream.write_all(&body[..n]);
            let _ = stream.flush();
            // Dropping the stream closes the connection (mid-body when truncated).
        }
    });
    format!("http://{addr}")
}

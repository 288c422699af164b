//! A fault-injecting HTTP proxy on a free port: requests that a rule picks get the status it
//! names, the others go to the upstream server (one request per connection), optionally each
//! after a delay, as a slow server. With no upstream it answers every request itself, as a
//! server that refuses everything.
//!
//! ```ignore
//! #[path = "common/proxy.rs"]
//! mod proxy;
//! ```
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A request as the rule sees it.
pub struct Request {
    pub method: String,
    pub path: String,
}

type Rule = dyn Fn(&Request) -> Option<u16> + Send + Sync;

pub struct FaultProxy {
    port: u16,
    injected: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Forwards to `127.0.0.1:<upstream>` except where `rule` returns a status to answer with.
    pub fn start(upstream: Option<u16>, rule: impl Fn(&Request) -> Option<u16> + Send + Sync + 'static) -> Self {
        Self::start_slow(upstream, std::time::Duration::ZERO, rule)
    }

    /// Like [`start`](Self::start), answering each request only after `delay`.
    pub fn start_slow(
        upstream: Option<u16>,
        delay: std::time::Duration,
        rule: impl Fn(&Request) -> Option<u16> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("a local address").port();
        let injected = Arc::new(AtomicUsize::new(0));
        let (rule, count): (Arc<Rule>, _) = (Arc::new(rule), injected.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (rule, count) = (rule.clone(), count.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    let _ = serve(stream, upstream, &*rule, &count);
                });
            }
        });
        FaultProxy { port, injected }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests got an injected answer.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

fn serve(client: TcpStream, upstream: Option<u16>, rule: &Rule, count: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let request = Request {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
    };
    head.extend_from_slice(request_line.as_bytes());
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let body = if chunked { read_chunked(&mut reader)? } else { read_exact(&mut reader, length)? };
    let mut client = client;
    let status = rule(&request).or(if upstream.is_none() { Some(404) } else { None });
    if let Some(status) = status {
        count.fetch_add(1, Ordering::SeqCst);
        let json = format!(r#"{{"error_code": "INJECTED", "message": "injected HTTP {status}"}}"#);
        write!(
            client,
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )?;
        return Ok(());
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream.unwrap_or_default()))?;
    server.write_all(&head)?;
    server.write_all(&body)?;
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

fn read_exact(reader: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut body = vec![0; n];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// A chunked body, kept chunked (the upstream reads it the same way).
fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        raw.extend_from_slice(size_line.as_bytes());
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        raw.extend(read_exact(reader, size + 2)?); // the chunk and its CRLF
        if size == 0 {
            return Ok(raw);
        }
    }
}

//! The double's HTTP/1.1: one request per connection, `Connection: close`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

use anyhow::{bail, Result};

use crate::Kbs;

/// Answers one request on `stream` (plain TCP or TLS).
pub(crate) fn serve(kbs: &Kbs, stream: &mut (impl Read + Write)) -> Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    if len > 1 << 20 {
        bail!("request body too large");
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let r = kbs.handle(&method, &path, &headers, &body)?;
    eprintln!("encc-test-kbs: {method} {path} -> {}", r.status);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        match r.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            _ => "Not Found",
        },
        r.content_type,
        r.body.len()
    );
    for h in &r.headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let stream = reader.get_mut();
    stream.write_all(out.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()?;
    Ok(())
}

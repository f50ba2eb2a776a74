//! Attack tests against fake registries and token servers on loopback (plain TCP, no peers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

use super::*;

/// One connection as a fake server saw it: the request line (or `non-HTTP` for anything
/// else, such as a TLS ClientHello) and the header names, lower-cased, with their values.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A fake HTTP server on 127.0.0.1 answering each request with `respond`; closes any
/// connection that does not start with an HTTP request line. Returns its port and its log.
fn serve(respond: impl Fn(&Seen) -> String + Send + 'static) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let seen_log = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = [0u8; 1];
            if reader.read_exact(&mut first).is_err() || !first[0].is_ascii_uppercase() {
                seen_log.lock().unwrap().push(Seen {
                    line: "non-HTTP".into(),
                    headers: Vec::new(),
                });
                continue;
            }
            let mut line = String::from(first[0] as char);
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let Some((name, value)) = header.trim_end().split_once(':') else {
                    break;
                };
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let seen = Seen {
                line: line.trim_end().to_owned(),
                headers,
            };
            let answer = respond(&seen);
            seen_log.lock().unwrap().push(seen);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, log)
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text + &format!("Content-Length: {}\r\n\r\n{body}", body.len())
}

fn docker(s: &str) -> DockerRef {
    match s.parse().unwrap() {
        ImageRef::Docker(d) => d,
        other => panic!("{other:?}"),
    }
}

/// Options with an auth file holding `user:secret` for `registry`.
fn options_with_credentials(registry: &str) -> RegistryOptions {
    let auth = base64::engine::general_purpose::STANDARD.encode("user:secret");
    let file = format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#);
    RegistryOptions {
        auth_data: Some(Arc::new(AuthData::new(
            "test",
            Zeroizing::new(file.into_bytes()),
        ))),
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    }
}

/// A token server (anyone's listener) and a registry on loopback that sends clients to it
/// over plain HTTP with a Bearer challenge; the registry accepts the token it hands out.
fn registry_with_plain_realm() -> (u16, u16, Log) {
    let (realm_port, realm_log) = serve(|_| {
        response(
            "200 OK",
            &[("Content-Type", "application/json")],
            r#"{"token":"t0k"}"#,
        )
    });
    let challenge = format!(r#"Bearer realm="http://127.0.0.1:{realm_port}/token",service="x""#);
    let (registry_port, _) = serve(move |seen| match seen.header("authorization") {
        Some("Bearer t0k") => response("200 OK", &[], "{}"),
        _ => response("401 Unauthorized", &[("WWW-Authenticate", &challenge)], ""),
    });
    (registry_port, realm_port, realm_log)
}

#[test]
fn a_plain_http_token_realm_on_another_host_never_sees_the_credentials() {
    let (registry_port, _, realm_log) = registry_with_plain_realm();
    let registry = format!("127.0.0.1:{registry_port}");
    let options = options_with_credentials(&registry);
    RegistrySource::new(docker(&format!("{registry}/app")), &options).unwrap();
    let seen = realm_log.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the token server was never asked");
    for request in &seen {
        assert_eq!(request.header("authorization"), None, "{request:?}");
    }
}

#[test]
fn a_token_realm_listed_as_insecure_gets_the_credentials() {
    let (registry_port, realm_port, realm_log) = registry_with_plain_realm();
    let registry = format!("127.0.0.1:{registry_port}");
    let mut options = options_with_credentials(&registry);
    options.insecure_registries = vec![format!("127.0.0.1:{realm_port}")];
    RegistrySource::new(docker(&format!("{registry}/app")), &options).unwrap();
    let seen = realm_log.lock().unwrap().clone();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:secret")
    );
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(expected.as_str())),
        "{seen:?}"
    );
}

#[test]
fn without_trust_in_loopback_a_loopback_registry_gets_no_plain_http() {
    let (port, log) = serve(|_| response("200 OK", &[], "{}"));
    let registry = format!("127.0.0.1:{port}");
    let image = docker(&format!("{registry}/app"));
    let mut options = RegistryOptions {
        trust_loopback: false,
        timeout: Duration::from_secs(10),
        ..RegistryOptions::default()
    };
    assert!(RegistrySource::new(image.clone(), &options).is_err());
    {
        let seen = log.lock().unwrap();
        assert!(!seen.is_empty(), "no connection at all");
        assert!(seen.iter().all(|r| r.line == "non-HTTP"), "{seen:?}");
    }
    // Listed in the trusted configuration, it may speak plain HTTP.
    options.insecure_registries = vec![registry];
    RegistrySource::new(image, &options).unwrap();
    let seen = log.lock().unwrap();
    assert!(
        seen.iter().any(|r| r.line == "GET /v2/ HTTP/1.1"),
        "{seen:?}"
    );
}

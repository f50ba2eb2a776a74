use super::*;

#[test]
fn urls() {
    assert_eq!(
        check_url("https://kbs.example:8080/", AttesterKind::Sample).unwrap(),
        "https://kbs.example:8080"
    );
    assert!(check_url("http://127.0.0.1:8080", AttesterKind::Sample).is_ok());
    assert!(check_url("http://[::1]:8080", AttesterKind::Sample).is_ok());
    for bad in [
        "http://kbs.example",
        "ftp://kbs.example",
        "kbs.example",
        "https://",
        "https://user@kbs.example",
        "https://kbs.example/?x",
    ] {
        let err = check_url(bad, AttesterKind::Sample).unwrap_err();
        assert!(err.to_string().contains(bad.trim_end_matches('/')), "{err}");
    }
}

#[test]
fn the_sgx_attester_refuses_a_plain_http_kbs() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ] {
        let mut config = KbsConfig::new(url);
        config.attester = AttesterKind::Sgx;
        let err = KbsClient::new(&config).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, KbsError::Url { .. }) && text.contains(url) && text.contains("sgx"),
            "{text}"
        );
    }
    let mut config = KbsConfig::new("https://kbs.example:8080");
    config.attester = AttesterKind::Sgx;
    assert_eq!(config.validate().unwrap(), "https://kbs.example:8080");
}

#[test]
fn an_unreachable_kbs_is_an_error_naming_the_resource() {
    let mut config = KbsConfig::new("http://127.0.0.1:9");
    config.timeout = Duration::from_secs(2);
    let client = KbsClient::new(&config).unwrap();
    let uri: ResourceUri = "kbs:///default/key/one".parse().unwrap();
    let err = client.resource(&uri).unwrap_err();
    assert!(err.to_string().contains("kbs:///default/key/one"), "{err}");
    assert!(format!("{client:?}").contains("127.0.0.1:9"));
}

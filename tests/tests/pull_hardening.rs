//! A registry that flips ciphertext bits, serves hostile layers or stalls mid-blob: encrypted
//! layers are authenticated whole before one byte is decrypted and fail with one error text;
//! the work unverified layer bytes can cause is bounded, each refusal naming the entry and
//! the limit; a download without progress fails after the stall timeout. Every failed pull
//! leaves nothing behind (`pull_fails` checks). Fixtures: tests/fixtures/craft_layers.py,
//! mutate_enc.py, proxy.py.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::proxy::Proxy;
use common::pull::*;
use common::*;

/// The error of a failed pull with the reference, layer digests and image path replaced,
/// so that errors of different images can be compared.
fn normalized(err: &str, reference: &str) -> String {
    let line = err
        .lines()
        .find(|l| l.starts_with("encc: error:"))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    let mut out = line.replace(reference, "REF");
    while let Some(at) = out.find("sha256:") {
        let end = (at + 7 + 64).min(out.len());
        out.replace_range(at..end, "DIGEST");
    }
    out
}

#[test]
fn encrypted_layer_failures_are_one_error_and_no_plaintext_is_parsed() {
    let Some(p) = peers() else { return };
    let w = work();
    let key = p.fixtures.join("keys/rsa.pem");
    let dec = ["--decryption-key", key.to_str().unwrap()];
    // The unaltered images decrypt; the flip target of enc:dotdot is there.
    let (tree, _) = w.pull_extract(
        &format!("docker://{}/test/enc:tar", p.registry),
        "tar",
        &dec,
    );
    assert_eq!(
        std::fs::read(tree.join("-./escape-marker")).unwrap(),
        b"flip target\n"
    );
    w.pull_extract(
        &format!("docker://{}/test/enc:rsa", p.registry),
        "rsa",
        &dec,
    );

    let mut errors = Vec::new();
    // Bits flipped by the registry, the manifest's digest adjusted (only the HMAC can
    // tell): near the start, in the middle and near the end of a gzip layer, and the bits
    // that turn the plaintext name "-./escape-marker" into "../escape-marker" (with its
    // header checksum) in an uncompressed one. A parser fed before the HMAC check would
    // refuse that name ("a '..' path component") or fail decompressing, each differently.
    for tag in ["flip-head", "flip-mid", "flip-tail", "dotdot"] {
        let reference = format!("docker://{}/test/enc:{tag}", p.registry);
        let err = w.pull_fails(&reference, &dec);
        errors.push((tag.to_owned(), normalized(&err, &reference)));
    }
    // Bits flipped in flight, the manifest untouched: the blob digest fails, same text.
    for at in ["1000", "600000", "1287000"] {
        let proxy = Proxy::start(&p.registry, &["--flip-at", at]);
        let reference = format!("docker://{}/test/enc:rsa", proxy.addr);
        let err = w.pull_fails(&reference, &dec);
        errors.push((format!("proxy flip at {at}"), normalized(&err, &reference)));
    }
    // A flipped HMAC and a cut ciphertext, from the OCI layout.
    for tag in ["enc-badhmac", "enc-truncated"] {
        let reference = format!("oci:{}:{tag}", p.fixtures.join("layout").display());
        let err = w.pull_fails(&reference, &dec);
        errors.push((tag.to_owned(), normalized(&err, &reference)));
    }
    let expected = "encc: error: pull of REF into FAILED failed: encrypted layer DIGEST of REF failed verification or unpacking";
    let image = w.path("failed.img");
    for (what, err) in &errors {
        let err = err.replace(image.to_str().unwrap(), "FAILED");
        assert_eq!(err, expected, "{what}");
    }
}

#[test]
fn hostile_layers_with_unbounded_work_are_refused() {
    let Some(p) = peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "hostile-sparse-hang",
            &[],
            "tar entry \"sparse-hang\" refused: its size of 4611686018427387904 bytes exceeds the",
        ),
        (
            "hostile-pax-size",
            &[],
            "tar entry \"pax-huge\" refused: its size of 1125899906842624 bytes exceeds the",
        ),
        (
            "hostile-sparse-map",
            &[],
            "tar headers after entry \"before-sparse-map\" refused: more than the limit of 1048576 bytes (header-bytes)",
        ),
        (
            "hostile-pax-header",
            &[],
            "tar headers after entry \"before-big-pax\" refused: more than the limit of 1048576 bytes (header-bytes)",
        ),
        (
            "hostile-long-name",
            &[],
            "5000 bytes of name exceed the limit of 4096",
        ),
        (
            "hostile-long-link",
            &[],
            "tar entry \"long-link\" refused: 5000 bytes of link target exceed the limit of 4096",
        ),
        (
            "hostile-xattr-count",
            &[],
            "tar entry \"many-xattrs\" refused: 129 extended attributes exceed the limit of 128",
        ),
        (
            "hostile-xattr-size",
            &[],
            "tar entry \"big-xattr\" refused: 307208 bytes of extended attributes exceed the limit of 262144",
        ),
        (
            "hostile-entries",
            &["--limit", "entries=1000"],
            "tar entry \"e1000\" refused: 1001 entries in the layer exceed the limit of 1000",
        ),
        (
            "hostile-unpacked",
            &["--limit", "unpacked-bytes=40M"],
            "tar entry \"zeros-2\" refused: its size of 25165824 bytes exceeds the",
        ),
        (
            "hostile-zstd-window",
            &[],
            "Frame requires too much memory for decoding",
        ),
    ];
    for (tag, extra, needle) in cases {
        let err = w.pull_fails(&format!("oci:{}:{tag}", layout.display()), extra);
        assert!(err.contains(needle), "{tag}: {err}");
    }
    // The limits are real bounds, not refusals of the fixtures: raised, they pass.
    w.pull_extract(
        &format!("oci:{}:hostile-entries", layout.display()),
        "entries",
        &["--limit", "entries=2000"],
    );
}

#[test]
fn a_stalled_download_fails_after_the_stall_timeout() {
    let Some(p) = peers() else { return };
    let w = work();
    // Every blob longer than 30,000 bytes stops after 30,000 and the connection stays open.
    let stalling = Proxy::start(&p.registry, &["--stall-after", "30000"]);
    for reference in ["test/busybox:latest", "test/layered:latest"] {
        let err = w.pull_fails(
            &format!("docker://{}/{reference}", stalling.addr),
            &["--stall-timeout", "2"],
        );
        assert!(
            err.contains("made no progress for 2 s") && err.contains("download of blob sha256:"),
            "{reference}: {err}"
        );
    }
    assert!(stalling.stats()["stalls"].as_u64().unwrap() >= 2);
}

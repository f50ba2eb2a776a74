//! Fuzzing support for encc: open an image made of the fuzz input and walk all of it
//! ([`open_and_walk`]), or seal the input as an image's metadata first so the walk gets past
//! the AEAD ([`rootfs_metadata`]); stage 1's parsers of untrusted input ([`jwe`],
//! [`annotation_packet`], [`layer_stream`]; other targets call a library entry point
//! directly); and the enclave's control channel ([`control_channel`]).
//!
//! Random bytes almost never pass the superblock's AEAD, so `open_and_walk` starts from
//! valid images written by `build_corpus` under [`fuzz_key`]; its mutations then exercise the
//! verification paths (bad magic, wrong key, truncation, Merkle and AEAD failures).

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use encc_rootfs::{DataKey, FileKind, Inode, RootfsReader, BLOCK_SIZE};
use encc_stage1::manifest::RunConfig;

/// Deepest directory the walk descends into.
const MAX_DEPTH: usize = 64;
/// Directory entries the walk looks at, in all.
const MAX_ENTRIES: usize = 4096;
/// Bytes asked for by one `read`.
const READ_CHUNK: usize = 64 * 1024;
/// `read` calls from the start of a file (a forged size may be huge and all holes).
const MAX_READS_PER_FILE: usize = 4;

/// The fixed key of the fuzz corpus: the seed images are written with it and every input is
/// opened with it.
pub fn fuzz_key() -> DataKey {
    DataKey::from_bytes(b"encc-fuzz-open_and_walk-key-0001")
}

/// What a walk reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walked {
    /// Distinct inodes visited, the root included.
    pub inodes: u64,
    /// File bytes read.
    pub bytes: u64,
}

/// The fuzz target: writes `data` to a per-process temporary file, opens it with
/// [`fuzz_key`] and, if that succeeds, walks the whole tree. Every library error is ignored;
/// only a panic, an abort or a sanitizer report is a finding.
pub fn open_and_walk(data: &[u8]) {
    let path = input_path();
    // The harness's own file failing is not a finding about the library, but it would make
    // the run worthless: stop loudly.
    fs::write(&path, data).expect("failed to write the fuzz input to the temporary directory");
    let opened = RootfsReader::open(&path, &fuzz_key());
    // The reader holds the file open; the name is not needed any more.
    let _ = fs::remove_file(&path);
    if let Ok(reader) = opened {
        walk(&reader);
    }
}

/// The `rootfs_metadata` target: `data` is the metadata region and superblock counts of an
/// image that [`encc_rootfs::fuzzing::seal_input`] seals under [`fuzz_key`], so that the
/// AEAD and the Merkle tree pass and every input reaches the metadata parsers behind them
/// (what `open_and_walk`'s random bytes almost never do); then the same walk.
pub fn rootfs_metadata(data: &[u8]) {
    let path = std::env::temp_dir().join(format!("encc-fuzz-meta-{}.img", std::process::id()));
    encc_rootfs::fuzzing::seal_input(&path, &fuzz_key(), data)
        .expect("failed to write the sealed fuzz image to the temporary directory");
    let opened = RootfsReader::open(&path, &fuzz_key());
    let _ = fs::remove_file(&path);
    if let Ok(reader) = opened {
        walk(&reader);
    }
}

/// Runs `info`, `verify_all` and reads the attachments, then visits every inode reachable from the root within fixed
/// budgets: calls `inode`, `lookup` of every name, `xattrs`, `read_link` and reads every
/// regular file. A forged image may hold directory cycles or hardlinked directories, so each
/// inode is visited once.
pub fn walk(reader: &RootfsReader) -> Walked {
    let _ = reader.info();
    let _ = reader.verify_all();
    let _ = reader.attachments();
    let _ = reader.attachment("config");
    let mut walked = Walked::default();
    let Ok(root) = reader.root() else {
        return walked;
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut seen = HashSet::from([root.ino]);
    let mut stack = vec![(root, 0usize)];
    let mut entries_left = MAX_ENTRIES;
    while let Some((dir, depth)) = stack.pop() {
        walked.inodes += 1;
        visit(reader, &dir, &mut buf, &mut walked);
        let Ok(entries) = reader.read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            if entries_left == 0 {
                return walked;
            }
            entries_left -= 1;
            let _ = reader.lookup(&dir, &entry.name);
            let Ok(inode) = reader.inode(entry.ino) else {
                continue;
            };
            if !seen.insert(inode.ino) {
                continue;
            }
            if inode.kind == FileKind::Directory {
                if depth < MAX_DEPTH {
                    stack.push((inode, depth + 1));
                }
            } else {
                walked.inodes += 1;
                visit(reader, &inode, &mut buf, &mut walked);
            }
        }
    }
    walked
}

/// Reads everything an inode has besides its directory entries.
fn visit(reader: &RootfsReader, inode: &Inode, buf: &mut [u8], walked: &mut Walked) {
    let _ = reader.xattrs(inode);
    let _ = reader.read_link(inode);
    if inode.kind != FileKind::Regular {
        return;
    }
    let mut offset = 0u64;
    for _ in 0..MAX_READS_PER_FILE {
        match reader.read(inode, offset, buf) {
            Ok(n) if n > 0 => {
                offset += n as u64;
                walked.bytes += n as u64;
            }
            _ => break,
        }
    }
    // Across a block boundary, and the tail of a file too big to read whole.
    let _ = reader.read(inode, BLOCK_SIZE as u64 - 1, &mut buf[..2]);
    let _ = reader.read(inode, inode.size.saturating_sub(buf.len() as u64), buf);
}

/// A temporary file name of this process (libFuzzer's `-jobs`/`-fork` run several).
fn input_path() -> PathBuf {
    std::env::temp_dir().join(format!("encc-fuzz-{}.img", std::process::id()))
}

/// A P-256 key (fuzzing only) for the `jwe` target.
const FUZZ_EC_KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgtsE9tFsV2/L3V8Fo
QkYvNOHe6srpB3InCvGg7qGkLWmhRANCAAR8D+7RkXN6sZJvks81T078FJsLwzif
SIpw5uW3JSgXAajmGVLthhMxbsgQTjk4cGwD/62/pyY2iizqh5c3KI8J
-----END PRIVATE KEY-----
";

/// Parses `data` as an ocicrypt JWE (general or flattened) and as a KBS response; both
/// must fail cleanly on anything they cannot open.
pub fn jwe(data: &[u8]) {
    use encc_stage1::jwe::{self, PrivateKey};
    static KEY: std::sync::OnceLock<Option<PrivateKey>> = std::sync::OnceLock::new();
    let Some(key) = KEY.get_or_init(|| PrivateKey::from_bytes(FUZZ_EC_KEY).ok()) else {
        return;
    };
    let _ = jwe::decrypt(data, std::slice::from_ref(key));
    let _ = jwe::decrypt_kbs_response(data, key);
}

/// Parses `data` as the CoCo key provider annotation and unwraps it with a fixed KEK.
pub fn annotation_packet(data: &[u8]) {
    use encc_stage1::ocicrypt::keyprovider::AnnotationPacket;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(packet) = AnnotationPacket::parse(text) {
        let _ = packet.unwrap(&[7u8; 32]);
    }
}

/// One layer blob through stage 1's whole layer pipeline (decompression, diff_id, tar,
/// whiteouts, the rootfs builder) into a temporary image under [`fuzz_key`]. The first byte
/// picks the compression the manifest would claim (0: none, 1: gzip, 2: zstd, else: none,
/// where the pipeline sniffs), the rest is the blob. Limits are small so that a forged size
/// is refused quickly; a hang (a sparse map of 2^62 bytes, say) is a `-timeout` finding.
pub fn layer_stream(data: &[u8]) {
    use encc_rootfs::{BuildOptions, RootfsBuilder};
    use encc_stage1::manifest::Compression;
    use encc_stage1::pull::{apply_layer_blob, UnpackLimits};
    let Some((&selector, blob)) = data.split_first() else {
        return;
    };
    let compression = match selector {
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        _ => Compression::None,
    };
    let path = std::env::temp_dir().join(format!("encc-fuzz-layer-{}.img", std::process::id()));
    let mut builder = RootfsBuilder::create(&path, &fuzz_key(), BuildOptions::default())
        .expect("failed to create the fuzz image in the temporary directory");
    let limits = UnpackLimits {
        unpacked_bytes: 64 << 20,
        entries: 10_000,
        ..UnpackLimits::default()
    };
    builder.begin_layer().expect("begin_layer on a new builder");
    match apply_layer_blob(&mut builder, blob.to_vec(), compression, limits) {
        Ok(_) => {
            if builder.commit_layer().is_ok() {
                let _ = builder.finish();
            }
        }
        Err(_) => {
            let _ = builder.abort_layer();
        }
    }
    let _ = fs::remove_file(&path);
}

/// The boot config and image config the `control_channel` target composes processes with:
/// host arguments allowed and an environment allowlist, so both paths are taken. Invalid
/// fixtures would make every input return early: they fail the first run instead.
fn launch_fixture() -> &'static (encc_interface::config::BootConfig, RunConfig) {
    static FIXTURE: std::sync::OnceLock<(encc_interface::config::BootConfig, RunConfig)> =
        std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let boot = encc_interface::config::BootConfig::parse(
            br#"{"store": "/var/lib/encc", "policy": "/p.json", "allow_host_args": true,
                 "env_allowlist": ["LANG", "TZ", "APP_MODE"]}"#,
            "fuzz",
        )
        .expect("the control_channel boot config is valid");
        let image = serde_json::from_str(
            r#"{"Entrypoint": ["/usr/bin/app"], "Cmd": ["--serve"], "User": "1000:1000",
                "Env": ["PATH=/usr/bin", "LANG=C"], "WorkingDir": "/srv"}"#,
        )
        .expect("the control_channel image config is valid");
        (boot, image)
    })
}

/// One packet of the control channel as the native enclave's PID 1 reads it (sent through
/// a real `SOCK_SEQPACKET` pair), then the checks the enclave makes of each request before
/// acting on it: the image reference of `boot`, the key and settings of `open`, the argv
/// and environment of `create_process` composed with the image's config, the signal of
/// `kill`.
pub fn control_channel(data: &[u8]) {
    use encc_interface::protocol::{self, Request};
    use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::{AsFd, AsRawFd};
    let (boot, image) = launch_fixture();
    let (host, enclave) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("failed to make a socket pair for the fuzz input");
    // A packet larger than the socket buffer is refused by the kernel: nothing to read.
    if send(host.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL).is_err() {
        return;
    }
    let Ok((request, _fds)) = protocol::receive::<Request>(enclave.as_fd()) else {
        return;
    };
    match request {
        Request::Boot { image: name, .. } => {
            let _ = encc_init::config::host_reference(boot, &name);
        }
        Request::Open {
            key_hex, config, ..
        } => {
            let _ = DataKey::from_hex(key_hex.0.as_bytes());
            let _ = config.validate("the open request");
        }
        Request::CreateProcess { argv, env, .. } => {
            let request = encc_init::launch::LaunchRequest { argv, env };
            let _ = encc_init::launch::compose(image, boot, &request, "/root");
        }
        Request::Kill { signal, .. } => {
            let _ = nix::sys::signal::Signal::try_from(signal);
        }
        Request::Destroy => {}
    }
}

//! Builder → reader round trips, determinism, tamper and confidentiality checks on images
//! made through the library API (no root needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use encc_rootfs::{
    BuildOptions, DataKey, EntryMeta, FileKind, OpenError, ReadError, RootfsBuilder, RootfsPath,
    RootfsReader, Special, Timestamp,
};

const MARKER: &[u8] = b"ZQX-secret-marker-7f3a";

fn p(s: &str) -> RootfsPath {
    RootfsPath::parse(s.as_bytes()).unwrap()
}

fn meta(mode: u32, uid: u32) -> EntryMeta {
    EntryMeta {
        mode,
        uid,
        gid: uid + 1,
        mtime: Timestamp {
            sec: 1_700_000_000 + i64::from(uid),
            nsec: 123,
        },
        xattrs: BTreeMap::new(),
    }
}

/// Pseudo-random bytes, deterministic.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A reader of `len` zero bytes that never allocates them.
struct Zeros(u64);
impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

fn build_sample(path: &Path, key: &DataKey) -> encc_rootfs::BuildSummary {
    let mut b = RootfsBuilder::create(path, key, BuildOptions::default()).unwrap();
    b.add_directory(&RootfsPath::root(), meta(0o755, 0))
        .unwrap();
    b.add_directory(&p("etc"), meta(0o755, 0)).unwrap();
    let mut x = meta(0o644, 0);
    x.xattrs.insert(b"user.note".to_vec(), MARKER.to_vec());
    x.xattrs
        .insert(b"security.capability".to_vec(), vec![1, 2, 3]);
    b.add_file(&p("etc/hostname"), x, &mut &b"encc\n"[..])
        .unwrap();
    let secret = [b"head ".as_slice(), MARKER, b" tail"].concat();
    b.add_file(&p("secret.txt"), meta(0o600, 1000), &mut secret.as_slice())
        .unwrap();
    b.add_file(&p("empty"), meta(0o644, 0), &mut io::empty())
        .unwrap();
    b.add_file(
        &p("big.bin"),
        meta(0o755, 0),
        &mut noise(3 * 4096 + 17, 1).as_slice(),
    )
    .unwrap();
    // Zeros in the middle of data become a hole.
    let mut holey = noise(4096, 2);
    holey.extend(vec![0u8; 3 * 4096]);
    holey.extend(noise(100, 3));
    b.add_file(&p("holey"), meta(0o644, 0), &mut holey.as_slice())
        .unwrap();
    b.add_hardlink(&p("hard"), &p("big.bin")).unwrap();
    b.add_symlink(
        &p("link"),
        meta(0o777, 0),
        [b"/target/".as_slice(), MARKER].concat().as_slice(),
    )
    .unwrap();
    let dir_name = [b"dir-".as_slice(), MARKER].concat();
    let dir_name = String::from_utf8(dir_name).unwrap();
    b.add_file(&p(&format!("{dir_name}/f")), meta(0o644, 0), &mut &b"x"[..])
        .unwrap();
    b.add_special(&p("dev/null"), meta(0o666, 0), Special::CharDevice(0x0103))
        .unwrap();
    b.add_special(&p("dev/sda"), meta(0o660, 0), Special::BlockDevice(0x0800))
        .unwrap();
    b.add_special(&p("fifo"), meta(0o644, 0), Special::Fifo)
        .unwrap();
    let long = "n".repeat(255);
    b.add_file(
        &p(&format!("deep/a/b/c/d/e/f/g/h/{long}")),
        meta(0o644, 0),
        &mut &b"deep"[..],
    )
    .unwrap();
    b.add_file(&p("sp ace/ünï©ødé"), meta(0o644, 0), &mut &b"u"[..])
        .unwrap();
    b.finish().unwrap()
}

fn read_all(r: &RootfsReader, path: &str) -> Result<Vec<u8>, ReadError> {
    let ino = r.resolve(&p(path))?;
    let mut out = vec![0u8; ino.size as usize];
    let n = r.read(&ino, 0, &mut out)?;
    assert_eq!(n, out.len());
    Ok(out)
}

fn sample(dir: &Path) -> (PathBuf, DataKey) {
    let key = DataKey::from_bytes(&[42; 32]);
    let path = dir.join("img");
    build_sample(&path, &key);
    (path, key)
}

#[test]
fn round_trip_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sample(dir.path());
    let r = RootfsReader::open(&path, &key).unwrap();
    r.verify_all().unwrap();

    assert_eq!(read_all(&r, "etc/hostname").unwrap(), b"encc\n");
    assert_eq!(read_all(&r, "big.bin").unwrap(), noise(3 * 4096 + 17, 1));
    assert_eq!(read_all(&r, "empty").unwrap(), b"");
    let holey = read_all(&r, "holey").unwrap();
    assert_eq!(&holey[..4096], &noise(4096, 2)[..]);
    assert!(holey[4096..4 * 4096].iter().all(|&b| b == 0));
    assert_eq!(&holey[4 * 4096..], &noise(100, 3)[..]);
    assert_eq!(r.resolve(&p("holey")).unwrap().blocks, 2);

    // Partial reads at odd offsets.
    let big = r.resolve(&p("big.bin")).unwrap();
    let mut buf = [0u8; 5000];
    let n = r.read(&big, 4000, &mut buf).unwrap();
    assert_eq!(&buf[..n], &noise(3 * 4096 + 17, 1)[4000..9000]);
    assert_eq!(r.read(&big, big.size, &mut buf).unwrap(), 0);

    // Hardlinks share the inode.
    let hard = r.resolve(&p("hard")).unwrap();
    assert_eq!(hard.ino, big.ino);
    assert_eq!(big.nlink, 2);

    let link = r.resolve(&p("link")).unwrap();
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(
        r.read_link(&link).unwrap(),
        [b"/target/".as_slice(), MARKER].concat()
    );

    let null = r.resolve(&p("dev/null")).unwrap();
    assert_eq!(
        (null.kind, null.rdev, null.mode),
        (FileKind::CharDevice, 0x0103, 0o20666)
    );
    assert_eq!(
        r.resolve(&p("dev/sda")).unwrap().kind,
        FileKind::BlockDevice
    );
    assert_eq!(r.resolve(&p("fifo")).unwrap().kind, FileKind::Fifo);

    let host = r.resolve(&p("etc/hostname")).unwrap();
    assert_eq!(
        r.xattrs(&host).unwrap(),
        vec![
            (b"security.capability".to_vec(), vec![1, 2, 3]),
            (b"user.note".to_vec(), MARKER.to_vec())
        ]
    );
    let secret = r.resolve(&p("secret.txt")).unwrap();
    assert_eq!(
        (secret.mode, secret.uid, secret.gid),
        (0o100600, 1000, 1001)
    );
    assert_eq!(
        secret.mtime,
        Timestamp {
            sec: 1_700_001_000,
            nsec: 123
        }
    );

    let long = "n".repeat(255);
    assert_eq!(
        read_all(&r, &format!("deep/a/b/c/d/e/f/g/h/{long}")).unwrap(),
        b"deep"
    );
    assert_eq!(read_all(&r, "sp ace/ünï©ødé").unwrap(), b"u");

    // Directories: sorted entries, link counts, parents.
    let root = r.root().unwrap();
    let names: Vec<String> = r
        .read_dir(&root)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"fifo".to_string()));
    let deep = r.resolve(&p("deep/a")).unwrap();
    assert_eq!(deep.parent, r.resolve(&p("deep")).unwrap().ino);
    // etc, dev, deep, "sp ace" and the marker directory.
    assert_eq!(root.nlink, 2 + 5);
    assert!(matches!(
        r.resolve(&p("nope")),
        Err(ReadError::NotFound { .. })
    ));
    assert!(matches!(
        r.resolve(&p("etc/hostname/x")),
        Err(ReadError::WrongKind { .. })
    ));
}

#[test]
fn entries_replace_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[1; 32]);
    let path = dir.path().join("img");
    let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
    b.add_file(&p("a/b/file"), meta(0o644, 0), &mut &b"1"[..])
        .unwrap();
    b.add_file(&p("a/b/other"), meta(0o644, 0), &mut &b"2"[..])
        .unwrap();
    b.add_hardlink(&p("a/link"), &p("a/b/file")).unwrap();
    // A file replaces a directory with everything under it; a dir replaces a file.
    b.add_file(&p("a/b"), meta(0o600, 0), &mut &b"now a file"[..])
        .unwrap();
    b.add_directory(&p("a/link"), meta(0o700, 5)).unwrap();
    assert!(b.remove(&p("a/b")).unwrap());
    assert!(!b.remove(&p("a/missing")).unwrap());
    assert!(matches!(
        b.add_file(&p("a/link/x/y"), meta(0o644, 0), &mut &b""[..]),
        Ok(0)
    ));
    b.add_file(&p("f"), meta(0o644, 0), &mut &b""[..]).unwrap();
    assert!(matches!(
        b.add_file(&p("f/x"), meta(0o644, 0), &mut &b""[..]),
        Err(encc_rootfs::BuildError::NotADirectory { .. })
    ));
    assert!(matches!(
        b.add_hardlink(&p("h"), &p("a")),
        Err(encc_rootfs::BuildError::LinkToDirectory { .. })
    ));
    assert!(matches!(
        b.add_hardlink(&p("h"), &p("missing")),
        Err(encc_rootfs::BuildError::LinkTargetMissing { .. })
    ));
    assert!(b.remove(&RootfsPath::root()).is_err());
    b.finish().unwrap();
    let r = RootfsReader::open(&path, &key).unwrap();
    assert!(r.resolve(&p("a/b")).is_err());
    let l = r.resolve(&p("a/link")).unwrap();
    assert_eq!(
        (l.kind, l.uid, l.mode & 0o7777),
        (FileKind::Directory, 5, 0o700)
    );
    assert_eq!(r.resolve(&p("a/link/x/y")).unwrap().size, 0);
}

#[test]
fn large_sparse_file_over_4gib() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[3; 32]);
    let path = dir.path().join("img");
    let size = (5u64 << 30) + 3;
    let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
    let mut data = Zeros(size - 4096)
        .chain(&b"end-of-big-file"[..])
        .chain(Zeros(4096 - 15));
    assert_eq!(
        b.add_file(&p("huge"), meta(0o644, 0), &mut data).unwrap(),
        size
    );
    let summary = b.finish().unwrap();
    assert!(
        summary.bytes < 1 << 20,
        "zero blocks are holes: {}",
        summary.bytes
    );
    let r = RootfsReader::open(&path, &key).unwrap();
    let f = r.resolve(&p("huge")).unwrap();
    assert_eq!(f.size, size);
    let mut buf = [0xffu8; 64];
    let n = r.read(&f, size - 4096 - 10, &mut buf).unwrap();
    assert_eq!(n, 64);
    assert!(buf[..10].iter().all(|&b| b == 0));
    assert_eq!(&buf[10..25], b"end-of-big-file");
    let n = r.read(&f, size - 2, &mut buf).unwrap();
    assert_eq!(&buf[..n], &[0, 0]);
}

#[test]
fn builds_are_deterministic_and_key_dependent() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[9; 32]);
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let sa = build_sample(&a, &key);
    let sb = build_sample(&b, &key);
    assert_eq!(sa.root_hash, sb.root_hash);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let sc = build_sample(&c, &DataKey::from_bytes(&[10; 32]));
    assert_ne!(sa.root_hash, sc.root_hash);
    let (ba, bc) = (std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    assert_eq!(ba.len(), bc.len());
    let same = ba.iter().zip(&bc).filter(|(x, y)| x == y).count();
    assert!(same < ba.len() / 100, "{same} of {} bytes equal", ba.len());
}

#[test]
fn no_plaintext_in_image() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    for needle in [
        MARKER,
        b"hostname",
        b"encc\n",
        b"user.note",
        b"secret.txt",
        b"/target/",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} found in the image",
            String::from_utf8_lossy(needle)
        );
    }
}

/// Every path's content via the reader, or the error.
fn read_everything(r: &RootfsReader) -> Vec<(String, Result<Vec<u8>, String>)> {
    let mut out = Vec::new();
    for path in [
        "etc/hostname",
        "secret.txt",
        "big.bin",
        "holey",
        "link",
        "sp ace/ünï©ødé",
    ] {
        let res = r.resolve(&p(path)).and_then(|i| match i.kind {
            FileKind::Symlink => r.read_link(&i),
            _ => read_all(r, path),
        });
        out.push((path.to_string(), res.map_err(|e| e.to_string())));
    }
    out
}

#[test]
fn tampering_is_always_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sample(dir.path());
    let good = std::fs::read(&path).unwrap();
    let expected = read_everything(&RootfsReader::open(&path, &key).unwrap());
    assert!(expected.iter().all(|(_, r)| r.is_ok()));
    let bad = dir.path().join("bad");
    // Flip one byte at many offsets spread over the image: superblock, slots, tree.
    let step = (good.len() / 211).max(1);
    let mut offsets: Vec<usize> = (0..good.len()).step_by(step).collect();
    offsets.extend([
        0,
        8,
        12,
        16,
        24,
        40,
        4095,
        4096,
        4096 + 4111,
        good.len() - 1,
    ]);
    for off in offsets {
        let mut bytes = good.clone();
        bytes[off] ^= 0x01;
        std::fs::write(&bad, &bytes).unwrap();
        let Ok(r) = RootfsReader::open(&bad, &key) else {
            continue; // refusing to open is a correct outcome
        };
        assert!(
            r.verify_all().is_err(),
            "verify passed with byte {off} flipped"
        );
        // Reads either fail or return exactly the original bytes.
        for ((path, want), (_, got)) in expected.iter().zip(read_everything(&r)) {
            if let Ok(got) = got {
                assert_eq!(
                    Ok(&got),
                    want.as_ref(),
                    "wrong bytes for {path} with byte {off} flipped"
                );
            }
        }
    }
}

#[test]
fn swapped_blocks_truncation_appending_and_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = sample(dir.path());
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad");
    let slot = |i: usize| 4096 + i * 4112..4096 + (i + 1) * 4112;

    // Swap the first two data blocks (both belong to big.bin or hostname etc.).
    let mut bytes = good.clone();
    let (a, b) = (good[slot(0)].to_vec(), good[slot(1)].to_vec());
    bytes[slot(0)].copy_from_slice(&b);
    bytes[slot(1)].copy_from_slice(&a);
    std::fs::write(&bad, &bytes).unwrap();
    let r = RootfsReader::open(&bad, &key).unwrap();
    assert!(matches!(
        r.verify_all(),
        Err(ReadError::Tampered { slot: 0, .. })
    ));
    assert!(read_all(&r, "etc/hostname").is_err());

    std::fs::write(&bad, &good[..good.len() - 1]).unwrap();
    assert!(matches!(
        RootfsReader::open(&bad, &key),
        Err(OpenError::Truncated { .. })
    ));
    std::fs::write(&bad, &good[..100]).unwrap();
    assert!(matches!(
        RootfsReader::open(&bad, &key),
        Err(OpenError::Truncated { .. })
    ));
    std::fs::write(&bad, [&good[..], b"x"].concat()).unwrap();
    assert!(matches!(
        RootfsReader::open(&bad, &key),
        Err(OpenError::TrailingData { .. })
    ));
    std::fs::write(&bad, b"not an image at all, just text").unwrap();
    assert!(matches!(
        RootfsReader::open(&bad, &key),
        Err(OpenError::NotAnImage { .. })
    ));
    let wrong = DataKey::from_bytes(&[43; 32]);
    let err = RootfsReader::open(&path, &wrong).err().unwrap();
    assert!(matches!(err, OpenError::WrongKey { .. }));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn dropped_builder_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[1; 32]);
    let path = dir.path().join("img");
    {
        let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
        b.add_file(&p("x"), meta(0o644, 0), &mut noise(100_000, 4).as_slice())
            .unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn layer_transactions_commit_and_abort() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[5; 32]);
    let path = dir.path().join("img");
    let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
    b.begin_layer().unwrap();
    b.add_file(&p("kept"), meta(0o644, 0), &mut &b"1"[..])
        .unwrap();
    b.commit_layer().unwrap();
    b.begin_layer().unwrap();
    assert!(b.begin_layer().is_err());
    b.add_file(&p("dropped"), meta(0o644, 0), &mut &b"2"[..])
        .unwrap();
    b.remove(&p("kept")).unwrap();
    assert!(matches!(b.kind_of(&p("dropped")), Some(FileKind::Regular)));
    b.abort_layer().unwrap();
    assert!(b.kind_of(&p("dropped")).is_none());
    assert!(b.commit_layer().is_err());
    b.begin_layer().unwrap();
    b.attach("config", b"{\"a\":1}".to_vec());
    b.attach("other", vec![0, 1, 2]);
    let open = b.finish();
    assert!(matches!(open, Err(encc_rootfs::BuildError::Layer(_))));
    assert!(!path.exists(), "a refused finish publishes nothing");

    let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
    b.add_file(&p("kept"), meta(0o644, 0), &mut &b"1"[..])
        .unwrap();
    b.attach("config", [b"{\"m\":\"".as_slice(), MARKER, b"\"}"].concat());
    b.attach("z", vec![]);
    b.finish().unwrap();
    let r = RootfsReader::open(&path, &key).unwrap();
    assert_eq!(
        r.attachment("config").unwrap().unwrap(),
        [b"{\"m\":\"".as_slice(), MARKER, b"\"}"].concat()
    );
    assert_eq!(r.attachment("z").unwrap(), Some(vec![]));
    assert_eq!(r.attachment("missing").unwrap(), None);
    let names: Vec<String> = r
        .attachments()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["config", "z"]);
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER));
}

#[test]
fn resolve_in_root_never_leaves_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[6; 32]);
    let mut b =
        RootfsBuilder::create(&dir.path().join("img"), &key, BuildOptions::default()).unwrap();
    b.add_directory(&p("usr/lib"), meta(0o755, 0)).unwrap();
    b.add_symlink(&p("lib"), meta(0o777, 0), b"usr/lib")
        .unwrap();
    b.add_symlink(&p("up"), meta(0o777, 0), b"../../../..")
        .unwrap();
    b.add_symlink(&p("abs"), meta(0o777, 0), b"/usr").unwrap();
    b.add_symlink(&p("etc"), meta(0o777, 0), b"/../../real-etc")
        .unwrap();
    b.add_symlink(&p("loop1"), meta(0o777, 0), b"loop2")
        .unwrap();
    b.add_symlink(&p("loop2"), meta(0o777, 0), b"loop1/x")
        .unwrap();
    let r = |s: &str, follow| b.resolve_in_root(&p(s), follow).map(|x| x.to_string());
    assert_eq!(r("lib/x.so", true).unwrap(), "/usr/lib/x.so");
    assert_eq!(r("up/usr/passwd", true).unwrap(), "/usr/passwd");
    assert_eq!(r("abs/lib", true).unwrap(), "/usr/lib");
    assert_eq!(r("etc/shadow", true).unwrap(), "/real-etc/shadow");
    assert_eq!(r("up/etc/x", true).unwrap(), "/real-etc/x");
    assert_eq!(r("lib", false).unwrap(), "/lib");
    assert_eq!(r("lib", true).unwrap(), "/usr/lib");
    assert_eq!(r("missing/a/b", true).unwrap(), "/missing/a/b");
    assert!(matches!(
        b.resolve_in_root(&p("loop1/y"), true),
        Err(encc_rootfs::BuildError::SymlinkLoop { .. })
    ));
    assert_eq!(b.symlink_target(&p("lib")), Some(&b"usr/lib"[..]));
    assert_eq!(b.children(&p("usr")), vec![b"lib".to_vec()]);
}

/// The mount declines `getxattr` on images without xattrs, so the scan must find an xattr on
/// any inode: the first, one whose 96-byte record straddles two blocks, and one past the
/// first run of slots read (64 blocks, ~2,730 inodes), and none when there is none.
#[test]
fn the_inode_table_scan_finds_the_one_inode_with_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let key = DataKey::from_bytes(&[7; 32]);
    let build = |with_xattr: Option<u64>| {
        let path = dir.path().join("img");
        let _ = std::fs::remove_file(&path);
        let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
        for i in 0..3_000u64 {
            b.add_file(&p(&format!("f{i:04}")), meta(0o644, 0), &mut &b""[..])
                .unwrap();
        }
        b.finish().unwrap();
        let reader = RootfsReader::open(&path, &key).unwrap();
        let Some(ino) = with_xattr else {
            return reader;
        };
        // Rebuild with the xattr on the file that got inode `ino`.
        let name = reader
            .read_dir(&reader.root().unwrap())
            .unwrap()
            .into_iter()
            .find(|e| e.ino == ino)
            .unwrap()
            .name;
        drop(reader);
        std::fs::remove_file(&path).unwrap();
        let mut b = RootfsBuilder::create(&path, &key, BuildOptions::default()).unwrap();
        for i in 0..3_000u64 {
            let file = format!("f{i:04}");
            let mut m = meta(0o644, 0);
            if file.as_bytes() == name {
                m.xattrs.insert(b"user.mark".to_vec(), b"1".to_vec());
            }
            b.add_file(&p(&file), m, &mut &b""[..]).unwrap();
        }
        b.finish().unwrap();
        let reader = RootfsReader::open(&path, &key).unwrap();
        let inode = reader.inode(ino).unwrap();
        assert_eq!(reader.xattrs(&inode).unwrap().len(), 1, "inode {ino}");
        reader
    };
    assert!(!build(None).has_xattrs().unwrap());
    // Inode 43's record is bytes 4032..4128 of the table: across the first block boundary.
    for ino in [2, 43, 2_900, 3_001] {
        assert!(build(Some(ino)).has_xattrs().unwrap(), "inode {ino}");
    }
}

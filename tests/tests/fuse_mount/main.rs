//! Mounts protected rootfs images with encc's FUSE server and checks what users see through
//! the mount: metadata, contents, links, listings, xattrs, read-only refusals, unmounting,
//! and `EIO` (never other bytes) for a tampered block.
//!
//! Needs root and `/dev/fuse`; as another user the tests print a line and pass.

mod checks;
mod sample;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use encc_rootfs::fuse;
use encc_rootfs::{BuildOptions, RootfsBuilder, RootfsReader};

use checks::*;
use sample::*;

/// Byte offset of slot 0 in an image: the superblock region comes first.
const SLOT0: u64 = 4096;
/// Bytes of one slot: a 4 KiB block and its 16-byte AEAD tag (FORMAT.md).
const SLOT_SIZE: u64 = 4096 + 16;

/// An image holding `/victim.bin` (written first, so its blocks take the first slots) and
/// `/ok.txt` ("still fine\n").
fn victim_image(image: &Path, victim: &[u8]) -> Result<()> {
    let mut b = RootfsBuilder::create(image, &key(), BuildOptions::default())?;
    b.add_file(&path("/victim.bin")?, meta(0o644, 0, 0), &mut &victim[..])?;
    b.add_file(
        &path("/ok.txt")?,
        meta(0o644, 0, 0),
        &mut &b"still fine\n"[..],
    )?;
    b.finish()?;
    Ok(())
}

/// Flips the bits `mask` of the byte at `at` of `image`, as a host would, and syncs it.
fn flip_byte(image: &Path, at: u64, mask: u8) -> Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(image)?;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at)?;
    f.write_all_at(&[byte[0] ^ mask], at)?;
    f.sync_all()?;
    Ok(())
}

#[test]
fn mounted_image_shows_the_tree() -> Result<()> {
    let Some(_serial) = start("mounted_image_shows_the_tree") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    let sample = build_sample(&image)?;
    let reader = RootfsReader::open(&image, &key())?;
    let mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    ensure!(
        mnt == mounted.dir.path().canonicalize()?,
        "mountpoint {}",
        mnt.display()
    );
    let (fstype, source, opts) =
        mountinfo_entry(&mnt)?.context("the mount is not in /proc/self/mountinfo")?;
    ensure!(
        fstype == "fuse.encc-rootfs" && source == "encc",
        "{fstype} {source}"
    );
    ensure!(opts.split(',').any(|o| o == "ro"), "mount options {opts}");
    ensure!(!mounted.handle()?.is_finished(), "session ended early");

    let mut paths = Vec::new();
    walk(&mnt, "", &mut paths)?;
    let mut expected: BTreeSet<String> = sample.files.keys().cloned().collect();
    expected.extend(sample.symlinks.keys().cloned());
    expected.extend(sample.dirs.keys().cloned());
    expected.extend(["/null".to_string(), "/fifo".to_string()]);
    let walked: BTreeSet<String> = paths.iter().cloned().collect();
    ensure!(walked == expected && paths.len() == 17, "walked {paths:?}");
    for p in &paths {
        check_metadata(&reader, &mnt, p)?;
    }
    let inside = |p: &str| mnt.join(p.trim_start_matches('/'));
    for (p, data) in &sample.files {
        let got = fs::read(inside(p)).with_context(|| format!("reading {p}"))?;
        ensure!(&got == data, "{p}: content differs ({} bytes)", got.len());
    }
    let mut middle = vec![0u8; 10_000];
    File::open(inside("/big.bin"))?.read_exact_at(&mut middle, 1_000_001)?;
    ensure!(
        middle == sample.files["/big.bin"][1_000_001..1_010_001],
        "pread"
    );
    for (p, target) in &sample.symlinks {
        ensure!(
            fs::read_link(inside(p))? == Path::new(target),
            "{p}: link target"
        );
    }
    for (p, names) in &sample.dirs {
        let got: BTreeSet<OsString> = fs::read_dir(inside(p))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        ensure!(&got == names, "{p}: entries {got:?}");
    }
    let hello = fs::symlink_metadata(inside("/hello.txt"))?;
    let link = fs::symlink_metadata(inside("/dir/hardlink"))?;
    ensure!(hello.ino() == link.ino() && hello.nlink() == 2, "hardlink");
    let null = fs::symlink_metadata(inside("/null"))?;
    ensure!(
        null.file_type().is_char_device() && null.rdev() == libc::makedev(1, 3),
        "dev"
    );
    ensure!(
        fs::symlink_metadata(inside("/fifo"))?.file_type().is_fifo(),
        "fifo"
    );
    ensure!(
        fs::symlink_metadata(inside("/setuid"))?.mode() & 0o7777 == 0o4755,
        "setuid"
    );
    ensure!(
        errno(fs::metadata(inside("/nope"))) == Some(libc::ENOENT),
        "ENOENT"
    );
    ensure!(
        errno(fs::metadata(inside("/hello.txt/x"))) == Some(libc::ENOTDIR),
        "ENOTDIR"
    );
    ensure!(
        errno(fs::read_link(inside("/hello.txt"))) == Some(libc::EINVAL),
        "readlink"
    );

    for (p, want) in &sample.xattrs {
        check_xattrs(&inside(p), want)?;
    }
    ensure!(xattr::list(inside("/empty"))?.next().is_none(), "no xattrs");
    check_xattr_erange(&inside("/hello.txt"), "user.comment", 2)?;
    check_read_only(&mnt)?;
    check_other_user(&mnt)?;
    check_statfs(&mnt, reader.info().inodes)?;

    mounted.unmount()?;
    Ok(())
}

#[test]
fn external_umount_ends_the_session() -> Result<()> {
    let Some(_serial) = start("external_umount_ends_the_session") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let status = std::process::Command::new("umount").arg(&mnt).status()?;
    ensure!(status.success(), "umount {}: {status}", mnt.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !mounted.handle()?.is_finished() {
        ensure!(std::time::Instant::now() < deadline, "session did not end");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    mounted.take()?.unmount()?;
    ensure!(
        started.elapsed().as_secs() < 2,
        "unmount after umount took long"
    );
    ensure!(mountinfo_entry(&mnt)?.is_none(), "still mounted");
    Ok(())
}

#[test]
fn tampered_block_reads_as_eio() -> Result<()> {
    let Some(_serial) = start("tampered_block_reads_as_eio") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    let victim = pseudo_random(3 * 4096, 99);
    // The victim takes slots 0, 1 and 2.
    victim_image(&image, &victim)?;
    flip_byte(&image, SLOT0 + 100, 0x40)?;

    let mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let err = fs::read(mnt.join("victim.bin")).err();
    let code = err.as_ref().and_then(io::Error::raw_os_error);
    ensure!(
        code == Some(libc::EIO),
        "reading the tampered file gave {err:?}"
    );
    let mut first = File::open(mnt.join("victim.bin"))?;
    let mut buf = [0u8; 16];
    ensure!(
        errno(first.read(&mut buf)) == Some(libc::EIO),
        "read(2) of block 0"
    );
    let mut tail = vec![0u8; 4096];
    first.read_exact_at(&mut tail, 2 * 4096)?;
    ensure!(
        tail == victim[2 * 4096..],
        "an intact block of the same file"
    );
    ensure!(
        fs::read(mnt.join("ok.txt"))? == b"still fine\n",
        "another file"
    );
    ensure!(
        fs::symlink_metadata(mnt.join("victim.bin"))?.len() == 3 * 4096,
        "stat"
    );
    drop(first);
    mounted.unmount()
}

/// An image without any xattr declines `getxattr`: the kernel then answers `EOPNOTSUPP`
/// itself, as for a file system without xattrs, and stops asking the server (overlayfs asks
/// for several `trusted.overlay.*` attributes of every entry it looks up). The sample image,
/// which has xattrs, still answers "no such attribute" (`mounted_image_shows_the_tree`).
#[test]
fn an_image_without_xattrs_has_no_xattr_support() -> Result<()> {
    let Some(_serial) = start("an_image_without_xattrs_has_no_xattr_support") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    victim_image(&image, b"v")?;
    let mounted = Mounted::new(&image)?;
    let ok = mounted.path().join("ok.txt");
    for name in [
        "user.comment",
        "trusted.overlay.opaque",
        "security.capability",
    ] {
        let got = xattr::get(&ok, name);
        let code = got.as_ref().err().and_then(io::Error::raw_os_error);
        ensure!(code == Some(libc::EOPNOTSUPP), "getxattr {name}: {got:?}");
    }
    ensure!(xattr::list(&ok)?.next().is_none(), "listxattr");
    ensure!(fs::read(&ok)? == b"still fine\n", "read");
    mounted.unmount()
}

/// The kernel keeps file pages across opens and the server caches verified metadata; a block
/// flipped on host storage while the image is mounted must still read as `EIO` the first
/// time it is read, after its neighbours, its inode and the rest of the tree were read and
/// cached.
#[test]
fn block_flipped_while_mounted_reads_as_eio() -> Result<()> {
    let Some(_serial) = start("block_flipped_while_mounted_reads_as_eio") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    let victim = pseudo_random(64 * 4096, 7);
    // The victim takes slots 0 to 63.
    victim_image(&image, &victim)?;

    let mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    // Warm every cache: the listing, both inodes, the other file and the victim's first page
    // (a 4 KiB read with no readahead beyond it: O_DIRECT is not used, so the kernel may
    // read ahead; the block flipped below lies past what a first small read can pull in).
    ensure!(fs::read(mnt.join("ok.txt"))? == b"still fine\n");
    let mut head = vec![0u8; 4096];
    File::open(mnt.join("victim.bin"))?.read_exact_at(&mut head, 0)?;
    ensure!(head == victim[..4096], "the victim's first block");
    // The last block of the victim (slot 63), flipped on host storage while mounted.
    flip_byte(&image, SLOT0 + 63 * SLOT_SIZE + 100, 0x01)?;

    let file = File::open(mnt.join("victim.bin"))?;
    let mut last = vec![0u8; 4096];
    let err = file.read_exact_at(&mut last, 63 * 4096).err();
    ensure!(
        err.as_ref().and_then(io::Error::raw_os_error) == Some(libc::EIO),
        "first read of the flipped block gave {err:?}"
    );
    // Again, through a new open: no error is cached as data, the block is never served.
    let again = File::open(mnt.join("victim.bin"))?.read_exact_at(&mut last, 63 * 4096);
    ensure!(
        errno(again) == Some(libc::EIO),
        "second read of the flipped block"
    );
    let err = fs::read(mnt.join("victim.bin")).err();
    ensure!(
        err.as_ref().and_then(io::Error::raw_os_error) == Some(libc::EIO),
        "reading the whole file gave {err:?}"
    );
    ensure!(
        fs::read(mnt.join("ok.txt"))? == b"still fine\n",
        "another file"
    );
    drop(file);
    mounted.unmount()
}

#[test]
fn dropping_the_mount_unmounts() -> Result<()> {
    let Some(_serial) = start("dropping_the_mount_unmounts") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    ensure!(
        fs::read(mnt.join("hello.txt"))? == b"hello, world\n",
        "read"
    );
    // Dropping the handle, not calling unmount(), must unmount too.
    drop(mounted.take()?);
    ensure!(
        mountinfo_entry(&mnt)?.is_none(),
        "drop left the mount behind"
    );
    Ok(())
}

#[test]
fn unmount_of_a_busy_mount_fails_and_keeps_serving() -> Result<()> {
    let Some(_serial) = start("unmount_of_a_busy_mount_fails_and_keeps_serving") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let open = File::open(mnt.join("hello.txt"))?;
    match mounted.take()?.unmount() {
        Err(fuse::FuseError::Unmount { source, .. }) => {
            ensure!(
                source.raw_os_error() == Some(libc::EBUSY),
                "unmount: {source}"
            );
        }
        other => anyhow::bail!("unmount of a busy mount gave {other:?}"),
    }
    let mut buf = [0u8; 5];
    open.read_exact_at(&mut buf, 0)?;
    ensure!(&buf == b"hello", "served after the failed unmount");
    ensure!(
        fs::read(mnt.join("dir/sub/deep/file.txt"))? == b"deep",
        "new lookups"
    );
    drop(open);
    let status = std::process::Command::new("umount").arg(&mnt).status()?;
    ensure!(status.success(), "umount: {status}");
    ensure!(mountinfo_entry(&mnt)?.is_none(), "still mounted");
    Ok(())
}

#[test]
fn unmount_returns_while_another_namespace_holds_the_mount() -> Result<()> {
    let Some(_serial) = start("unmount_returns_while_another_namespace_holds_the_mount") else {
        return Ok(());
    };
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    // A process in a private copy of this mount namespace keeps the file system alive
    // after it is unmounted here, as a container would.
    let holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "60"])
        .spawn()
        .context("running unshare (util-linux)")?;
    let holder = KillOnDrop(holder);
    let own_ns = fs::read_link("/proc/self/ns/mnt")?;
    let holder_ns = format!("/proc/{}/ns/mnt", holder.0.id());
    let comm = format!("/proc/{}/comm", holder.0.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::read_link(&holder_ns).ok().as_ref() == Some(&own_ns)
        || fs::read_to_string(&comm)?.trim() != "sleep"
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "unshare did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let started = std::time::Instant::now();
    let result = mounted.take()?.unmount();
    let took = started.elapsed();
    ensure!(took.as_secs() < 10, "unmount took {took:?}");
    // With fusectl mounted the connection is aborted and the session ends; without it the
    // session is left serving the other namespace.
    match result {
        Ok(()) | Err(fuse::FuseError::Lingering { .. }) => {}
        Err(e) => anyhow::bail!("unmount: {e:?}"),
    }
    ensure!(
        mountinfo_entry(mounted.path())?.is_none(),
        "still mounted here"
    );
    Ok(())
}

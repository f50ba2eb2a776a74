//! The SEFS lower layer of one start: the verified image tree, then encc's files in
//! [`encc_exec::ENCC_DIR`] — `encc-exec` from the measured initfs, the loader and C library
//! it runs with (the ones init itself was loaded with, from `/proc/self/maps`: the image
//! may have none), and the launch plan. All of it is written through an in-enclave SEFS
//! mount, so the LibOS encrypts and MACs every byte before it reaches the host.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use encc_exec::{LaunchPlan, ENCC_DIR, EXEC_PATH, INITFS_EXEC_PATH, LIB_DIR, PLAN_PATH};
use encc_rootfs::host_tree::{extract_with, ExtractOptions};
use encc_rootfs::occlum::{sefs_mount_options, SefsKey};
use encc_rootfs::RootfsReader;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where init mounts the SEFS lower layer to fill it (inside the enclave).
const STAGING: &str = "/encc-lower";

/// Directories MountRootFS needs in the new root, which an image may lack: where the app
/// stage mounts file systems (Occlum.json's `/host`, the store, and the `/proc` and `/dev`
/// that `gen_internal_conf` adds; `mount_fs_at` in src/libos/src/fs/rootfs.rs looks them
/// up), and `/etc`, where `do_mount_rootfs` writes the host's `hosts`, `hostname` and
/// `resolv.conf` (`write_host_file` in src/libos/src/util/host_file_util.rs).
fn mount_points(store: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = ["/proc", "/dev", "/host", "/etc"]
        .map(PathBuf::from)
        .to_vec();
    points.push(store.to_owned());
    points
}

/// Fills the (existing, empty) SEFS at `lower` (host path); on failure nothing stays at
/// `lower`. `store` is the store's mount point, made in the tree for the app stage.
pub(super) fn fill(
    reader: &RootfsReader,
    lower: &Path,
    key: &SefsKey,
    plan: &LaunchPlan,
    store: &Path,
) -> Result<()> {
    let staging = Path::new(STAGING);
    fs::create_dir_all(staging).with_context(|| format!("cannot create {STAGING}"))?;
    let options = sefs_mount_options(lower, Some(key))?;
    let mounted = mount(
        Some("sefs"),
        staging,
        Some("sefs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("cannot mount SEFS {} on {STAGING}", lower.display()));
    let filled = mounted.and_then(|()| {
        let written = write_tree(reader, staging, plan, store);
        let unmounted = umount2(staging, MntFlags::empty())
            .with_context(|| format!("cannot unmount the SEFS lower layer {STAGING}"));
        written.and(unmounted)
    });
    if filled.is_err() {
        match fs::remove_dir_all(lower) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", lower.display()),
        }
    }
    filled
}

fn write_tree(reader: &RootfsReader, root: &Path, plan: &LaunchPlan, store: &Path) -> Result<()> {
    // Occlum 0.30 has no mknod and no setxattr (syscall/mod.rs: handle_unsupported).
    let options = ExtractOptions {
        special_files: false,
        xattrs: false,
    };
    let summary = extract_with(reader, root, options)
        .context("cannot extract the image into the SEFS lower layer")?;
    log::info!(
        "occlum: {} entries, {} file bytes in the lower layer",
        summary.entries,
        summary.bytes
    );
    for point in mount_points(store) {
        let dir = root.join(point.strip_prefix("/").unwrap_or(&point));
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the mount point {}", dir.display()))?;
    }
    install_exec(
        root,
        Path::new(INITFS_EXEC_PATH),
        plan,
        &mapped_libraries()?,
    )
}

/// Puts encc-exec (from `exec`), its libraries and the plan into `root` (the lower layer's
/// root), replacing whatever the image had at [`ENCC_DIR`].
pub(super) fn install_exec(
    root: &Path,
    exec: &Path,
    plan: &LaunchPlan,
    libraries: &[PathBuf],
) -> Result<()> {
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    let dir = inside(ENCC_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(meta) => {
            log::warn!("occlum: the image's own {ENCC_DIR} is replaced by encc's");
            if meta.is_dir() {
                fs::remove_dir_all(&dir)
            } else {
                fs::remove_file(&dir)
            }
            .with_context(|| format!("cannot remove the image's {}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
    }
    let lib_dir = inside(LIB_DIR);
    fs::create_dir_all(&lib_dir).with_context(|| format!("cannot create {}", lib_dir.display()))?;
    copy(exec, &inside(EXEC_PATH), 0o755)?;
    for library in libraries {
        let name = library
            .file_name()
            .with_context(|| format!("library path {} has no file name", library.display()))?;
        copy(library, &lib_dir.join(name), 0o755)?;
    }
    let plan_path = inside(PLAN_PATH);
    fs::write(&plan_path, plan.to_json())
        .with_context(|| format!("cannot write the launch plan {}", plan_path.display()))?;
    for path in [&dir, &lib_dir] {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(())
}

/// Copies with plain reads and writes: `fs::copy` and `io::copy` between files use
/// `copy_file_range`, which Occlum 0.30 does not implement (not in syscall/mod.rs).
fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::io::{Read as _, Write as _};
    let context = || format!("cannot copy {} to {}", from.display(), to.display());
    let mut source = fs::File::open(from).with_context(context)?;
    let mut dest = fs::File::create(to).with_context(context)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source.read(&mut buf).with_context(context)?;
        if n == 0 {
            break;
        }
        dest.write_all(&buf[..n]).with_context(context)?;
    }
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", to.display()))
}

/// The shared objects (loader and libraries) init is running with: the files of
/// `/proc/self/maps` (Occlum 0.30: `src/libos/src/fs/procfs/pid/maps.rs`) whose names hold
/// `.so`. encc-exec is built by the same toolchain and needs a subset of them.
fn mapped_libraries() -> Result<Vec<PathBuf>> {
    let maps = fs::read_to_string("/proc/self/maps").context("cannot read /proc/self/maps")?;
    Ok(shared_objects(&maps))
}

/// The `.so` files named in a maps text, each once.
pub(super) fn shared_objects(maps: &str) -> Vec<PathBuf> {
    let found: BTreeSet<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .map(PathBuf::from)
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".so"))
        })
        .collect();
    found.into_iter().collect()
}

use std::sync::mpsc;

use super::lock::{ImageLock, Mode};
use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn exclusive_locks_exclude_and_a_crashed_holder_releases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let held = ImageLock::acquire(&path, Mode::Exclusive).unwrap();
    assert!(ImageLock::try_exclusive(&path).unwrap().is_none());
    // Closing the holder's fd (as a SIGKILL does) releases the lock.
    drop(held);
    assert!(ImageLock::try_exclusive(&path).unwrap().is_some());
    let shared = ImageLock::acquire(&path, Mode::Shared).unwrap();
    let other = ImageLock::acquire(&path, Mode::Shared).unwrap();
    assert!(ImageLock::try_exclusive(&path).unwrap().is_none());
    drop((shared, other));
    assert!(ImageLock::try_exclusive(&path).unwrap().is_some());
}

#[test]
fn a_waiter_on_an_unlinked_lock_file_locks_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.lock");
    let mut held = ImageLock::acquire(&path, Mode::Exclusive).unwrap();
    let (waiting_tx, waiting) = mpsc::channel();
    let (locked_tx, locked) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            waiting_tx.send(()).unwrap();
            let lock = ImageLock::acquire(&path, Mode::Exclusive).unwrap();
            locked_tx.send(()).unwrap();
            release.recv().unwrap();
            drop(lock);
        })
    };
    waiting.recv().unwrap();
    // Let the waiter block on the file that is about to be unlinked.
    std::thread::sleep(std::time::Duration::from_millis(100));
    held.remove_on_release();
    drop(held);
    locked.recv().unwrap();
    // The waiter holds the lock of the file now at the path, not of the unlinked one.
    assert!(path.exists());
    assert!(ImageLock::try_exclusive(&path).unwrap().is_none());
    release_tx.send(()).unwrap();
    waiter.join().unwrap();
    assert!(ImageLock::try_exclusive(&path).unwrap().is_some());
}

#[test]
fn a_symlink_or_fifo_at_a_lock_path_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("l.lock");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    assert!(matches!(
        ImageLock::acquire(&link, Mode::Shared),
        Err(StoreError::Lock { .. })
    ));
    assert!(!dir.path().join("elsewhere").exists());
    let fifo = dir.path().join("f.lock");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(matches!(
        ImageLock::acquire(&fifo, Mode::Exclusive),
        Err(StoreError::NotALockFile { .. })
    ));
}

#[test]
fn opening_the_store_removes_partials_of_dead_writers_only() {
    let dir = tempfile::tempdir().unwrap();
    let kept = format!("sha256-{}", "a".repeat(64));
    let busy = format!("sha256-{}", "b".repeat(64));
    let one = format!("encc-{}", "c".repeat(16));
    let stale = [
        format!(".{kept}.img.AbCd12.partial"),
        format!(".{kept}.seal.x.partial"),
        format!(".{one}.img.QwErTy.partial"),
    ];
    let other = [
        format!("{kept}.img"),
        format!(".{busy}.img.Zz9Yy8.partial"),
        ".unrelated.partial".to_owned(),
    ];
    for name in stale.iter().chain(&other) {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    let writer =
        ImageLock::acquire(&dir.path().join(format!("{busy}.lock")), Mode::Exclusive).unwrap();
    Store::open(dir.path()).unwrap();
    // The lock file of the kept image stays; the one-start image's lock file goes.
    let mut expected: Vec<String> = other.to_vec();
    expected.extend([format!("{kept}.lock"), format!("{busy}.lock")]);
    expected.sort();
    assert_eq!(names(dir.path()), expected);
    drop(writer);
}

#[test]
fn an_image_marked_in_use_is_not_removed_and_its_mark_goes_with_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let manifest: Digest = format!("sha256:{}", "d".repeat(64)).parse().unwrap();
    let name = ImageName::kept(&manifest);
    for ext in ["img", "seal", "meta"] {
        std::fs::write(store.path(&name, ext), b"x").unwrap();
    }
    let image = store.path(&name, "img");
    let mark = InUse::mark(&image).unwrap().unwrap();
    let other = InUse::mark(&image).unwrap().unwrap();
    assert!(super::lock::image_in_use(&image).unwrap());
    assert_eq!(
        store.remove(&manifest).unwrap(),
        Removal::Busy(Busy::Running)
    );
    drop((mark, other));
    let lock = ImageLock::acquire(&store.path(&name, "lock"), Mode::Shared).unwrap();
    assert_eq!(
        store.remove(&manifest).unwrap(),
        Removal::Busy(Busy::Locked)
    );
    drop(lock);
    assert_eq!(
        store.remove(&manifest).unwrap(),
        Removal::Removed { bytes: 3 }
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_symlink_or_fifo_as_an_image_is_never_in_use_nor_followed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"outside").unwrap();
    let held = InUse::mark(&target).unwrap().unwrap();
    let link = dir.path().join("l.img");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(InUse::mark(&link).unwrap().is_none());
    assert!(!super::lock::image_in_use(&link).unwrap());
    let fifo = dir.path().join("f.img");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert!(InUse::mark(&fifo).unwrap().is_none());
    assert!(!super::lock::image_in_use(&fifo).unwrap());
    drop(held);
}

#[test]
fn reuse_kept_of_a_digest_never_kept_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sealing = DataKey::generate().unwrap();
    let manifest = Digest::of(b"a manifest");
    let reference: ImageRef = "docker://127.0.0.1:5000/a/b:c".parse().unwrap();
    assert!(store
        .reuse_kept(&sealing, &manifest, &reference)
        .unwrap()
        .is_none());
    assert_eq!(names(dir.path()), Vec::<String>::new());
    // A seal that does not open is no reuse either (the usual path then pulls again).
    let seal = dir.path().join(format!("sha256-{}.seal", manifest.hex()));
    std::fs::write(&seal, b"not a seal").unwrap();
    assert!(store
        .reuse_kept(&sealing, &manifest, &reference)
        .unwrap()
        .is_none());
}

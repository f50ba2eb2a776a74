//! The one stage-1 flow with a fake platform: no root, no network (an OCI layout made here).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use encc_rootfs::{DataKey, RootHash, RootfsReader};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;
use sha2::{Digest as _, Sha256};

use super::*;

/// Writes a blob; returns its descriptor fields (digest, size).
fn blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = hex::encode(Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI layout with one image (tag `v1`): one plain tar layer with `/hello.txt`.
fn layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", &b"hello\n"[..])
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let (layer_digest, layer_size) = blob(&layout, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    );
    let (config_digest, config_size) = blob(&layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{layer_size}}}]}}"#
    );
    let (manifest_digest, manifest_size) = blob(&layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

/// A platform that records the flow's calls; `keep` and `fail_enter` steer it.
#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<&'static str>>,
    keep: bool,
    fail_enter: bool,
    kept: RefCell<Option<(PathBuf, DataKey, Digest)>>,
}

/// What the fake stage 2 saw.
#[derive(Debug)]
struct Entered {
    root_hash: RootHash,
    pulled: Option<PathBuf>,
    pulled_existed: bool,
}

impl Platform for Fake {
    type Entered = Entered;
    const LOOPBACK_IS_HOST: bool = false;

    fn open_store(&self, config: &BootConfig) -> anyhow::Result<()> {
        self.calls.borrow_mut().push("open_store");
        std::fs::create_dir_all(&config.store)?;
        Ok(())
    }

    fn reuse(
        &self,
        _: &BootConfig,
        _: &Digest,
        _: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>> {
        self.calls.borrow_mut().push("reuse");
        match &*self.kept.borrow() {
            Some((path, key, _)) => Ok(Some(RootfsReader::open(path, key)?)),
            None => Ok(None),
        }
    }

    fn reuse_kept(
        &self,
        _: &BootConfig,
        manifest: &Digest,
        _: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>> {
        self.calls.borrow_mut().push("reuse_kept");
        match &*self.kept.borrow() {
            Some((path, key, kept)) if kept == manifest => Ok(Some(RootfsReader::open(path, key)?)),
            _ => Ok(None),
        }
    }

    fn image_path(&self, config: &BootConfig, _: &Digest) -> anyhow::Result<PathBuf> {
        self.calls.borrow_mut().push("image_path");
        crate::platform::per_start_image(&config.store)
    }

    fn open_pulled(
        &self,
        _: &BootConfig,
        manifest: &Digest,
        key: &DataKey,
        _: &RootHash,
        image: &Path,
    ) -> anyhow::Result<(RootfsReader, bool)> {
        self.calls.borrow_mut().push("open_pulled");
        if self.keep {
            *self.kept.borrow_mut() = Some((image.to_owned(), key.clone(), *manifest));
        }
        Ok((RootfsReader::open(image, key)?, self.keep))
    }

    fn enter(
        &self,
        reader: RootfsReader,
        _: BootConfig,
        pulled: Option<PathBuf>,
    ) -> anyhow::Result<Entered> {
        self.calls.borrow_mut().push("enter");
        anyhow::ensure!(!self.fail_enter, "stage 2 failed");
        let pulled_existed = pulled.as_ref().is_some_and(|p| p.exists());
        Ok(Entered {
            root_hash: reader.root_hash(),
            pulled,
            pulled_existed,
        })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    image: String,
    config: String,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(dir.path());
    let store = dir.path().join("store");
    let config = format!(r#"{{"store": "{}"{extra}}}"#, store.display());
    Setup {
        image: format!("oci:{}:v1", layout.display()),
        store,
        config,
        _dir: dir,
    }
}

impl Setup {
    fn boot(&self, platform: &Fake) -> anyhow::Result<Entered> {
        self.boot_ref(platform, &self.image)
    }

    fn boot_ref(&self, platform: &Fake, image: &str) -> anyhow::Result<Entered> {
        let config = BootConfig::parse(self.config.as_bytes(), "test").unwrap();
        boot(platform, config, image)
    }

    fn store_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.store)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

const INSECURE: &str = r#", "insecure_policy": true, "allow_local_layouts": true"#;

#[test]
fn a_pull_enters_stage_2_with_the_pulled_image_of_this_start() {
    let s = setup(INSECURE);
    let fake = Fake::default();
    let entered = s.boot(&fake).unwrap();
    assert_eq!(
        *fake.calls.borrow(),
        ["open_store", "reuse", "image_path", "open_pulled", "enter"]
    );
    let pulled = entered.pulled.clone().unwrap();
    assert!(entered.pulled_existed);
    assert_eq!(pulled.parent(), Some(s.store.as_path()));
    let name = pulled.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("encc-") && name.ends_with(".img"),
        "{name}"
    );
    // A second start pulls under another name (and another key).
    let again = s.boot(&Fake::default()).unwrap();
    assert_ne!(again.pulled, entered.pulled);
    assert_ne!(again.root_hash, entered.root_hash);
}

#[test]
fn a_failed_stage_2_leaves_nothing_in_the_store() {
    let s = setup(INSECURE);
    let fake = Fake {
        fail_enter: true,
        ..Fake::default()
    };
    let err = s.boot(&fake).unwrap_err();
    assert_eq!(err.to_string(), "stage 2 failed");
    assert_eq!(s.store_files(), Vec::<PathBuf>::new());
}

#[test]
fn a_kept_image_is_reused_without_a_pull() {
    let s = setup(INSECURE);
    let fake = Fake {
        keep: true,
        ..Fake::default()
    };
    let first = s.boot(&fake).unwrap();
    assert_eq!(
        first.pulled, None,
        "a kept image is not this start's to remove"
    );
    fake.calls.borrow_mut().clear();
    let second = s.boot(&fake).unwrap();
    assert_eq!(*fake.calls.borrow(), ["open_store", "reuse", "enter"]);
    assert_eq!(second.root_hash, first.root_hash);
    assert_eq!(s.store_files().len(), 1);
}

#[test]
fn a_policy_rejection_stops_before_the_platform_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"default": [{"type": "reject"}]}"#).unwrap();
    let s = setup(&format!(
        r#", "policy": "{}", "allow_local_layouts": true"#,
        policy.display()
    ));
    let fake = Fake::default();
    let err = s.boot(&fake).unwrap_err();
    assert!(format!("{err:#}").contains("reject"), "{err:#}");
    assert_eq!(*fake.calls.borrow(), ["open_store"]);
    assert_eq!(s.store_files(), Vec::<PathBuf>::new());
}

/// A registry reference nobody answers at (the discard port): any request fails.
fn unreachable_pinned(manifest: &Digest) -> String {
    format!("docker://127.0.0.1:9/app@{manifest}")
}

#[test]
fn a_pinned_reference_reuses_the_kept_image_without_a_registry_request() {
    let s = setup(INSECURE);
    let fake = Fake {
        keep: true,
        ..Fake::default()
    };
    let first = s.boot(&fake).unwrap();
    let manifest = fake.kept.borrow().as_ref().unwrap().2;
    fake.calls.borrow_mut().clear();
    let second = s.boot_ref(&fake, &unreachable_pinned(&manifest)).unwrap();
    assert_eq!(*fake.calls.borrow(), ["open_store", "reuse_kept", "enter"]);
    assert_eq!(second.root_hash, first.root_hash);
    assert_eq!(second.pulled, None);

    // Another digest is not the kept image: resolving it needs the registry, which fails.
    let other = Digest::of(b"another manifest");
    fake.calls.borrow_mut().clear();
    let err = s.boot_ref(&fake, &unreachable_pinned(&other)).unwrap_err();
    assert!(format!("{err:#}").contains("127.0.0.1:9"), "{err:#}");
    assert_eq!(*fake.calls.borrow(), ["open_store", "reuse_kept"]);
}

#[test]
fn a_pinned_reference_whose_policy_needs_signatures_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"127.0.0.1:9": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent.gpg"}]}}}"#,
    )
    .unwrap();
    let s = setup(&format!(
        r#", "policy": "{}", "allow_local_layouts": true"#,
        policy.display()
    ));
    let fake = Fake {
        keep: true,
        ..Fake::default()
    };
    s.boot(&fake).unwrap();
    let manifest = fake.kept.borrow().as_ref().unwrap().2;
    fake.calls.borrow_mut().clear();
    // The signatures would come from the registry: the kept image is not used unseen.
    let err = s
        .boot_ref(&fake, &unreachable_pinned(&manifest))
        .unwrap_err();
    assert!(format!("{err:#}").contains("127.0.0.1:9"), "{err:#}");
    assert_eq!(*fake.calls.borrow(), ["open_store"]);

    // A scope that rejects refuses a pinned reference before anything is opened.
    std::fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {"127.0.0.1:9": [{"type": "reject"}]}}}"#,
    )
    .unwrap();
    fake.calls.borrow_mut().clear();
    let err = s
        .boot_ref(&fake, &unreachable_pinned(&manifest))
        .unwrap_err();
    assert!(format!("{err:#}").contains("rejects"), "{err:#}");
    assert_eq!(*fake.calls.borrow(), ["open_store"]);
}

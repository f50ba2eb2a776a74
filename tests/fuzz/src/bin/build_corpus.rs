//! Writes the seed corpora of the `open_and_walk` and `rootfs_metadata` fuzz targets: a few
//! small, valid images under the fuzz key, and the `seal_input` form of each (its metadata
//! region and counts); each is checked to open, verify and walk completely.
//!
//! Usage: `build_corpus [DIR]`, DIR defaulting to `corpus` beside this crate; the seeds go to
//! `DIR/open_and_walk` and `DIR/rootfs_metadata`. The output is deterministic, so re-running
//! rewrites identical files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use encc_fuzz::{fuzz_key, walk};
use encc_rootfs::fuzzing::{input_of_image, seal_input};
use encc_rootfs::{
    BuildOptions, EntryMeta, RootfsBuilder, RootfsPath, RootfsReader, Special, Timestamp,
    BLOCK_SIZE,
};

fn main() -> Result<()> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
    };
    let (images, metadata) = (dir.join("open_and_walk"), dir.join("rootfs_metadata"));
    for dir in [&images, &metadata] {
        fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let other_id = BuildOptions {
        image_id: Some(*b"encc-fuzz-seed-5"),
    };
    let seeds: [(&str, BuildOptions, Fill); 5] = [
        ("seed-empty.img", BuildOptions::default(), |_| Ok(())),
        ("seed-small.img", BuildOptions::default(), small),
        ("seed-sparse.img", BuildOptions::default(), sparse),
        ("seed-wide.img", BuildOptions::default(), wide),
        ("seed-image-id.img", other_id, small),
    ];
    for (name, options, fill) in seeds {
        let image = images.join(name);
        let default_id = options.image_id.is_none();
        write_seed(&image, options, fill)?;
        if default_id {
            write_metadata_seed(&image, &metadata.join(name).with_extension("meta"))?;
        }
    }
    Ok(())
}

/// Adds the entries of one seed image.
type Fill = fn(&mut Image) -> Result<()>;

/// Builds one image and checks that the fuzz target can reach all of it.
fn write_seed(path: &Path, options: BuildOptions, fill: Fill) -> Result<()> {
    let builder = RootfsBuilder::create(path, &fuzz_key(), options)
        .with_context(|| format!("failed to start seed image {}", path.display()))?;
    let mut image = Image(builder);
    fill(&mut image).with_context(|| format!("failed to fill seed image {}", path.display()))?;
    let summary = image.0.finish()?;
    let reader = RootfsReader::open(path, &fuzz_key())?;
    reader.verify_all()?;
    let walked = walk(&reader);
    ensure!(
        walked.inodes == reader.inode_count(),
        "walk of seed {} reached {} of {} inodes",
        path.display(),
        walked.inodes,
        reader.inode_count()
    );
    println!(
        "build_corpus: wrote {} ({} bytes, {} inodes, root hash {})",
        path.display(),
        summary.bytes,
        summary.inodes,
        summary.root_hash
    );
    Ok(())
}

/// Writes the `rootfs_metadata` input of a seed image (whose image id must be the key's
/// default, as `seal_input` writes it) and checks that sealing it gives a walkable image with
/// the same inodes.
fn write_metadata_seed(image: &Path, seed: &Path) -> Result<()> {
    let input = input_of_image(image, &fuzz_key()).map_err(anyhow::Error::msg)?;
    let resealed = seed.with_extension("img.tmp");
    seal_input(&resealed, &fuzz_key(), &input)?;
    let reader = RootfsReader::open(&resealed, &fuzz_key());
    fs::remove_file(&resealed)?;
    let reader = reader.with_context(|| format!("resealed {} does not open", image.display()))?;
    reader.verify_all()?;
    let walked = walk(&reader);
    ensure!(
        walked.inodes == reader.inode_count(),
        "walk of resealed {} reached {} of {} inodes",
        image.display(),
        walked.inodes,
        reader.inode_count()
    );
    fs::write(seed, &input).with_context(|| format!("failed to write {}", seed.display()))?;
    println!(
        "build_corpus: wrote {} ({} bytes)",
        seed.display(),
        input.len()
    );
    Ok(())
}

/// A builder with short helpers for string paths.
struct Image(RootfsBuilder);

impl Image {
    fn dir(&mut self, path: &str, meta: EntryMeta) -> Result<()> {
        Ok(self.0.add_directory(&parse(path)?, meta)?)
    }

    fn file(&mut self, path: &str, meta: EntryMeta, data: &[u8]) -> Result<()> {
        self.0.add_file(&parse(path)?, meta, &mut &data[..])?;
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        Ok(self
            .0
            .add_symlink(&parse(path)?, meta(0o777), target.as_bytes())?)
    }

    fn special(&mut self, path: &str, special: Special) -> Result<()> {
        Ok(self.0.add_special(&parse(path)?, meta(0o600), special)?)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> Result<()> {
        Ok(self.0.add_hardlink(&parse(path)?, &parse(target)?)?)
    }
}

/// Every kind of entry, xattrs, a hardlink and a two-block file.
fn small(image: &mut Image) -> Result<()> {
    image.dir("", with_xattrs(meta(0o755), &[("user.root", "yes")]))?;
    image.dir("etc", with_xattrs(meta(0o755), &[("user.note", "config")]))?;
    image.file("etc/hostname", meta(0o644), b"encc\n")?;
    image.file("etc/empty", meta(0o600), b"")?;
    let busybox = pattern(BLOCK_SIZE + 904, 1);
    let caps = with_xattrs(
        meta(0o4755),
        &[("security.capability", "\x01\x00\x00\x02"), ("user.a", "")],
    );
    image.file("bin/busybox", caps, &busybox)?;
    image.hardlink("bin/ls", "bin/busybox")?;
    image.symlink("bin/sh", "busybox")?;
    image.symlink("lib", "usr/lib")?;
    image.special("dev/null", Special::CharDevice(0x103))?;
    image.special("dev/sda", Special::BlockDevice(0x800))?;
    image.special("run/initctl", Special::Fifo)?;
    image.0.attach(
        "config",
        br#"{"config":{"Entrypoint":["/bin/sh"]}}"#.to_vec(),
    );
    image.0.attach("signatures", vec![0xa5; 300]);
    Ok(())
}

/// Files with holes: data, holes, data, a partial tail; one file all hole.
fn sparse(image: &mut Image) -> Result<()> {
    let mut data = vec![0u8; 4 * BLOCK_SIZE + 100];
    data[..BLOCK_SIZE].copy_from_slice(&pattern(BLOCK_SIZE, 2));
    data[3 * BLOCK_SIZE + 7] = 0xff;
    data[4 * BLOCK_SIZE + 99] = 0x01;
    image.file("data/sparse", meta(0o644), &data)?;
    image.file("data/zeros", meta(0o644), &[0u8; 2 * BLOCK_SIZE + 1])?;
    image.file("data/one", meta(0o644), b"x")
}

/// A directory of many names (metadata over several blocks, no data) and a deep chain.
fn wide(image: &mut Image) -> Result<()> {
    for i in 0..120 {
        let name = format!("wide/{}{i}", "n".repeat(i % 40));
        match i % 3 {
            0 => image.symlink(&name, &format!("target{i}"))?,
            _ => image.file(&name, meta(0o644), b"")?,
        }
    }
    let deep: Vec<String> = (0..24).map(|i| format!("d{i}")).collect();
    image.file(&format!("{}/leaf", deep.join("/")), meta(0o644), b"leaf")
}

fn parse(path: &str) -> Result<RootfsPath> {
    RootfsPath::parse(path.as_bytes()).with_context(|| format!("bad seed path {path:?}"))
}

fn meta(mode: u32) -> EntryMeta {
    EntryMeta {
        mode,
        uid: 1000,
        gid: 1000,
        mtime: Timestamp {
            sec: 1_700_000_000,
            nsec: 123,
        },
        xattrs: BTreeMap::new(),
    }
}

fn with_xattrs(mut meta: EntryMeta, xattrs: &[(&str, &str)]) -> EntryMeta {
    for (name, value) in xattrs {
        meta.xattrs
            .insert(name.as_bytes().to_vec(), value.as_bytes().to_vec());
    }
    meta
}

/// `len` bytes of a pattern that never forms an all-zero block.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

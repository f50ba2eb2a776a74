//! The Occlum instance the emulator boots: `Occlum.json` (entry points, env, mounts) and the
//! initfs laid out from the copy_bom file, both as `encc occlum render` writes them.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// The parts of `Occlum.json` the LibOS uses at run time.
#[derive(Debug, Clone, Deserialize)]
pub struct OcclumJson {
    pub entry_points: Vec<PathBuf>,
    pub env: EnvConf,
    pub mount: Vec<MountConf>,
}

/// `env.default` (trusted) and `env.untrusted` (names the host may pass).
#[derive(Debug, Clone, Deserialize)]
pub struct EnvConf {
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub untrusted: Vec<String>,
}

/// One `mount` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct MountConf {
    pub target: PathBuf,
    #[serde(rename = "type")]
    pub fs_type: String,
    #[serde(default)]
    pub source: Option<PathBuf>,
    #[serde(default)]
    pub options: MountOptions,
}

/// A mount's options (the subset the app stage reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MountOptions {
    #[serde(default)]
    pub layers: Option<Vec<MountConf>>,
    #[serde(default, rename = "MAC")]
    pub mac: Option<String>,
}

impl OcclumJson {
    /// Reads `DIR/Occlum.json`; entry points must be absolute, as Occlum's
    /// `ConfigApp::from_input` requires.
    pub fn load(instance: &Path) -> Result<Self> {
        let path = instance.join("Occlum.json");
        let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let json: Self = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not an Occlum.json", path.display()))?;
        if let Some(ep) = json.entry_points.iter().find(|p| !p.is_absolute()) {
            bail!(
                "{}: entry point {} is not absolute",
                path.display(),
                ep.display()
            );
        }
        Ok(json)
    }

    /// The app stage's mounts, as Occlum's `gen_internal_conf` builds them: /proc and /dev,
    /// then every mount of Occlum.json.
    pub fn app_mounts(&self) -> Vec<MountConf> {
        let builtin = |target: &str, fs_type: &str| MountConf {
            target: target.into(),
            fs_type: fs_type.into(),
            source: None,
            options: MountOptions::default(),
        };
        let mut mounts = vec![builtin("/proc", "procfs"), builtin("/dev", "devfs")];
        mounts.extend(self.mount.iter().cloned());
        mounts
    }

    /// The root UnionFS's image layer (with a MAC) and container layer: the layers
    /// MountRootFS keeps when its config names none.
    pub fn root_layers(&self) -> Option<(PathBuf, PathBuf)> {
        let root = self
            .mount
            .iter()
            .find(|m| m.target == Path::new("/") && m.fs_type == "unionfs")?;
        let layers = root.options.layers.as_ref()?;
        let image = layers.iter().find(|l| l.options.mac.is_some())?;
        let container = layers.iter().find(|l| l.options.mac.is_none())?;
        Some((image.source.clone()?, container.source.clone()?))
    }
}

/// A copy_bom file: `targets: - target: DIR  copy: - files: [...] / dirs: [...]`.
#[derive(Debug, Deserialize)]
struct Bom {
    targets: Vec<BomTarget>,
}

#[derive(Debug, Deserialize)]
struct BomTarget {
    target: PathBuf,
    #[serde(default)]
    mkdirs: Vec<PathBuf>,
    #[serde(default)]
    copy: Vec<BomCopy>,
}

#[derive(Debug, Deserialize)]
struct BomCopy {
    #[serde(default)]
    files: Vec<BomFile>,
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BomFile {
    Plain(PathBuf),
    Full {
        name: PathBuf,
        #[serde(default)]
        rename: Option<String>,
        #[serde(default)]
        autodep: bool,
    },
}

/// Lays out the initfs in `root` from the bom `bom_path`: each file and directory copied
/// into its target; for `autodep` files, the shared libraries `ldd` names, at their host
/// paths (Occlum's copy_bom puts them under /opt/occlum/glibc/lib for its own loader; the
/// emulator keeps the host's loader and paths). Plus the init stage's mount points.
pub fn lay_out_initfs(bom_path: &Path, root: &Path) -> Result<()> {
    let text = fs::read(bom_path).with_context(|| format!("cannot read {}", bom_path.display()))?;
    let bom: Bom = serde_yaml_ng::from_slice(&text)
        .with_context(|| format!("{} is not a copy_bom file", bom_path.display()))?;
    for dir in ["proc", "dev", "tmp"] {
        fs::create_dir_all(root.join(dir)).with_context(|| format!("cannot create /{dir}"))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    for target in &bom.targets {
        let dir = inside(root, &target.target)?;
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for extra in &target.mkdirs {
            fs::create_dir_all(dir.join(extra.strip_prefix("/").unwrap_or(extra)))?;
        }
        for copy in &target.copy {
            for file in &copy.files {
                copy_file(root, &dir, file)?;
            }
            for source in &copy.dirs {
                let name = source
                    .file_name()
                    .with_context(|| format!("bom dir {} has no name", source.display()))?;
                copy_tree(source, &dir.join(name))?;
            }
        }
    }
    Ok(())
}

fn inside(root: &Path, path: &Path) -> Result<PathBuf> {
    match path.strip_prefix("/") {
        Ok(rel) if !rel.components().any(|c| c.as_os_str() == "..") => Ok(root.join(rel)),
        _ => bail!(
            "bom target {} is not an absolute path without '..'",
            path.display()
        ),
    }
}

fn copy_file(root: &Path, dir: &Path, file: &BomFile) -> Result<()> {
    let (name, rename, autodep) = match file {
        BomFile::Plain(name) => (name, None, false),
        BomFile::Full {
            name,
            rename,
            autodep,
        } => (name, rename.as_deref(), *autodep),
    };
    let base = name
        .file_name()
        .with_context(|| format!("bom file {} has no name", name.display()))?;
    let dest = dir.join(rename.map_or(base, std::ffi::OsStr::new));
    fs::copy(name, &dest)
        .with_context(|| format!("cannot copy {} to {}", name.display(), dest.display()))?;
    if autodep {
        for lib in shared_libraries(name)? {
            let dest = inside(root, &lib)?;
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(&lib, &dest).with_context(|| format!("cannot copy {}", lib.display()))?;
        }
    }
    Ok(())
}

/// The libraries and loader `ldd` lists for `binary` (none for a static binary).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn copy_tree(source: &Path, dest: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(source)
        .with_context(|| format!("cannot stat {}", source.display()))?;
    if meta.is_dir() {
        fs::create_dir_all(dest)?;
        fs::set_permissions(dest, meta.permissions())?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(source)?, dest)?;
    } else {
        fs::copy(source, dest).with_context(|| format!("cannot copy {}", source.display()))?;
    }
    Ok(())
}

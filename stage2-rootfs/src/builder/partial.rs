//! The partial file an image is written to until [`super::RootfsBuilder::finish`] renames it
//! into place: `.NAME.RANDOM.partial` beside the destination, removed when the builder is
//! dropped. The partial files of the process are listed, so that a program stopped by a
//! signal removes them before it exits ([`exit_removing_partials`]).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tempfile::TempPath;

/// The partial files this process is writing. Created, renamed and removed only while the
/// list is held, so a signal handler that holds it until the process exits leaves none.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listed partial file; removed on drop unless persisted.
pub(super) struct Partial {
    temp: Option<TempPath>,
}

impl Partial {
    /// Creates the partial file of destination file name `name` in `dir`.
    pub(super) fn create(dir: &Path, name: &str) -> io::Result<(File, Self)> {
        let mut live = live();
        let (file, temp) = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)?
            .into_parts();
        live.push(temp.to_path_buf());
        Ok((file, Self { temp: Some(temp) }))
    }

    /// Renames the partial file to `dest`.
    pub(super) fn persist(mut self, dest: &Path) -> io::Result<()> {
        let mut live = live();
        let temp = self
            .temp
            .take()
            .ok_or_else(|| io::Error::other("the partial file is gone"))?;
        live.retain(|p| p.as_path() != &*temp);
        // On failure the TempPath inside the error removes the file as it drops.
        temp.persist(dest).map_err(|e| e.error)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let mut live = live();
            live.retain(|p| p.as_path() != &*temp);
            drop(temp);
        }
    }
}

/// Removes every partial file this process is writing and exits with `code` (for a program
/// stopped by a signal: 128 + the signal number). No new partial file appears meanwhile.
pub fn exit_removing_partials(code: i32) -> ! {
    let live = live();
    for path in live.iter() {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove partial file {}: {e}", path.display());
        }
    }
    std::process::exit(code)
}

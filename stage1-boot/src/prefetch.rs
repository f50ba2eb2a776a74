//! Downloads of the layers after the first while earlier ones are applied: at most a few at
//! a time, in layer order, each into an encrypted [`Spool`] beside the image.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::digest::Digest;
use crate::fetch::{spool_blob, Resuming};
use crate::layer::{FetchError, Progress};
use crate::manifest::Descriptor;
use crate::source::Source;
use crate::spool::Spool;

/// Downloads of later layers while an earlier one is applied: at most `parallel` at a time,
/// in layer order, each into an encrypted [`Spool`] in the image's directory. Dropping it
/// cancels what is still running.
pub struct Prefetch {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    jobs: Vec<(usize, Descriptor)>,
    next: AtomicUsize,
    cancel: AtomicBool,
    done: Mutex<Vec<Option<Result<Spool, FetchError>>>>,
    ready: Condvar,
    stall: Duration,
}

impl Prefetch {
    /// Starts downloading `jobs` (layer index, descriptor) into spools in `dir`; a download
    /// with no progress for `stall` fails.
    pub fn start(
        source: Arc<dyn Source>,
        jobs: Vec<(usize, Descriptor)>,
        dir: &Path,
        parallel: usize,
        progress: Option<Arc<dyn Progress>>,
        stall: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            done: Mutex::new((0..jobs.len()).map(|_| None).collect()),
            jobs,
            next: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            ready: Condvar::new(),
            stall,
        });
        let workers = (0..parallel.max(1).min(shared.jobs.len()))
            .filter_map(|n| {
                let (shared, source, dir, progress) = (
                    Arc::clone(&shared),
                    Arc::clone(&source),
                    dir.to_owned(),
                    progress.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("prefetch-{n}"))
                    .spawn(move || prefetch_worker(&shared, &source, &dir, progress))
                    .ok()
            })
            .collect();
        Self { shared, workers }
    }

    /// Waits for layer `index`'s spool.
    pub fn take(&self, index: usize) -> Result<Spool, FetchError> {
        let Some(slot) = self.shared.jobs.iter().position(|(i, _)| *i == index) else {
            return Err(FetchError::Stopped {
                digest: Digest::of(b""),
            });
        };
        let digest = self.shared.jobs[slot].1.digest;
        let mut done = self.shared.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = done[slot].take() {
                return result;
            }
            if self.workers.is_empty() || self.workers.iter().all(|w| w.is_finished()) {
                return Err(FetchError::Stopped { digest });
            }
            done = self
                .shared
                .ready
                .wait_timeout(done, std::time::Duration::from_millis(200))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn prefetch_worker(
    shared: &Shared,
    source: &Arc<dyn Source>,
    dir: &Path,
    progress: Option<Arc<dyn Progress>>,
) {
    loop {
        let slot = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some((index, descriptor)) = shared.jobs.get(slot) else {
            return;
        };
        if shared.cancel.load(Ordering::Relaxed) {
            return;
        }
        let result = download(shared, source, descriptor, *index, dir, progress.clone());
        let mut done = shared.done.lock().unwrap_or_else(|e| e.into_inner());
        done[slot] = Some(result);
        shared.ready.notify_all();
    }
}

fn download(
    shared: &Shared,
    source: &Arc<dyn Source>,
    descriptor: &Descriptor,
    index: usize,
    dir: &Path,
    progress: Option<Arc<dyn Progress>>,
) -> Result<Spool, FetchError> {
    let mut input = Resuming::new(
        Arc::clone(source),
        descriptor.clone(),
        index,
        progress,
        shared.stall,
    );
    let cancelled = || shared.cancel.load(Ordering::Relaxed);
    spool_blob(&mut input, descriptor.digest, dir, &cancelled, &mut |_| {})
}

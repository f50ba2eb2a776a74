//! Pull progress for a person at a terminal (`terminal-progress` feature): one bar per
//! layer (bytes of the blob) and one for the whole image, drawn on stderr, as `encc image
//! pull` and `init` show them. Nothing is drawn when stderr is not a terminal.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, MutexGuard};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;
use crate::layer::Progress;

/// Per-layer bars and a total bar on stderr.
pub struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    layers: Mutex<Vec<(usize, ProgressBar, bool)>>,
    clear_when_done: bool,
}

impl Bars {
    /// Bars on stderr when it is a terminal, else `None`. `clear_when_done`: erase them once
    /// every layer is applied (a launcher, whose terminal then shows the container's output),
    /// instead of leaving the final state (a pull command).
    pub fn on_terminal(clear_when_done: bool) -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        // Drawn from the first layer on (an empty total would show as complete).
        let total = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            total.set_style(style.progress_chars("=> "));
        }
        total.set_prefix("total");
        Some(Arc::new(Self {
            multi,
            total,
            layers: Mutex::new(Vec::new()),
            clear_when_done,
        }))
    }

    fn layers(&self) -> MutexGuard<'_, Vec<(usize, ProgressBar, bool)>> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Progress for Bars {
    fn layer_started(&self, index: usize, digest: &Digest, size: u64) {
        let mut layers = self.layers();
        if layers.is_empty() {
            self.total.set_length(0);
            self.multi.add(self.total.clone());
        }
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(size));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let hex = digest.hex();
        bar.set_prefix(format!("layer {index} {}", &hex[..hex.len().min(12)]));
        self.total.inc_length(size);
        layers.push((index, bar, false));
    }

    fn layer_bytes(&self, index: usize, n: u64) {
        if let Some((_, bar, _)) = self.layers().iter().find(|(i, _, _)| *i == index) {
            bar.inc(n);
            self.total.inc(n);
        }
    }

    fn layer_done(&self, index: usize) {
        let mut layers = self.layers();
        if let Some((_, bar, done)) = layers.iter_mut().find(|(i, _, _)| *i == index) {
            bar.finish();
            *done = true;
        }
        if layers.iter().all(|(_, _, done)| *done) {
            self.total.finish();
            if self.clear_when_done {
                let _ = self.multi.clear();
            }
        }
    }
}

//! Blob bytes as they arrive, before anything trusts them: a download that resumes dropped
//! connections with Range requests and fails when no byte arrives for the stall timeout, a
//! spooled blob read back, and receiving a whole blob into an encrypted spool.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::{Digest, HashingReader};
use crate::layer::{FetchError, Progress, CHUNK};
use crate::manifest::Descriptor;
use crate::source::Source;
use crate::spool::{Spool, SpoolReader, SpoolWriter};

/// Times a dropped blob download is resumed with a Range request.
pub const MAX_RESUMES: u32 = 3;

/// A blob byte stream that can name the precise cause when it fails.
pub(crate) trait BlobInput: Read + Send {
    /// The error behind the last failed read, if this stream knows it.
    fn take_failure(&mut self) -> Option<FetchError>;
}

/// A blob download that reopens at its current offset (a Range request) when the connection
/// fails, at most [`MAX_RESUMES`] times, never yields more than the descriptor's size, and
/// gives up when one read waited `stall` for a byte (however many resumes are left). Time
/// the caller spends between reads (the unpacker is busy) does not count.
pub(crate) struct Resuming {
    source: Arc<dyn Source>,
    descriptor: Descriptor,
    inner: Option<Box<dyn Read + Send>>,
    offset: u64,
    resumes: u32,
    progress: Option<Arc<dyn Progress>>,
    index: usize,
    stall: Duration,
    /// The precise error when this reader failed for a reason it knows.
    failure: Option<FetchError>,
}

impl Resuming {
    pub(crate) fn new(
        source: Arc<dyn Source>,
        descriptor: Descriptor,
        index: usize,
        progress: Option<Arc<dyn Progress>>,
        stall: Duration,
    ) -> Self {
        Self {
            source,
            descriptor,
            inner: None,
            offset: 0,
            resumes: 0,
            progress,
            index,
            stall,
            failure: None,
        }
    }

    fn fail(&mut self, error: FetchError) -> io::Error {
        let e = io::Error::other(error.to_string());
        self.failure = Some(error);
        e
    }

    fn stalled(&mut self) -> io::Error {
        let (digest, offset) = (self.descriptor.digest, self.offset);
        let seconds = self.stall.as_secs_f64();
        self.fail(FetchError::Stalled {
            digest,
            offset,
            seconds,
        })
    }
}

impl BlobInput for Resuming {
    fn take_failure(&mut self) -> Option<FetchError> {
        self.failure.take()
    }
}

impl Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let digest = self.descriptor.digest;
        let waiting = Instant::now();
        loop {
            if waiting.elapsed() >= self.stall {
                return Err(self.stalled());
            }
            let inner = match &mut self.inner {
                Some(inner) => inner,
                None => match self.source.blob(&self.descriptor, self.offset) {
                    Ok(r) => self.inner.insert(r),
                    Err(_) if waiting.elapsed() >= self.stall => return Err(self.stalled()),
                    Err(source) => return Err(self.fail(FetchError::Source { digest, source })),
                },
            };
            // One byte more than the descriptor allows shows an over-long blob.
            let room = (self.descriptor.size - self.offset.min(self.descriptor.size)) as usize + 1;
            let want = buf.len().min(room);
            match inner.read(&mut buf[..want]) {
                Ok(n) => {
                    self.offset += n as u64;
                    if self.offset > self.descriptor.size {
                        let size = self.descriptor.size;
                        return Err(self.fail(FetchError::TooLong { digest, size }));
                    }
                    if let Some(p) = &self.progress {
                        p.layer_bytes(self.index, n as u64);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if waiting.elapsed() >= self.stall => return Err(self.stalled()),
                Err(e) if self.resumes < MAX_RESUMES => {
                    self.resumes += 1;
                    log::warn!(
                        "download of blob {digest} failed at byte {} ({e}); resuming ({}/{MAX_RESUMES})",
                        self.offset,
                        self.resumes
                    );
                    self.inner = None;
                }
                Err(source) => {
                    let (offset, resumes) = (self.offset, self.resumes);
                    return Err(self.fail(FetchError::Download {
                        digest,
                        offset,
                        resumes,
                        source,
                    }));
                }
            }
        }
    }
}

/// A spooled blob read back; a chunk failing authentication is reported as such.
pub(crate) struct Spooled {
    reader: SpoolReader,
    digest: Digest,
    failure: Option<FetchError>,
}

impl Spooled {
    pub(crate) fn new(spool: Spool, digest: Digest) -> Self {
        Self {
            reader: spool.reader(),
            digest,
            failure: None,
        }
    }
}

impl Read for Spooled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).inspect_err(|e| {
            self.failure = Some(FetchError::Spool {
                digest: self.digest,
                source: io::Error::new(e.kind(), e.to_string()),
            });
        })
    }
}

impl BlobInput for Spooled {
    fn take_failure(&mut self) -> Option<FetchError> {
        self.failure.take()
    }
}

impl<R: BlobInput> BlobInput for HashingReader<R> {
    fn take_failure(&mut self) -> Option<FetchError> {
        self.get_mut().take_failure()
    }
}

/// Receives the whole blob `digest` from `input` into a new encrypted spool in `dir`,
/// showing each chunk to `observe`; `cancelled` is asked between chunks.
pub(crate) fn spool_blob(
    input: &mut dyn BlobInput,
    digest: Digest,
    dir: &Path,
    cancelled: &dyn Fn() -> bool,
    observe: &mut dyn FnMut(&[u8]),
) -> Result<Spool, FetchError> {
    let spool_err = |source| FetchError::Spool { digest, source };
    let mut spool = SpoolWriter::create(dir).map_err(spool_err)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if cancelled() {
            return Err(FetchError::Stopped { digest });
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(input
                    .take_failure()
                    .unwrap_or(FetchError::Spool { digest, source: e }))
            }
        };
        observe(&buf[..n]);
        spool.write_all(&buf[..n]).map_err(spool_err)?;
    }
    log::debug!(
        "blob {digest}: {} bytes spooled (encrypted)",
        spool.written()
    );
    spool.finish().map_err(spool_err)
}

//! One layer's byte pipeline: fetch (resuming dropped connections with Range requests) →
//! size and sha256 → decompression. It runs on its own thread and feeds the unpacker through
//! a bounded channel, so decompression and building use both cores while memory stays
//! bounded. The diff_id is hashed on the unpacker's side, over every chunk it receives (the
//! decompressing thread is the busier one); [`LayerStream::finish`] refuses a digest over
//! fewer bytes than were decompressed.
//!
//! Plain layers stream from the source. An encrypted layer is first received whole into an
//! encrypted spool, its blob digest and HMAC are checked over the whole ciphertext
//! ([`authenticate`]), and only then is it decrypted and decompressed ([`start_decrypting`]).

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, HashingReader};
use crate::fetch::{BlobInput, Resuming, Spooled};
use crate::manifest::{Compression, Descriptor};
use crate::source::{Source, SourceError};
use crate::spool::Spool;

pub use crate::fetch::MAX_RESUMES;
pub use encrypted::{authenticate, receive, start_decrypting, Received};

mod encrypted;

/// Chunks in flight between the decompressing thread and the unpacker.
const CHANNEL_DEPTH: usize = 8;
/// Bytes per chunk.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Largest zstd window accepted (2^27 = 128 MiB, zstd's own default limit for decoding):
/// a frame asking for more memory is refused.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Observes download progress.
pub trait Progress: Send + Sync {
    /// Layer `index` (blob `digest`, `size` bytes) starts downloading.
    fn layer_started(&self, index: usize, digest: &Digest, size: u64);
    /// `n` more bytes of layer `index` arrived.
    fn layer_bytes(&self, index: usize, n: u64);
    /// Layer `index` is verified and applied.
    fn layer_done(&self, index: usize);
}

/// What the fetching side found once the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDigests {
    /// Digest of the (decrypted) blob that was decompressed.
    pub blob: Digest,
    /// Its length.
    pub blob_size: u64,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
}

/// Errors of the fetching side. Each names the blob.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source refused or failed.
    #[error("cannot fetch blob {digest}")]
    Source {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// The blob is larger than its descriptor says.
    #[error("blob {digest} is larger than the {size} bytes its descriptor gives")]
    TooLong {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        size: u64,
    },
    /// The connection kept failing.
    #[error("download of blob {digest} failed at byte {offset} after {resumes} resumed attempts")]
    Download {
        /// The blob.
        digest: Digest,
        /// Bytes received.
        offset: u64,
        /// Resume attempts made.
        resumes: u32,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// Decompressing failed.
    #[error("cannot decompress blob {digest}")]
    Decompress {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The blob's bytes do not have the digest its descriptor gives (found while the stream
    /// was broken, e.g. a decompression error caused by the corruption).
    #[error("blob {digest} is corrupt: its {size} bytes have digest {actual}")]
    Corrupt {
        /// The blob.
        digest: Digest,
        /// Digest of the bytes received.
        actual: Digest,
        /// Bytes received.
        size: u64,
    },
    /// Spooling a prefetched blob failed, or its spool failed authentication.
    #[error("spool of blob {digest} failed")]
    Spool {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No byte of the blob arrived for the stall timeout.
    #[error("download of blob {digest} made no progress for {seconds} s (at byte {offset})")]
    Stalled {
        /// The blob.
        digest: Digest,
        /// Bytes received.
        offset: u64,
        /// The stall timeout.
        seconds: f64,
    },
    /// The unpacker stopped reading (it failed; its error is the one to report).
    #[error("unpacking of blob {digest} stopped")]
    Stopped {
        /// The blob.
        digest: Digest,
    },
}

/// Starts fetching and decompressing a plain layer from the source on a new thread. Read
/// the tar stream from the returned reader, then call [`LayerStream::finish`] for the
/// digests. A download with no progress for `stall` fails.
pub fn start(
    source: Arc<dyn Source>,
    descriptor: Descriptor,
    compression: Compression,
    index: usize,
    progress: Option<Arc<dyn Progress>>,
    stall: std::time::Duration,
) -> LayerStream {
    let input = Resuming::new(source, descriptor.clone(), index, progress, stall);
    spawn(Box::new(input), descriptor.digest, compression, index)
}

/// Like [`start`], reading a plain layer's blob from a spool that [`Prefetch`] filled.
///
/// [`Prefetch`]: crate::prefetch::Prefetch
pub fn start_spooled(
    spool: Spool,
    descriptor: &Descriptor,
    compression: Compression,
    index: usize,
) -> LayerStream {
    let input = Spooled::new(spool, descriptor.digest);
    spawn(Box::new(input), descriptor.digest, compression, index)
}

/// Like [`start`], over a blob held in memory (its digest computed here): the layer
/// pipeline without a source, for [`crate::pull::apply_layer_blob`].
pub fn start_in_memory(blob: Vec<u8>, compression: Compression) -> LayerStream {
    let digest = Digest::of(&blob);
    spawn(
        Box::new(InMemory(io::Cursor::new(blob))),
        digest,
        compression,
        0,
    )
}

/// A blob held in memory: it never fails but as its decompressor does.
struct InMemory(io::Cursor<Vec<u8>>);

impl Read for InMemory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl BlobInput for InMemory {
    fn take_failure(&mut self) -> Option<FetchError> {
        None
    }
}

pub(crate) fn spawn(
    input: Box<dyn BlobInput>,
    digest: Digest,
    compression: Compression,
    index: usize,
) -> LayerStream {
    let (tx, rx) = sync_channel(CHANNEL_DEPTH);
    let handle = std::thread::Builder::new()
        .name(format!("layer-{index}"))
        .spawn(move || produce(input, digest, compression, &tx));
    LayerStream {
        digest,
        rx: Some(rx),
        current: Vec::new(),
        pos: 0,
        tar: Sha256::new(),
        received: 0,
        handle,
    }
}

/// The consuming end of a layer pipeline: `Read` over the uncompressed tar stream.
pub struct LayerStream {
    digest: Digest,
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    current: Vec<u8>,
    pos: usize,
    /// diff_id of the chunks received so far, and their length.
    tar: Sha256,
    received: u64,
    handle: io::Result<JoinHandle<Result<Produced, FetchError>>>,
}

/// What the decompressing thread found: the blob's digest and length, the tar stream's length.
struct Produced {
    blob: Digest,
    blob_size: u64,
    tar_size: u64,
}

impl LayerStream {
    /// Stops reading (if not at the end yet) and waits for the fetching thread.
    pub fn finish(mut self) -> Result<StreamDigests, FetchError> {
        // Dropping the receiver makes a producer blocked on `send` stop.
        self.rx = None;
        let digest = self.digest;
        let produced = match self.handle {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(FetchError::Decompress {
                    digest,
                    source: io::Error::other("the layer thread panicked"),
                })
            }),
            Err(source) => Err(FetchError::Decompress { digest, source }),
        }?;
        // The unpacker stopped before the end: there is no diff_id of the whole stream.
        if produced.tar_size != self.received {
            return Err(FetchError::Stopped { digest });
        }
        Ok(StreamDigests {
            blob: produced.blob,
            blob_size: produced.blob_size,
            diff_id: Digest::from_bytes(self.tar.finalize().into()),
        })
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    self.tar.update(&chunk);
                    self.received += chunk.len() as u64;
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the producer is done
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn produce(
    input: Box<dyn BlobInput>,
    digest: Digest,
    compression: Compression,
    tx: &SyncSender<io::Result<Vec<u8>>>,
) -> Result<Produced, FetchError> {
    let mut blob = HashingReader::new(input);
    let result = decompress_into(&mut blob, compression, tx).and_then(|tar_size| {
        // Bytes after the compressed stream count for the blob digest too.
        io::copy(&mut blob, &mut io::sink())?;
        Ok(tar_size)
    });
    match result {
        Ok(tar_size) => {
            let (blob_digest, blob_size) = blob.finish();
            Ok(Produced {
                blob: blob_digest,
                blob_size,
                tar_size,
            })
        }
        Err(e) => {
            // Tell the unpacker (if it still listens) that the stream is broken.
            let _ = tx.send(Err(io::Error::new(e.kind(), format!("blob {digest}: {e}"))));
            if let Some(known) = blob.get_mut().take_failure() {
                return Err(known);
            }
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Err(FetchError::Stopped { digest });
            }
            // A decompression error is most often corruption: finish hashing the blob (the
            // reader never yields more than the descriptor's size) to say so precisely.
            if io::copy(&mut blob, &mut io::sink()).is_ok() {
                let (actual, size) = blob.finish();
                if actual != digest {
                    return Err(FetchError::Corrupt {
                        digest,
                        actual,
                        size,
                    });
                }
            }
            Err(FetchError::Decompress { digest, source: e })
        }
    }
}

/// Decompresses `blob` (type sniffed when the media type says plain tar) and sends the tar
/// stream in chunks; returns its length.
fn decompress_into(
    blob: &mut impl Read,
    compression: Compression,
    tx: &SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<u64> {
    // `take(n).read_to_end` reads until n bytes or the end of the stream.
    let mut magic = Vec::with_capacity(4);
    blob.by_ref().take(4).read_to_end(&mut magic)?;
    let detected = match compression {
        Compression::None if magic.starts_with(&[0x1f, 0x8b]) => Compression::Gzip,
        Compression::None if magic == [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        other => other,
    };
    let head = io::Cursor::new(magic).chain(blob);
    let decoded: Box<dyn Read + '_> = match detected {
        Compression::None => Box::new(head),
        Compression::Gzip => Box::new(MultiGzDecoder::new(head)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(head)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(decoder)
        }
    };
    let mut tar = decoded;
    let mut sent = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        let n = tar.by_ref().take(CHUNK as u64).read_to_end(&mut chunk)?;
        if n == 0 {
            break;
        }
        sent += n as u64;
        if tx.send(Ok(chunk)).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the unpacker stopped reading",
            ));
        }
    }
    Ok(sent)
}

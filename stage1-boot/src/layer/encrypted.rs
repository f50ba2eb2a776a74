//! An encrypted layer: received whole into an encrypted spool, its digest and HMAC checked
//! over the whole ciphertext, and only then decrypted and decompressed.

use std::io::{self, Read};
use std::sync::Arc;

use super::{spawn, FetchError, LayerStream, Progress, CHUNK};
use crate::digest::{Digest, HashingReader};
use crate::fetch::{BlobInput, Resuming};
use crate::manifest::{Compression, Descriptor};
use crate::ocicrypt::blockcipher::{Authenticator, Decryptor, LayerKey};
use crate::source::Source;
use crate::spool::{Spool, SpoolReader};

/// Receives an encrypted layer's blob from the source into an encrypted spool in `dir`,
/// computing its digest and HMAC on the way (nothing is decrypted).
pub fn receive(
    source: Arc<dyn Source>,
    descriptor: &Descriptor,
    index: usize,
    progress: Option<Arc<dyn Progress>>,
    stall: std::time::Duration,
    dir: &std::path::Path,
    key: &LayerKey,
) -> Result<Received, FetchError> {
    let input = Resuming::new(source, descriptor.clone(), index, progress, stall);
    let mut hashing = HashingReader::new(input);
    let mut auth = Authenticator::new(key);
    let spool = crate::fetch::spool_blob(
        &mut hashing,
        descriptor.digest,
        dir,
        &|| false,
        &mut |chunk| auth.update(chunk),
    )?;
    let (digest, size) = hashing.finish();
    Ok(Received {
        spool,
        auth,
        digest,
        size,
    })
}

/// A received ciphertext whose digest, size and HMAC were computed over every byte.
pub struct Received {
    spool: Spool,
    auth: Authenticator,
    /// Digest of the ciphertext.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// Reads a spooled ciphertext (a prefetched layer) once, whole: its digest, size and HMAC.
/// Nothing is decrypted.
pub fn authenticate(spool: Spool, key: &LayerKey) -> io::Result<Received> {
    let mut auth = Authenticator::new(key);
    let mut reader = spool.reader();
    let mut hashing = HashingReader::new(&mut reader);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        auth.update(&buf[..n]);
    }
    let (digest, size) = hashing.finish();
    Ok(Received {
        spool: reader.rewind()?,
        auth,
        digest,
        size,
    })
}

/// Decrypts and decompresses a received ciphertext on a new thread, if its HMAC matched
/// (`None` otherwise: not one byte was decrypted). The stream's [`StreamDigests::blob`] is
/// the digest of the decrypted blob.
pub fn start_decrypting(
    received: Received,
    key: &LayerKey,
    descriptor: &Descriptor,
    compression: Compression,
    index: usize,
) -> Option<LayerStream> {
    let plain = Decryptor::new(received.spool.reader(), key, received.auth)?;
    Some(spawn(
        Box::new(Decrypted(plain)),
        descriptor.digest,
        compression,
        index,
    ))
}

/// The plaintext of an authenticated ciphertext.
struct Decrypted(Decryptor<SpoolReader>);

impl Read for Decrypted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl BlobInput for Decrypted {
    fn take_failure(&mut self) -> Option<FetchError> {
        None
    }
}

//! Encrypted spools for layers fetched ahead of the one being applied: the blob is kept on
//! host storage only as AES-256-GCM-SIV chunks under an ephemeral key that never leaves
//! memory, and every chunk is authenticated when read back (the pipeline checks the blob
//! digest again on top).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Tag};
use zeroize::Zeroizing;

/// Plaintext bytes per chunk.
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// A spool being written.
pub struct SpoolWriter {
    out: BufWriter<File>,
    aead: Aes256GcmSiv,
    key: Zeroizing<[u8; 32]>,
    buf: Vec<u8>,
    chunks: u64,
    len: u64,
}

/// A finished spool, ready to be read once.
pub struct Spool {
    file: File,
    key: Zeroizing<[u8; 32]>,
    len: u64,
}

/// Reads a spool back, authenticating each chunk.
pub struct SpoolReader {
    input: BufReader<File>,
    key: Zeroizing<[u8; 32]>,
    len: u64,
    aead: Aes256GcmSiv,
    chunk: Vec<u8>,
    pos: usize,
    index: u64,
    remaining: u64,
}

impl SpoolWriter {
    /// A new spool: an unlinked file in `dir` and a fresh random key.
    pub fn create(dir: &Path) -> io::Result<Self> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut_slice()).map_err(io::Error::other)?;
        Ok(Self {
            out: BufWriter::with_capacity(CHUNK + TAG_LEN, tempfile::tempfile_in(dir)?),
            aead: Aes256GcmSiv::new(key.as_slice().into()),
            key,
            buf: Vec::with_capacity(CHUNK),
            chunks: 0,
            len: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }

    /// Seals what is buffered and hands back the spool.
    pub fn finish(mut self) -> io::Result<Spool> {
        self.seal_chunk()?;
        let mut file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.flush()?;
        use std::io::Seek;
        file.rewind()?;
        Ok(Spool {
            file,
            key: self.key,
            len: self.len,
        })
    }

    fn seal_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce(self.chunks), b"", &mut self.buf)
            .map_err(|_| io::Error::other("spool encryption failed"))?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(&tag)?;
        self.buf.clear();
        self.chunks += 1;
        Ok(())
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.len += n as u64;
        if self.buf.len() == CHUNK {
            self.seal_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Spool {
    /// Bytes in the spool.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the spool is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A reader over the plaintext.
    pub fn reader(self) -> SpoolReader {
        SpoolReader {
            input: BufReader::with_capacity(CHUNK + TAG_LEN, self.file),
            aead: Aes256GcmSiv::new(self.key.as_slice().into()),
            key: self.key,
            len: self.len,
            chunk: Vec::with_capacity(CHUNK + TAG_LEN),
            pos: 0,
            index: 0,
            remaining: self.len,
        }
    }
}

impl SpoolReader {
    /// The spool again, to be read from its start once more (every chunk is authenticated
    /// again on that read: what the host changed in between fails).
    pub fn rewind(self) -> io::Result<Spool> {
        use std::io::Seek;
        let mut file = self.input.into_inner();
        file.rewind()?;
        Ok(Spool {
            file,
            key: self.key,
            len: self.len,
        })
    }
}

impl Read for SpoolReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            let plain = (self.remaining as usize).min(CHUNK);
            self.chunk.resize(plain + TAG_LEN, 0);
            self.input.read_exact(&mut self.chunk)?;
            let tag = Tag::clone_from_slice(&self.chunk[plain..]);
            self.chunk.truncate(plain);
            self.aead
                .decrypt_in_place_detached(&nonce(self.index), b"", &mut self.chunk, &tag)
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spooled chunk {} failed authentication", self.index),
                    )
                })?;
            self.index += 1;
            self.remaining -= plain as u64;
            self.pos = 0;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn nonce(index: u64) -> aes_gcm_siv::Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_le_bytes());
    n.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_of(data: &[u8], dir: &Path) -> Spool {
        let mut w = SpoolWriter::create(dir).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_and_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let spool = spool_of(&data, dir.path());
        assert_eq!(spool.len(), data.len() as u64);
        let mut back = Vec::new();
        spool.reader().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "spools are unlinked"
        );
        let mut reader = spool_of(&data, dir.path()).reader();
        let mut half = vec![0u8; 100_000];
        reader.read_exact(&mut half).unwrap();
        let mut again = Vec::new();
        reader
            .rewind()
            .unwrap()
            .reader()
            .read_to_end(&mut again)
            .unwrap();
        assert_eq!(again, data, "a rewound spool reads from its start");
    }

    #[test]
    fn tampering_is_detected() {
        use std::io::{Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 150_000];
        let mut spool = spool_of(&data, dir.path());
        // Flip a byte of the second chunk on disk.
        let mut byte = [0u8; 1];
        spool
            .file
            .seek(SeekFrom::Start((CHUNK + TAG_LEN + 5) as u64))
            .unwrap();
        spool.file.read_exact(&mut byte).unwrap();
        byte[0] ^= 1;
        spool
            .file
            .seek(SeekFrom::Start((CHUNK + TAG_LEN + 5) as u64))
            .unwrap();
        spool.file.write_all(&byte).unwrap();
        spool.file.rewind().unwrap();
        let mut back = Vec::new();
        let err = spool.reader().read_to_end(&mut back).unwrap_err();
        assert!(
            err.to_string().contains("chunk 1 failed authentication"),
            "{err}"
        );
        assert_eq!(back.len(), CHUNK, "nothing of the bad chunk is returned");
    }
}

//! Crypto throughput on one core, as the image builder and the pull use it: AES-256-GCM-SIV
//! over 4 KiB blocks with a nonce each, SHA-256 over 4112-byte slots (Merkle leaves) and
//! SHA-256 streaming (blob digest, diff_id). Also prints which CPU features the RustCrypto
//! crates can pick at run time (they detect them with `cpufeatures`). Used by
//! `tests/bench/pull.sh`: `cargo run --release -p encc-rootfs --example crypto_speed`.

use std::time::Instant;

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use sha2::{Digest, Sha256};

const BLOCK: usize = 4096;
const SLOT: usize = BLOCK + 16;
/// Bytes per measurement.
const TOTAL: usize = 512 << 20;

/// The calling thread's CPU time (the machine may be shared: wall time would count other
/// processes' turns), from `/proc/thread-self/schedstat`; wall time where that is missing.
struct Clock {
    wall: Instant,
    cpu_ns: Option<u64>,
}

fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu_ns: thread_cpu_ns(),
        }
    }

    fn seconds(&self) -> f64 {
        match (self.cpu_ns, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

fn mb_per_s(bytes: usize, clock: Clock) -> f64 {
    bytes as f64 / clock.seconds() / 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(target_arch = "x86_64")]
    {
        let f = |name: &str, on: bool| format!("{name}={}", if on { "yes" } else { "no" });
        println!(
            "cpu features: {} {} {} {} {}",
            f("aes", std::arch::is_x86_feature_detected!("aes")),
            f(
                "pclmulqdq",
                std::arch::is_x86_feature_detected!("pclmulqdq")
            ),
            f("sha", std::arch::is_x86_feature_detected!("sha")),
            f("avx2", std::arch::is_x86_feature_detected!("avx2")),
            f("vaes", std::arch::is_x86_feature_detected!("vaes")),
        );
    }
    let aead = Aes256GcmSiv::new(&[7u8; 32].into());
    let aad = [1u8; 40];
    let mut block = vec![0x5au8; BLOCK];
    let start = Clock::start();
    for i in 0..(TOTAL / BLOCK) as u64 {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&i.to_le_bytes());
        aead.encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut block)
            .map_err(|_| "AES-256-GCM-SIV refused to encrypt")?;
    }
    println!(
        "AES-256-GCM-SIV, 4 KiB blocks, one nonce each: {:.0} MB/s per core (CPU time)",
        mb_per_s(TOTAL, start)
    );

    let slot = vec![0xa5u8; SLOT];
    let mut acc = 0u8;
    let start = Clock::start();
    for _ in 0..TOTAL / SLOT {
        acc ^= Sha256::digest(&slot)[0];
    }
    println!(
        "SHA-256, 4112-byte slots (Merkle leaves): {:.0} MB/s per core (CPU time)",
        mb_per_s(TOTAL / SLOT * SLOT, start)
    );

    let chunk = vec![0x3cu8; 256 << 10];
    let mut hasher = Sha256::new();
    let start = Clock::start();
    for _ in 0..TOTAL / chunk.len() {
        hasher.update(&chunk);
    }
    acc ^= hasher.finalize()[0];
    println!(
        "SHA-256, streaming (blob digest, diff_id): {:.0} MB/s per core (CPU time)",
        mb_per_s(TOTAL, start)
    );
    // Keeps the hashing from being optimized away.
    std::hint::black_box(acc);
    Ok(())
}

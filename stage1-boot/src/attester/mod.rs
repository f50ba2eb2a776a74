//! Attesters: TEE evidence that binds the KBS runtime data (its hash, the report data).
//!
//! - [`SampleAttester`] (native platform): trustee's `sample` TEE, evidence
//!   `{"svn": "1", "report_data": "<base64>"}`. It proves nothing; a KBS accepts it only
//!   when configured for testing. Every use is logged as insecure.
//! - [`SgxAttester`] (Occlum): an SGX DCAP quote from Occlum's `/dev/sgx` ioctls, evidence
//!   `{"quote": "<base64>"}` as trustee's SGX verifier reads it. Compiled and its ABI is
//!   layout-tested; it has never been run here (no SGX hardware or Occlum).

mod sample;
mod sgx;
#[allow(unsafe_code)]
mod sys;

use serde_json::Value;

pub use sample::SampleAttester;
pub use sgx::SgxAttester;

/// Produces evidence for a TEE.
pub trait Attester: Send + Sync {
    /// The KBS protocol's name of the TEE (`sample`, `sgx`).
    fn tee(&self) -> kbs_types::Tee;

    /// Evidence binding `report_data` (a hash of at most 64 bytes).
    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError>;
}

/// Which attester to use (defined with the boot-config schema, which holds it typed).
pub use encc_interface::config::AttesterKind;

/// The attester of `kind`.
pub fn attester_for(kind: AttesterKind) -> Box<dyn Attester> {
    match kind {
        AttesterKind::Sample => Box::new(SampleAttester),
        AttesterKind::Sgx => Box::new(SgxAttester::default()),
    }
}

/// Errors producing evidence.
#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    /// The report data does not fit the TEE's report.
    #[error("report data of {len} bytes does not fit the {tee} report (64 bytes)")]
    ReportDataTooLong {
        /// The TEE.
        tee: &'static str,
        /// Its length.
        len: usize,
    },
    /// The SGX device could not be opened.
    #[error("cannot open {path} (SGX DCAP quotes need Occlum's /dev/sgx)")]
    OpenDevice {
        /// The device path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl on the SGX device failed.
    #[error("SGX ioctl {what} on {path} failed")]
    Ioctl {
        /// Which request.
        what: &'static str,
        /// The device path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The device reported an unusable quote size.
    #[error("SGX device reported a quote size of {0} bytes")]
    QuoteSize(u32),
}

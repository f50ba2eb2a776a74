//! SGX DCAP quotes through Occlum's `/dev/sgx` device (the `SGXIOC_GET_DCAP_QUOTE_SIZE` and
//! `SGXIOC_GEN_DCAP_QUOTE` ioctls of Occlum's `occlum_dcap` library). Only works inside an
//! Occlum enclave on DCAP-capable hardware. This code is compiled and its ABI structs are
//! layout-tested, but it has never been run: this project's machines have neither.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::sys;
use super::{Attester, AttesterError};

/// The SGX DCAP attester.
#[derive(Debug, Clone)]
pub struct SgxAttester {
    device: String,
}

impl Default for SgxAttester {
    fn default() -> Self {
        Self {
            device: sys::SGX_DEVICE.to_owned(),
        }
    }
}

impl Attester for SgxAttester {
    fn tee(&self) -> kbs_types::Tee {
        kbs_types::Tee::Sgx
    }

    /// `{"quote": base64(DCAP quote)}`, the report data zero-padded to the 64-byte
    /// REPORTDATA field (trustee pads the expected value the same way).
    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        if report_data.len() > sys::REPORT_DATA_SIZE {
            return Err(AttesterError::ReportDataTooLong {
                tee: "sgx",
                len: report_data.len(),
            });
        }
        let mut padded = [0u8; sys::REPORT_DATA_SIZE];
        padded[..report_data.len()].copy_from_slice(report_data);
        let quote = sys::dcap_quote(&self.device, &padded)?;
        log::info!(
            "attestation: SGX DCAP quote of {} bytes from {}",
            quote.len(),
            self.device
        );
        Ok(json!({"quote": STANDARD.encode(quote)}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_device_the_error_names_it() {
        let attester = SgxAttester {
            device: "/nonexistent/sgx".into(),
        };
        let err = attester.evidence(&[0u8; 48]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sgx"), "{err}");
        assert!(matches!(
            attester.evidence(&[0u8; 65]),
            Err(AttesterError::ReportDataTooLong { .. })
        ));
    }
}

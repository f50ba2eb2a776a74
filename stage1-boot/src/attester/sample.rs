//! Trustee's `sample` TEE: evidence that is just the report data. Insecure by design.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{Attester, AttesterError};

/// The sample attester. It proves nothing about the platform; use it only with a KBS
/// configured for testing.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleAttester;

impl Attester for SampleAttester {
    fn tee(&self) -> kbs_types::Tee {
        kbs_types::Tee::Sample
    }

    /// `{"svn": "1", "report_data": base64(report_data)}`: the report data as given (the
    /// runtime data hash), which is what trustee's sample verifier compares.
    fn evidence(&self, report_data: &[u8]) -> Result<Value, AttesterError> {
        if report_data.len() > 64 {
            return Err(AttesterError::ReportDataTooLong {
                tee: "sample",
                len: report_data.len(),
            });
        }
        log::warn!(
            "attestation: INSECURE sample TEE evidence (no hardware attestation; a KBS \
             accepts it only in test setups)"
        );
        Ok(json!({"svn": "1", "report_data": STANDARD.encode(report_data)}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_carries_the_report_data() {
        let evidence = SampleAttester.evidence(&[7u8; 48]).unwrap();
        assert_eq!(evidence["svn"], "1");
        assert_eq!(
            STANDARD
                .decode(evidence["report_data"].as_str().unwrap())
                .unwrap(),
            vec![7u8; 48]
        );
        assert!(SampleAttester.evidence(&[0u8; 65]).is_err());
    }
}

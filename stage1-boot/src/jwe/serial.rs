//! The JWE JSON serialization (general and flattened), its decoded content and the merged
//! JOSE header of one recipient.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::B64URL;
use super::JweError;

/// What the content encryption authenticates besides the ciphertext.
#[derive(Clone, Copy)]
pub(super) enum Aad {
    /// RFC 7516 §5.1 step 14: the protected header, then `.` and the `aad` member if any.
    Rfc7516,
    /// The protected header only (trustee's KBS responses).
    ProtectedOnly,
}

/// The JSON serialization: general (`recipients`) or flattened (`header`, `encrypted_key`).
#[derive(Deserialize)]
pub(super) struct RawJwe {
    pub(super) protected: Option<String>,
    pub(super) unprotected: Option<Map<String, Value>>,
    pub(super) recipients: Option<Vec<RawRecipient>>,
    pub(super) header: Option<Map<String, Value>>,
    pub(super) encrypted_key: Option<String>,
    pub(super) iv: String,
    pub(super) ciphertext: String,
    pub(super) tag: String,
    pub(super) aad: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawRecipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

type Recipient = (Option<Map<String, Value>>, Vec<u8>);

impl RawJwe {
    pub(super) fn recipients(&self) -> Result<Vec<Recipient>, JweError> {
        let decode_key = |key: Option<&String>| match key {
            Some(key) => b64(key, "encrypted_key is not base64url"),
            None => Ok(Vec::new()),
        };
        // As go-jose parses: a non-empty `recipients` wins (go-jose also writes the first
        // recipient's key at the top level then); otherwise the flattened members are used.
        match self.recipients.as_deref() {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|r| Ok((r.header.clone(), decode_key(r.encrypted_key.as_ref())?)))
                .collect(),
            _ => Ok(vec![(
                self.header.clone(),
                decode_key(self.encrypted_key.as_ref())?,
            )]),
        }
    }
}

/// The shared, decoded parts of the JWE.
pub(super) struct Content {
    pub(super) protected: Map<String, Value>,
    pub(super) aad: Vec<u8>,
    pub(super) iv: Vec<u8>,
    pub(super) ciphertext: Vec<u8>,
    pub(super) tag: Vec<u8>,
}

impl Content {
    pub(super) fn parse(raw: &RawJwe, mode: Aad) -> Result<Self, JweError> {
        let protected_b64 = raw.protected.as_deref().unwrap_or("");
        let protected = if protected_b64.is_empty() {
            Map::new()
        } else {
            let json = b64(protected_b64, "protected header is not base64url")?;
            serde_json::from_slice(&json)
                .map_err(|_| JweError::Malformed("protected header is not a JSON object"))?
        };
        // RFC 7516 §5.1 step 14: ASCII(BASE64URL(protected) [ '.' BASE64URL(aad) ]).
        let mut aad = protected_b64.as_bytes().to_vec();
        if let (Aad::Rfc7516, Some(extra)) = (mode, &raw.aad) {
            b64(extra, "aad is not base64url")?;
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let iv = b64(&raw.iv, "iv is not base64url")?;
        let tag = b64(&raw.tag, "tag is not base64url")?;
        if iv.len() != 12 {
            return Err(JweError::Malformed("iv is not 96 bits"));
        }
        if tag.len() != 16 {
            return Err(JweError::Malformed("tag is not 128 bits"));
        }
        Ok(Self {
            protected,
            aad,
            iv,
            ciphertext: b64(&raw.ciphertext, "ciphertext is not base64url")?,
            tag,
        })
    }
}

pub(super) fn b64(value: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    B64URL.decode(value).map_err(|_| JweError::Malformed(what))
}

/// The JOSE header of one recipient: protected ∪ unprotected ∪ per-recipient.
pub(super) struct Header(Map<String, Value>);

impl Header {
    /// A member of the merged header.
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub(super) fn merge(
        protected: &Map<String, Value>,
        unprotected: Option<&Map<String, Value>>,
        recipient: Option<&Map<String, Value>>,
    ) -> Result<Self, JweError> {
        let mut merged = protected.clone();
        for part in [unprotected, recipient].into_iter().flatten() {
            for (name, value) in part {
                if merged.insert(name.clone(), value.clone()).is_some() {
                    return Err(JweError::Malformed("header parameter appears twice"));
                }
            }
        }
        if merged.contains_key("zip") {
            return Err(JweError::UnsupportedHeader("zip"));
        }
        if merged.contains_key("crit") {
            return Err(JweError::UnsupportedHeader("crit"));
        }
        Ok(Self(merged))
    }

    pub(super) fn str(&self, name: &str) -> Result<Option<&str>, JweError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JweError::Malformed("header parameter is not a string")),
        }
    }

    pub(super) fn b64(&self, name: &str) -> Result<Vec<u8>, JweError> {
        match self.str(name)? {
            Some(value) => b64(value, "apu/apv is not base64url"),
            None => Ok(Vec::new()),
        }
    }
}

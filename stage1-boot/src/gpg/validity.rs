//! Whether a keyring key may sign now, judged as gpg (and so skopeo) does: a key with a
//! verifying revocation signature is revoked; a key whose newest verifying self-signature
//! gives a key expiration time that has passed is expired. Revocation and binding signatures
//! count only when they verify with the primary key, so a keyring cannot be "revoked" by
//! bytes its owner did not sign.

use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Tag};

/// Seconds since the Unix epoch, now.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the primary key of `cert` may not sign at `now`, if it may not.
pub(super) fn primary_unusable(cert: &SignedPublicKey, now: u64) -> Option<String> {
    let primary = &cert.primary_key;
    if cert
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.verify_key(primary).is_ok())
    {
        return Some("revoked".into());
    }
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |s| {
            s.verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
        })
    });
    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok());
    expired(
        primary.created_at().as_secs(),
        newest(certifications.chain(direct)),
        now,
    )
}

/// Why the subkey `sub` of `cert` may not sign at `now`, if it may not.
pub(super) fn subkey_unusable(
    cert: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    now: u64,
) -> Option<String> {
    let verified: Vec<&Signature> = sub
        .signatures
        .iter()
        .filter(|s| s.verify_subkey_binding(&cert.primary_key, &sub.key).is_ok())
        .collect();
    if verified
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return Some("revoked".into());
    }
    let bindings = verified
        .into_iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding));
    expired(sub.key.created_at().as_secs(), newest(bindings), now)
}

fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map_or(0, |t| t.as_secs()))
}

fn expired(created: u32, newest: Option<&Signature>, now: u64) -> Option<String> {
    let validity = newest?.key_expiration_time()?.as_secs();
    if validity == 0 {
        return None;
    }
    let expires = u64::from(created) + u64::from(validity);
    (now >= expires).then(|| format!("expired at {expires} (Unix time)"))
}

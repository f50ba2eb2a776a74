//! Entry metadata from tar headers and PAX records: mode, owner, times, device numbers,
//! extended attributes (bounded in number and size).

use std::io::Read;

use encc_rootfs::{EntryMeta, Timestamp};

use super::limits::UnpackLimits;
use super::{over, refused, UnpackError};

const XATTR_PAX: &str = "SCHILY.xattr.";

/// Mode, owner, mtime (with PAX sub-second precision and large ids) and PAX xattrs.
pub(super) fn metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &str,
    limits: &UnpackLimits,
) -> Result<EntryMeta, UnpackError> {
    let header = entry.header();
    let bad = |what: &str| refused(shown, &format!("invalid {what} field"));
    let mut meta = EntryMeta {
        mode: header.mode().map_err(|_| bad("mode"))? & 0o7777,
        uid: header
            .uid()
            .map_err(|_| bad("uid"))?
            .try_into()
            .map_err(|_| bad("uid"))?,
        gid: header
            .gid()
            .map_err(|_| bad("gid"))?
            .try_into()
            .map_err(|_| bad("gid"))?,
        mtime: Timestamp {
            sec: header
                .mtime()
                .map_err(|_| bad("mtime"))?
                .try_into()
                .map_err(|_| bad("mtime"))?,
            nsec: 0,
        },
        xattrs: Default::default(),
    };
    let mut xattr_bytes = 0u64;
    if let Some(pax) = entry.pax_extensions().map_err(UnpackError::Tar)? {
        for ext in pax {
            let ext = ext.map_err(UnpackError::Tar)?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let text = std::str::from_utf8(value).ok();
            match key {
                "uid" => {
                    meta.uid = text
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX uid"))?
                }
                "gid" => {
                    meta.gid = text
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX gid"))?
                }
                "mtime" => {
                    meta.mtime = text
                        .and_then(parse_pax_time)
                        .ok_or_else(|| bad("PAX mtime"))?
                }
                _ => {
                    if let Some(name) = key.strip_prefix(XATTR_PAX) {
                        xattr_bytes += (name.len() + value.len()) as u64;
                        meta.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
                        let count = meta.xattrs.len() as u64;
                        if count > limits.xattrs {
                            return Err(over(shown, "extended attributes", count, limits.xattrs));
                        }
                        if xattr_bytes > limits.xattr_bytes {
                            let (n, max) = (xattr_bytes, limits.xattr_bytes);
                            return Err(over(shown, "bytes of extended attributes", n, max));
                        }
                    }
                }
            }
        }
    }
    Ok(meta)
}

/// PAX time: decimal seconds with an optional fraction, possibly negative.
pub(super) fn parse_pax_time(s: &str) -> Option<Timestamp> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let sec: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec_digits: String = frac.chars().take(9).collect();
    while nsec_digits.len() < 9 {
        nsec_digits.push('0');
    }
    let nsec: u32 = nsec_digits.parse().ok()?;
    Some(if neg && nsec > 0 {
        Timestamp {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    } else if neg {
        Timestamp { sec: -sec, nsec: 0 }
    } else {
        Timestamp { sec, nsec }
    })
}

/// Linux's `makedev`.
pub(super) fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(Timestamp {
                sec: 1_700_000_000,
                nsec: 500_000_000
            })
        );
        assert_eq!(parse_pax_time("12"), Some(Timestamp { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(Timestamp {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn makedev_matches_linux() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(makedev(259, 65536), 0x1001_0300);
    }
}

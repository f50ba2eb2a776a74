//! Arguments of `encc store …`, parsed: an age (`30m`, `12h`, `7d`, `1h30m`) and an image
//! named by reference or by manifest digest.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use encc_init::store::KeptImage;
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;

/// A duration written as numbers with units: `s`, `m`, `h`, `d` (24 h), `w` (7 d), e.g.
/// `90s`, `30m`, `12h`, `7d`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

/// Text that is not an [`Age`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (numbers with units s, m, h, d, w: 30m, 12h, 7d, 1h30m)")]
pub struct AgeError(String);

impl FromStr for Age {
    type Err = AgeError;

    fn from_str(s: &str) -> Result<Self, AgeError> {
        let err = || AgeError(s.to_owned());
        let mut rest = s;
        let mut secs: u64 = 0;
        if rest.is_empty() {
            return Err(err());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (number, tail) = rest.split_at(digits);
            let mut units = tail.chars();
            let unit = match units.next() {
                Some('s') => 1,
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86_400,
                Some('w') => 7 * 86_400,
                _ => return Err(err()),
            };
            let number: u64 = number.parse().map_err(|_| err())?;
            secs = number
                .checked_mul(unit)
                .and_then(|n| secs.checked_add(n))
                .ok_or_else(err)?;
            rest = units.as_str();
        }
        Ok(Self(Duration::from_secs(secs)))
    }
}

/// A kept image as `encc store rm` names it: `sha256:HEX` (at least 12 hex digits of the
/// manifest digest, as `docker` takes image IDs) or a reference it was started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A prefix of the manifest digest's hex (12 to 64 lowercase hex digits).
    Digest(String),
    /// A reference (matched in its canonical form, `docker://HOST/REPO:TAG`).
    Reference(ImageRef),
}

/// Text that is neither a digest (prefix) nor a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a manifest digest (sha256: and 12 to 64 hex digits) nor an image reference"
)]
pub struct TargetError(String);

/// The shortest digest prefix accepted.
const MIN_PREFIX: usize = 12;

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, TargetError> {
        let err = || TargetError(s.to_owned());
        if let Some(hex) = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("sha256-"))
        {
            let lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !lower_hex || !(MIN_PREFIX..=64).contains(&hex.len()) {
                return Err(err());
            }
            return Ok(Self::Digest(hex.to_owned()));
        }
        s.parse().map(Self::Reference).map_err(|_| err())
    }
}

impl Target {
    /// The manifests of the kept images this names. A digest prefix names at most one
    /// (several: an error naming them); a reference names every image started as it.
    pub fn select(&self, images: &[KeptImage]) -> Result<Vec<Digest>, SelectError> {
        let found: Vec<Digest> = images
            .iter()
            .filter(|image| match self {
                Self::Digest(prefix) => image.manifest.hex().starts_with(prefix.as_str()),
                Self::Reference(reference) => image.references.contains(reference),
            })
            .map(|image| image.manifest)
            .collect();
        match (self, found.len()) {
            (_, 0) => Err(SelectError::None(Box::new(self.clone()))),
            (Self::Digest(_), 2..) => Err(SelectError::Ambiguous {
                target: Box::new(self.clone()),
                found,
            }),
            _ => Ok(found),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digest(prefix) => write!(f, "sha256:{prefix}"),
            Self::Reference(reference) => reference.fmt(f),
        }
    }
}

/// Why a [`Target`] names no kept image to remove.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// No kept image matches.
    #[error("no kept image is {0}")]
    None(Box<Target>),
    /// A digest prefix matches several.
    #[error("{target} names several kept images: {}", list(found))]
    Ambiguous {
        /// What was named.
        target: Box<Target>,
        /// The images it matches.
        found: Vec<Digest>,
    },
}

fn list(digests: &[Digest]) -> String {
    let texts: Vec<String> = digests.iter().map(ToString::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use encc_init::store::SealState;

    #[test]
    fn ages_are_numbers_with_units() {
        let secs = |s: &str| s.parse::<Age>().map(|a| a.0.as_secs());
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("12h"), Ok(43_200));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("2w"), Ok(1_209_600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("0s"), Ok(0));
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "7 d",
            "-7d",
            "7D",
            "1.5h",
            "7dd",
            "99999999999999999999d",
            "9999999999999999999w",
        ] {
            let err = bad.parse::<Age>().unwrap_err();
            assert!(
                err.to_string().contains("is not a duration"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn targets_are_digests_or_references() {
        let hex = "ab".repeat(32);
        assert_eq!(
            format!("sha256:{hex}").parse::<Target>(),
            Ok(Target::Digest(hex.clone()))
        );
        assert_eq!(
            format!("sha256-{}", &hex[..12]).parse::<Target>(),
            Ok(Target::Digest(hex[..12].to_owned()))
        );
        let Ok(Target::Reference(r)) = "127.0.0.1:5000/test/busybox:latest".parse::<Target>()
        else {
            panic!("not a reference")
        };
        assert_eq!(r.to_string(), "docker://127.0.0.1:5000/test/busybox:latest");
        for bad in [
            "sha256:abc".to_owned(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{hex}00"),
            "sha256:zzzzzzzzzzzzzzzz".to_owned(),
            "docker://".to_owned(),
            String::new(),
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_select_kept_images() {
        let image = |hex: &str, refs: &[&str]| KeptImage {
            manifest: format!("sha256:{hex}").parse().unwrap(),
            references: refs.iter().map(|r| r.parse().unwrap()).collect(),
            bytes: 0,
            last_use: None,
            busy: None,
            has_image: true,
            seal: SealState::Present,
        };
        let a = format!("aaaaaaaaaaaa{}", "1".repeat(52));
        let b = format!("aaaaaaaaaaaa{}", "2".repeat(52));
        let images = [
            image(&a, &["reg.example/x:1", "reg.example/x:latest"]),
            image(&b, &["reg.example/x:latest"]),
        ];
        let select = |t: &str| t.parse::<Target>().unwrap().select(&images);
        assert_eq!(select(&format!("sha256:{a}")).unwrap().len(), 1);
        assert_eq!(select("docker://reg.example/x:1").unwrap().len(), 1);
        assert_eq!(select("reg.example/x:latest").unwrap().len(), 2);
        assert!(matches!(
            select("sha256:aaaaaaaaaaaa"),
            Err(SelectError::Ambiguous { found, .. }) if found.len() == 2
        ));
        assert!(matches!(
            select("reg.example/y:1"),
            Err(SelectError::None(_))
        ));
    }
}

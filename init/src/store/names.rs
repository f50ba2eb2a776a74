//! Names in the store. Every file of an image has the image's name as its stem: `NAME.img`,
//! `NAME.seal`, `NAME.meta` (kept images: references and last use), `NAME.lock`, and the
//! partial files of writers, `.NAME.img.RANDOM.partial`, `.NAME.seal.RANDOM.partial` and
//! `.NAME.meta.RANDOM.partial`. Nothing else in the store is ever opened or removed by name.

use std::fmt;

use encc_stage1::digest::Digest;

/// An image's name: `sha256-HEX` for an image kept under its manifest digest, `encc-HEX`
/// for one pulled for a single start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ImageName(String);

const KEPT: &str = "sha256-";
const ONE_START: &str = "encc-";

impl ImageName {
    /// The name of the image kept for `manifest`.
    pub(super) fn kept(manifest: &Digest) -> Self {
        Self(format!("{KEPT}{}", manifest.hex()))
    }

    /// A fresh random name for an image of one start.
    pub(super) fn one_start() -> Result<Self, getrandom::Error> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)?;
        Ok(Self(format!("{ONE_START}{}", hex::encode(id))))
    }

    /// The kept image a file of the store belongs to (`sha256-HEX.img`, `.seal`, `.meta`
    /// or `.lock`), if it is one.
    pub(super) fn of_kept_file(file_name: &str) -> Option<Self> {
        let (stem, ext) = file_name.rsplit_once('.')?;
        if !matches!(ext, "img" | "seal" | "meta" | "lock") {
            return None;
        }
        Self::parse(stem).filter(Self::is_kept)
    }

    /// The manifest digest of a kept image.
    pub(super) fn manifest(&self) -> Option<Digest> {
        format!("sha256:{}", self.0.strip_prefix(KEPT)?)
            .parse()
            .ok()
    }

    /// Whether the image is kept across starts (with a seal).
    pub(super) fn is_kept(&self) -> bool {
        self.0.starts_with(KEPT)
    }

    /// The image whose partial file is `file_name`, if that is one.
    pub(super) fn of_partial(file_name: &str) -> Option<Self> {
        let inner = file_name.strip_prefix('.')?.strip_suffix(".partial")?;
        let (rest, random) = inner.rsplit_once('.')?;
        if random.is_empty() || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let stem = rest
            .strip_suffix(".img")
            .or_else(|| rest.strip_suffix(".seal"))
            .or_else(|| rest.strip_suffix(".meta"))?;
        Self::parse(stem)
    }

    fn parse(stem: &str) -> Option<Self> {
        let lower_hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let valid = match (stem.strip_prefix(KEPT), stem.strip_prefix(ONE_START)) {
            (Some(hex), _) => lower_hex(hex, 64),
            (_, Some(hex)) => lower_hex(hex, 16),
            _ => false,
        };
        valid.then(|| Self(stem.to_owned()))
    }

    /// The file name with extension `ext` (`img`, `seal`, `lock`).
    pub(super) fn file(&self, ext: &str) -> String {
        format!("{}.{ext}", self.0)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_name_their_image() {
        let kept = format!("sha256-{}", "ab".repeat(32));
        let one = format!("encc-{}", "0f".repeat(8));
        for (file, image) in [
            (format!(".{kept}.img.Ab3dEf.partial"), Some(&kept)),
            (format!(".{kept}.seal.x1.partial"), Some(&kept)),
            (format!(".{kept}.meta.x1.partial"), Some(&kept)),
            (format!(".{one}.img.QwErTy.partial"), Some(&one)),
            (format!("{kept}.img"), None),
            (format!(".{kept}.img.partial"), None),
            (format!(".{kept}.lock.Ab3dEf.partial"), None),
            (format!(".{kept}.img.a/b.partial"), None),
            (
                format!(".sha256-{}.img.Ab3dEf.partial", "AB".repeat(32)),
                None,
            ),
            (".encc-12.img.Ab3dEf.partial".to_owned(), None),
            (".other.img.Ab3dEf.partial".to_owned(), None),
        ] {
            assert_eq!(
                ImageName::of_partial(&file).map(|n| n.to_string()).as_ref(),
                image,
                "{file}"
            );
        }
        assert!(ImageName::of_partial(&format!(".{kept}.img.A.partial"))
            .unwrap()
            .is_kept());
        assert!(!ImageName::one_start().unwrap().is_kept());
    }

    #[test]
    fn kept_files_name_their_image_and_manifest() {
        let hex = "ab".repeat(32);
        for ext in ["img", "seal", "meta", "lock"] {
            let name = ImageName::of_kept_file(&format!("sha256-{hex}.{ext}")).unwrap();
            assert_eq!(
                name.manifest().unwrap().to_string(),
                format!("sha256:{hex}")
            );
        }
        for odd in [
            format!("sha256-{hex}.img.partial"),
            format!("sha256-{hex}.other"),
            format!("sha256-{hex}"),
            format!("encc-{}.img", "0f".repeat(8)),
            format!("sha256-{}.img", "AB".repeat(32)),
            format!("sha256-{hex}/x.img"),
            "../sha256-.img".to_owned(),
        ] {
            assert_eq!(ImageName::of_kept_file(&odd), None, "{odd}");
        }
    }
}

//! Capabilities of the container's processes: Docker's default set, as runc applies the OCI
//! default spec. Everything else leaves every set (bounding, permitted, effective,
//! inheritable) and the ambient set is cleared; an image user other than root keeps the
//! bounding set only (no permitted or effective capabilities after setuid, as with runc).

use super::sys;

/// Capability numbers from `<linux/capability.h>`.
const CHOWN: u32 = 0;
const DAC_OVERRIDE: u32 = 1;
const FOWNER: u32 = 3;
const FSETID: u32 = 4;
const KILL: u32 = 5;
const SETGID: u32 = 6;
const SETUID: u32 = 7;
const SETPCAP: u32 = 8;
const NET_BIND_SERVICE: u32 = 10;
const NET_RAW: u32 = 13;
const SYS_CHROOT: u32 = 18;
const MKNOD: u32 = 27;
const AUDIT_WRITE: u32 = 29;
const SETFCAP: u32 = 31;

/// Docker's default capability set.
pub(super) const DOCKER_DEFAULT: [u32; 14] = [
    CHOWN,
    DAC_OVERRIDE,
    FSETID,
    FOWNER,
    MKNOD,
    NET_RAW,
    SETGID,
    SETUID,
    SETFCAP,
    SETPCAP,
    NET_BIND_SERVICE,
    SYS_CHROOT,
    KILL,
    AUDIT_WRITE,
];

/// Highest capability number tried when dropping the bounding set (the kernel refuses
/// numbers it does not know, which ends the walk early).
const MAX_CAP: u32 = 63;

/// The default set as a bit mask.
pub(super) fn docker_default_mask() -> u64 {
    DOCKER_DEFAULT.iter().fold(0, |m, c| m | 1 << c)
}

/// Step 1, while still privileged (it needs CAP_SETPCAP): drops every capability outside
/// the default set from the bounding set.
pub(super) fn limit_bounding_set() -> std::io::Result<()> {
    let keep = docker_default_mask();
    for cap in 0..=MAX_CAP {
        if keep & (1 << cap) == 0 && !sys::drop_bounding(cap)? {
            break;
        }
    }
    Ok(())
}

/// Step 2, after setuid: permitted and effective become the default set for root and
/// stay empty for any other user; inheritable and ambient are emptied.
pub(super) fn set_process_caps(uid: u32) -> std::io::Result<()> {
    sys::capset(if uid == 0 { docker_default_mask() } else { 0 })?;
    sys::clear_ambient()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers_capeff() {
        // `grep CapEff /proc/self/status` in `docker run --rm busybox`.
        assert_eq!(docker_default_mask(), 0xa804_25fb);
    }
}

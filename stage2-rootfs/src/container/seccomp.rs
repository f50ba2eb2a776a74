//! The container's seccomp filter: Docker's default profile for the default capability set
//! (moby's `profiles/seccomp/default.json`), as an allowlist compiled with `seccompiler`.
//! A syscall outside it fails with EPERM, as with Docker; `clone3` fails with ENOSYS so that
//! the C library falls back to `clone`, whose namespace flags the filter can inspect.
//! Other ABIs than the native one (i386, x32) are not allowed at all, which is stricter
//! than Docker.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

#[cfg(target_arch = "x86_64")]
#[path = "seccomp_x86_64.rs"]
mod table;

#[cfg(not(target_arch = "x86_64"))]
mod table {
    /// No table for this architecture: building the profile fails, no container starts.
    pub(super) const ALLOWED: &[libc::c_long] = &[];
}

/// `clone` flags that create namespaces (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET): Docker's mask 0x7E020000.
const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `socket` address family refused by Docker's profile (AF_VSOCK).
const AF_VSOCK: u64 = 40;

/// `personality` values Docker's profile accepts: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0, 8, 0x20000, 0x20008, 0xffff_ffff];

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// This architecture has no syscall table.
    #[error("no seccomp profile for the {0} architecture")]
    Arch(&'static str),
    /// seccompiler refused the rules.
    #[error("cannot compile the seccomp profile")]
    Compile(#[source] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp profile")]
    Install(#[source] seccompiler::Error),
}

/// The compiled profile: the allowlist, and the filter that turns `clone3` into ENOSYS.
pub(super) struct Profile {
    allowlist: BpfProgram,
    clone3: BpfProgram,
}

impl Profile {
    /// Compiles Docker's default profile for this architecture.
    pub(super) fn docker_default() -> Result<Self, SeccompError> {
        let arch = std::env::consts::ARCH;
        if table::ALLOWED.is_empty() {
            return Err(SeccompError::Arch(arch));
        }
        let target = TargetArch::try_from(arch).map_err(|_| SeccompError::Arch(arch))?;
        let compile = |rules, mismatch, matched| -> Result<BpfProgram, SeccompError> {
            SeccompFilter::new(rules, mismatch, matched, target)
                .and_then(BpfProgram::try_from)
                .map_err(SeccompError::Compile)
        };
        let eperm = SeccompAction::Errno(libc::EPERM as u32);
        let allowlist = compile(allow_rules()?, eperm, SeccompAction::Allow)?;
        let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
        let clone3 = compile(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Allow,
            enosys,
        )?;
        Ok(Self { allowlist, clone3 })
    }

    /// Installs the profile on this thread (and sets `no_new_privs`, which it needs); every
    /// process started from here on inherits it.
    pub(super) fn install(&self) -> Result<(), SeccompError> {
        seccompiler::apply_filter(&self.clone3).map_err(SeccompError::Install)?;
        seccompiler::apply_filter(&self.allowlist).map_err(SeccompError::Install)
    }
}

fn arg0(op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SeccompError> {
    SeccompCondition::new(0, SeccompCmpArgLen::Qword, op, value)
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(SeccompError::Compile)
}

/// The allowlist: unconditional syscalls, then the ones Docker allows for some arguments.
fn allow_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        table::ALLOWED.iter().map(|nr| (*nr, Vec::new())).collect();
    rules.insert(
        libc::SYS_clone,
        vec![arg0(SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS), 0)?],
    );
    rules.insert(libc::SYS_socket, vec![arg0(SeccompCmpOp::Ne, AF_VSOCK)?]);
    rules.insert(
        libc::SYS_personality,
        PERSONALITIES
            .iter()
            .map(|p| arg0(SeccompCmpOp::Eq, *p))
            .collect::<Result<_, _>>()?,
    );
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_and_leaves_out_what_docker_refuses() {
        let profile = Profile::docker_default().unwrap();
        assert!(!profile.allowlist.is_empty() && !profile.clone3.is_empty());
        for refused in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_init_module,
            libc::SYS_kexec_load,
            libc::SYS_open_by_handle_at,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_pivot_root,
            libc::SYS_fsopen,
            libc::SYS_move_mount,
            libc::SYS_reboot,
            libc::SYS_swapon,
        ] {
            assert!(!table::ALLOWED.contains(&refused), "{refused} is allowed");
        }
    }
}

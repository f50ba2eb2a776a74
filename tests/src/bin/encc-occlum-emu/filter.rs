//! The seccomp filters (classic BPF) the emulator puts on the processes it starts.
//!
//! init's filter makes Linux answer like Occlum 0.30: `mount`, `umount2` and MountRootFS
//! (363) go to the supervisor (SECCOMP_RET_USER_NOTIF); `clone` is allowed only with the
//! flags Occlum's `check_clone_flags` accepts (EINVAL otherwise, as Occlum answers); every
//! other number Occlum implements is allowed; the rest answer ENOSYS, which is Occlum's
//! `handle_unsupported`. For numbers outside Occlum's table Occlum answers EINVAL
//! (`SyscallNumError`); the emulator answers ENOSYS there too, so that the host glibc's
//! probes (clone3, rseq) fall back the way they would; the recorded trace still lists them.
//!
//! The app stage's filter only answers ENOSYS to the credential calls Occlum lacks (it is a
//! single-user system), so a container user switch fails here as it does in Occlum.

use crate::rules::{CLONE_MANDATORY, CLONE_UNSUPPORTED};
use crate::table::{Table, SYS_MOUNT_ROOTFS};

/// `AUDIT_ARCH_X86_64`.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// x32 system calls have this bit set.
const X32_BIT: u32 = 0x4000_0000;
const SYS_CLONE: u32 = 56;
const SYS_MOUNT: u32 = 165;
const SYS_UMOUNT2: u32 = 166;

/// setuid, setgid, setreuid, setregid, setgroups, setresuid, setresgid, setfsuid, setfsgid,
/// capset: `handle_unsupported` in Occlum 0.30.
pub const CREDENTIAL_CALLS: [u32; 10] = [105, 106, 113, 114, 116, 117, 119, 122, 123, 126];

// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const AND: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;

fn ret_errno(errno: i32) -> libc::sock_filter {
    stmt(
        RET,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    )
}

/// Arch check and the number in the accumulator.
fn prologue() -> Vec<libc::sock_filter> {
    vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JGE, X32_BIT, 0, 1),
        ret_errno(libc::ENOSYS),
    ]
}

/// `if nr == k { return ret }` with the number still in the accumulator afterwards.
fn on(nr: u32, ret: libc::sock_filter) -> [libc::sock_filter; 2] {
    [jump(JEQ, nr, 0, 1), ret]
}

/// The filter for init (see the module comment).
pub fn init_filter(table: &Table) -> Vec<libc::sock_filter> {
    let mut prog = prologue();
    let notify = stmt(RET, libc::SECCOMP_RET_USER_NOTIF);
    for nr in [SYS_MOUNT, SYS_UMOUNT2, SYS_MOUNT_ROOTFS] {
        prog.extend(on(nr, notify));
    }
    // clone: mandatory flags all present, and not every "unsupported" flag.
    prog.extend([
        jump(JEQ, SYS_CLONE, 0, 9),
        stmt(LD_W_ABS, ARG0_LOW),
        stmt(AND, CLONE_MANDATORY),
        jump(JEQ, CLONE_MANDATORY, 1, 0),
        ret_errno(libc::EINVAL),
        stmt(LD_W_ABS, ARG0_LOW),
        stmt(AND, CLONE_UNSUPPORTED),
        jump(JEQ, CLONE_UNSUPPORTED, 0, 1),
        ret_errno(libc::EINVAL),
        stmt(RET, libc::SECCOMP_RET_ALLOW),
    ]);
    let allow = stmt(RET, libc::SECCOMP_RET_ALLOW);
    for nr in table.implemented_numbers() {
        prog.extend(on(nr, allow));
    }
    prog.push(ret_errno(libc::ENOSYS));
    prog
}

/// The filter for the app stage: ENOSYS for [`CREDENTIAL_CALLS`], everything else allowed.
pub fn app_filter() -> Vec<libc::sock_filter> {
    let mut prog = prologue();
    for nr in CREDENTIAL_CALLS {
        prog.extend(on(nr, ret_errno(libc::ENOSYS)));
    }
    prog.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_calls_are_unsupported_in_occlum() {
        let table = Table::occlum_0_30().unwrap();
        for nr in CREDENTIAL_CALLS {
            let entry = table.get(nr).unwrap();
            assert!(!entry.implemented, "{} is implemented", entry.name);
        }
    }

    #[test]
    fn filters_fit_the_kernel_limit() {
        let table = Table::occlum_0_30().unwrap();
        let init = init_filter(&table);
        assert!(init.len() < 4096, "{}", init.len());
        assert!(init.len() > 300, "{}", init.len());
        assert_eq!(
            init.last().unwrap().k,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }
}

//! The syscall-table check: every system call init made (an `strace -f -n` log of the
//! emulator's exec stage, counted from its execve of /bin/init on) must be one Occlum 0.30
//! implements, and every `clone` must pass Occlum's `check_clone_flags` (threads only:
//! Occlum has no fork).

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};

use crate::rules::clone_flags_ok;
use crate::table::Table;

const SYS_CLONE: u32 = 56;
const SYS_EXECVE: u32 = 59;

/// Calls Occlum does not implement that may appear, answered ENOSYS, because init is built
/// here for the host's glibc, which (with Rust's std for glibc) probes them and falls back
/// on ENOSYS; built for Occlum (musl, or Occlum's glibc) nothing makes them. Each is allowed
/// only when every such call got ENOSYS.
pub const ENOSYS_FALLBACKS: [(u32, &str); 3] = [
    (
        332,
        "statx: Rust std built for glibc tries statx and falls back to fstatat; built for Occlum (musl) it never calls it",
    ),
    (334, "rseq: glibc >= 2.35 registers rseq per thread and goes on without it"),
    (435, "clone3: glibc >= 2.34 tries clone3 for threads and falls back to clone"),
];

/// One system call seen in the log.
#[derive(Debug, Default)]
pub struct Seen {
    pub count: u64,
    pub not_enosys: u64,
    /// Flags of clones Occlum refuses.
    pub bad_clones: Vec<String>,
}

/// The calls of init in `log` (strace -f -n output), by number.
pub fn calls_of_init(log: &str) -> Result<BTreeMap<u32, Seen>> {
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut first_pid = None;
    let mut started = false;
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('[') else {
            continue; // signals, exits
        };
        let Some((nr, call)) = rest.split_once(']') else {
            continue;
        };
        let nr: u32 = nr
            .trim()
            .parse()
            .with_context(|| format!("strace line {line:?}"))?;
        let call = call.trim_start();
        let first = *first_pid.get_or_insert(pid);
        if !started {
            if pid == first && nr == SYS_EXECVE && call.starts_with("execve(\"/bin/init\"") {
                started = !call.contains("= -1");
            }
            continue;
        }
        let entry = seen.entry(nr).or_default();
        let resumed = call.starts_with("<...");
        if !resumed {
            entry.count += 1;
        }
        if let Some((_, result)) = call.rsplit_once(") = ") {
            if !result.contains("ENOSYS") {
                entry.not_enosys += 1;
            }
        }
        if nr == SYS_CLONE && !resumed {
            let flags = clone_flags(call);
            if !flags.is_some_and(clone_flags_ok) {
                entry.bad_clones.push(call.to_owned());
            }
        }
    }
    if !started {
        bail!("the trace has no successful execve of /bin/init");
    }
    Ok(seen)
}

/// The `flags=` of a strace `clone(...)` line.
fn clone_flags(call: &str) -> Option<u32> {
    let flags = call.split("flags=").nth(1)?;
    let flags = flags.split([',', ' ', ')']).next()?;
    let mut value = 0u32;
    for name in flags.split('|') {
        value |= match name {
            "CLONE_VM" => 0x100,
            "CLONE_FS" => 0x200,
            "CLONE_FILES" => 0x400,
            "CLONE_SIGHAND" => 0x800,
            "CLONE_PIDFD" => 0x1000,
            "CLONE_PTRACE" => 0x2000,
            "CLONE_VFORK" => 0x4000,
            "CLONE_PARENT" => 0x8000,
            "CLONE_THREAD" => 0x10000,
            "CLONE_NEWNS" => 0x20000,
            "CLONE_SYSVSEM" => 0x40000,
            "CLONE_SETTLS" => 0x80000,
            "CLONE_PARENT_SETTID" => 0x10_0000,
            "CLONE_CHILD_CLEARTID" => 0x20_0000,
            "CLONE_DETACHED" => 0x40_0000,
            "CLONE_UNTRACED" => 0x80_0000,
            "CLONE_CHILD_SETTID" => 0x100_0000,
            "CLONE_NEWCGROUP" => 0x200_0000,
            "CLONE_NEWUTS" => 0x400_0000,
            "CLONE_NEWIPC" => 0x800_0000,
            "CLONE_NEWUSER" => 0x1000_0000,
            "CLONE_NEWPID" => 0x2000_0000,
            "CLONE_NEWNET" => 0x4000_0000,
            "CLONE_IO" => 0x8000_0000,
            other if other.starts_with("SIG") => 0,
            other => u32::from_str_radix(other.trim_start_matches("0x"), 16).ok()?,
        };
    }
    Some(value)
}

/// Checks the calls against the table; prints one line per system call; fails naming
/// every call outside it.
pub fn check(table: &Table, log: &str) -> Result<()> {
    let seen = calls_of_init(log)?;
    println!("{}", table.source);
    let mut violations = Vec::new();
    for (nr, s) in &seen {
        let entry = table.get(*nr);
        let name = entry.map_or_else(|| format!("linux#{nr}"), |e| e.name.clone());
        let fallback = ENOSYS_FALLBACKS.iter().find(|(n, _)| n == nr);
        let status = match (table.implemented(*nr), fallback) {
            (true, _) if s.bad_clones.is_empty() => "implemented".to_owned(),
            (true, _) => {
                violations.push(format!("{name}: {}", s.bad_clones.join("; ")));
                "REFUSED FLAGS (Occlum's clone makes threads only)".to_owned()
            }
            (false, Some((_, why))) if s.not_enosys == 0 => format!("ENOSYS, allowed: {why}"),
            (false, _) => {
                violations.push(format!("{name} ({nr})"));
                match entry {
                    Some(_) => "NOT IMPLEMENTED in Occlum (handle_unsupported)".to_owned(),
                    None => "NOT IN Occlum's table".to_owned(),
                }
            }
        };
        println!("{nr:>4} {name:<20} {:>6}  {status}", s.count);
    }
    println!("{} distinct system calls", seen.len());
    if !violations.is_empty() {
        bail!(
            "init made system calls Occlum 0.30 does not implement: {}",
            violations.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"100 [ 317] seccomp(SECCOMP_SET_MODE_FILTER, 0x8, 0x1) = 4
100 [  59] execve("/bin/init", ["init"], 0x1 /* 3 vars */) = 0
100 [   0] read(3, "x", 1) = 1
100 [ 435] clone3({flags=CLONE_VM, exit_signal=0}, 88) = -1 ENOSYS (Function not implemented)
100 [  56] clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, parent_tid=0x7f, tls=0x7f <unfinished ...>
101 [ 334] rseq(0x7f, 0x20, 0, 0x53053053) = -1 ENOSYS (Function not implemented)
100 [  56] <... clone resumed>) = 101
101 +++ exited with 0 +++
"#;

    #[test]
    fn a_threaded_init_passes_and_the_exec_stage_is_not_counted() {
        let table = Table::occlum_0_30().unwrap();
        check(&table, LOG).unwrap();
        let seen = calls_of_init(LOG).unwrap();
        assert!(!seen.contains_key(&317), "the exec stage's seccomp call");
        assert_eq!(seen[&56].count, 1);
    }

    #[test]
    fn fork_unshare_and_posix_spawn_clones_fail() {
        let table = Table::occlum_0_30().unwrap();
        for bad in [
            "100 [  57] fork() = 102",
            "100 [ 272] unshare(CLONE_NEWNS) = 0",
            "100 [  56] clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 102",
            "100 [  56] clone(child_stack=0x7f, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 102",
            "100 [ 334] rseq(0x7f, 0x20, 0, 0x53053053) = 0",
        ] {
            let log = format!("{LOG}{bad}\n");
            let err = check(&table, &log).unwrap_err().to_string();
            assert!(err.contains("does not implement"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_trace_without_init_is_an_error() {
        let table = Table::occlum_0_30().unwrap();
        let log = "100 [  59] execve(\"/bin/init\", [\"init\"], 0x1) = -1 ENOENT (No such file)\n";
        assert!(check(&table, log).is_err());
    }
}

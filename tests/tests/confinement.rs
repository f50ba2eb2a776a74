//! Container confinement on the native platform, tried as a hostile image would, as root
//! inside the container (the `busybox-root` fixture) and as the fixture's non-root user:
//! Docker's default capabilities, Docker's default seccomp profile (EPERM), a PID namespace
//! of its own in which no process of encc (init, the FUSE server) is visible, readable or
//! traceable, and the OCI default masked and read-only paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::enclave::*;
use common::*;

/// Docker's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DOCKER_CAPS: &str = "00000000a80425fb";
const NO_CAPS: &str = "0000000000000000";

/// The OCI default spec's masked paths (a file reads empty, a directory lists nothing).
const MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The OCI default spec's read-only paths.
const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

impl Env {
    fn boot_config(&self) -> PathBuf {
        let path = self.dir.path().join("boot.json");
        let json = format!(
            r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{}"], "allow_host_args": true}}"#,
            self.store().display(),
            self.registry
        );
        std::fs::write(&path, json).unwrap();
        path
    }

    /// Runs `script` with `sh -c` in `repo` (a fixture in the loopback registry) through
    /// `init`, and checks that nothing is left behind.
    fn run_in(&self, repo: &str, script: &str) -> Output {
        let out = Command::new(bin("init"))
            .arg("--boot-config")
            .arg(self.boot_config())
            .arg(format!("docker://{}/{repo}:latest", self.registry))
            .arg(script)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        self.assert_clean();
        out
    }
}

/// Prints the capability sets, tries the escapes, and lists every process the container can
/// see with what reading its memory, environment and root gives.
const PROBE: &str = r#"bb=/bin/busybox
$bb grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Seccomp|NoNewPrivs):' /proc/self/status
$bb grep -E '^(Cap(Prm|Eff|Bnd)|Seccomp|NoNewPrivs):' /proc/1/status | $bb sed 's/^/pid1-/'
$bb unshare -m true 2>&1; echo "unshare-m=$?"
$bb unshare -U true 2>&1; echo "unshare-U=$?"
$bb mkdir -p /tmp/mnt; $bb mount -t tmpfs none /tmp/mnt 2>&1; echo "mount=$?"
$bb nsenter -t 1 -m true 2>&1; echo "nsenter=$?"
# Writes the current value back: on a host where this works, nothing changes.
cat /proc/sys/kernel/core_pattern > /tmp/cp; (cat /tmp/cp > /proc/sys/kernel/core_pattern) 2>&1; echo "core_pattern=$?"
echo "kcore-bytes=$($bb head -c 64 /proc/kcore 2>/dev/null | wc -c)"
echo "timer_list-bytes=$(cat /proc/timer_list 2>/dev/null | wc -c)"
echo "firmware-entries=$(ls /sys/firmware 2>/dev/null | wc -l)"
echo "self=$$"
for p in $(ls -d /proc/[0-9]*); do
  [ -e $p/stat ] || continue
  read -r pid comm state ppid rest < $p/stat 2>/dev/null || continue
  mem=$(cat $p/mem 2>&1 >/dev/null | $bb head -n 1)
  environ=$(cat $p/environ 2>&1 >/dev/null | $bb head -n 1)
  root=$(ls $p/root/ 2>&1 >/dev/null | $bb head -n 1)
  cmd=$($bb tr '\0' ' ' < $p/cmdline)
  echo "proc|$pid|$ppid|$mem|$environ|$root|$cmd"
done
echo "mountinfo-start"
cat /proc/self/mountinfo
"#;

/// What the probe printed.
struct Probe {
    values: BTreeMap<String, String>,
    /// Processes: pid → (ppid, mem error, environ error, root error, cmdline).
    procs: BTreeMap<u32, [String; 5]>,
    mountinfo: String,
    stdout: String,
}

fn probe(out: &Output) -> Probe {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let (head, mountinfo) = stdout.split_once("mountinfo-start\n").unwrap();
    let mut values = BTreeMap::new();
    let mut procs = BTreeMap::new();
    for line in head.lines() {
        if let Some(rest) = line.strip_prefix("proc|") {
            let f: Vec<&str> = rest.splitn(6, '|').collect();
            procs.insert(
                f[0].parse().unwrap(),
                [f[1], f[2], f[3], f[4], f[5]].map(str::to_owned),
            );
        } else if let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(":\t")) {
            values.insert(k.to_owned(), v.to_owned());
        }
    }
    Probe {
        values,
        procs,
        mountinfo: mountinfo.to_owned(),
        stdout,
    }
}

impl Probe {
    fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing:\n{}", self.stdout))
    }

    /// The processes not started from the image: neither the entrypoint nor one of its
    /// descendants.
    fn not_from_image(&self) -> Vec<(u32, &[String; 5])> {
        let entry: u32 = self.get("self").parse().unwrap();
        let from_image = |mut pid: u32| loop {
            if pid == entry {
                return true;
            }
            match self.procs.get(&pid).and_then(|p| p[0].parse().ok()) {
                Some(ppid) if ppid != 0 && ppid != pid => pid = ppid,
                _ => return false,
            }
        };
        self.procs
            .iter()
            .filter(|(pid, _)| !from_image(**pid))
            .map(|(pid, p)| (*pid, p))
            .collect()
    }

    /// Mount points and their options, from the container's mountinfo.
    fn mounts(&self) -> BTreeMap<String, String> {
        self.mountinfo
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Some((f.get(4)?.to_string(), f.get(5)?.to_string()))
            })
            .collect()
    }
}

/// Asserts what holds for any image user: no escape through namespaces or mounts, the
/// seccomp profile's EPERM, and nothing of encc visible or readable.
fn assert_confined(p: &Probe) {
    let s = &p.stdout;
    // Seccomp mode 2 is a filter; the container's PID 1 is confined like the container.
    for (key, want) in [
        ("Seccomp", "2"),
        ("NoNewPrivs", "1"),
        ("pid1-Seccomp", "2"),
        ("pid1-NoNewPrivs", "1"),
        ("pid1-CapBnd", DOCKER_CAPS),
        ("pid1-CapEff", p.get("CapEff")),
        ("pid1-CapPrm", p.get("CapPrm")),
    ] {
        assert_eq!(p.get(key), want, "{key}:\n{s}");
    }
    // unshare(CLONE_NEWUSER) needs no capability: only the seccomp profile refuses it.
    assert_eq!(p.get("unshare-U"), "1", "{s}");
    assert!(
        s.contains("unshare: unshare(0x10000000): Operation not permitted"),
        "{s}"
    );
    assert_eq!(p.get("unshare-m"), "1", "{s}");
    assert!(
        s.contains("unshare: unshare(0x20000): Operation not permitted"),
        "{s}"
    );
    assert_ne!(p.get("mount"), "0", "{s}");
    assert_ne!(p.get("nsenter"), "0", "{s}");
    assert_ne!(p.get("core_pattern"), "0", "{s}");

    let init = bin("init").display().to_string();
    let others = p.not_from_image();
    for (pid, [_, mem, environ, root, cmd]) in &others {
        assert!(
            !cmd.contains("--boot-config") && !cmd.contains(&init) && !cmd.contains("fuse"),
            "encc's process {pid} ({cmd}) is visible:\n{s}"
        );
        for (what, err) in [("mem", mem), ("environ", environ), ("root", root)] {
            assert!(
                err.contains("Permission denied"),
                "/proc/{pid}/{what} of {cmd:?} is readable ({err:?}):\n{s}"
            );
        }
    }
    // The one process not from the image is the container's PID 1, the reaper.
    assert_eq!(
        others.iter().map(|(pid, _)| *pid).collect::<Vec<_>>(),
        [1],
        "{s}"
    );

    let mounts = p.mounts();
    for path in MASKED.iter().chain(&READ_ONLY) {
        // Paths this kernel does not have are skipped, as runc skips them.
        if Path::new(path).exists() {
            assert!(mounts.contains_key(*path), "{path} is not covered:\n{s}");
        }
    }
    for path in READ_ONLY {
        if Path::new(path).exists() {
            assert!(
                mounts[path].split(',').any(|o| o == "ro"),
                "{path} is writable:\n{s}"
            );
        }
    }
    assert_eq!(p.get("kcore-bytes"), "0", "{s}");
    assert_eq!(p.get("timer_list-bytes"), "0", "{s}");
    assert_eq!(p.get("firmware-entries"), "0", "{s}");
}

#[test]
fn image_root_gets_dockers_default_capabilities_and_no_way_out() {
    let Some(e) = env() else { return };
    let p = probe(&e.run_in("test/busybox-root", PROBE));
    let s = &p.stdout;
    for (set, want) in [
        ("CapEff", DOCKER_CAPS),
        ("CapPrm", DOCKER_CAPS),
        ("CapBnd", DOCKER_CAPS),
        ("CapInh", NO_CAPS),
        ("CapAmb", NO_CAPS),
    ] {
        assert_eq!(p.get(set), want, "{set}:\n{s}");
    }
    assert_confined(&p);
    assert!(
        s.contains("can't create /proc/sys/kernel/core_pattern: Read-only file system"),
        "{s}"
    );

    // ptrace of the container's PID 1 (the only process not from the image it can see) is
    // refused, while the image's own processes may trace each other, as with Docker.
    let out = e.run_in(
        "test/busybox-root",
        "/bin/ptrace-probe 1; /bin/ptrace-probe",
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0], "ptrace 1: Operation not permitted", "{stdout}");
    assert!(lines[1].ends_with(": ok"), "{stdout}");
}

#[test]
fn a_non_root_image_user_has_no_capabilities_and_no_way_out() {
    let Some(e) = env() else { return };
    let p = probe(&e.run_in("test/busybox", PROBE));
    let s = &p.stdout;
    for (set, want) in [
        ("CapEff", NO_CAPS),
        ("CapPrm", NO_CAPS),
        ("CapBnd", DOCKER_CAPS),
        ("CapInh", NO_CAPS),
        ("CapAmb", NO_CAPS),
    ] {
        assert_eq!(p.get(set), want, "{set}:\n{s}");
    }
    assert_confined(&p);
}

#[test]
fn the_container_pid_namespace_keeps_signals_exit_codes_and_reaping() {
    let Some(e) = env() else { return };
    // The entrypoint is not PID 1 (a reaper is), so it dies of signals it does not handle,
    // even SIGTERM sent from inside, and its status is reported exactly.
    for (script, code) in [
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
        ("exit 42", 42),
        ("kill -TERM 1; sleep 5; exit 9", 143),
    ] {
        let out = e.run_in("test/busybox-root", script);
        assert_eq!(out.status.code(), Some(code), "{script}: {}", text(&out).1);
    }
    // Orphans are reaped by the container's PID 1, and nothing outlives the entrypoint.
    let out = e.run_in(
        "test/busybox-root",
        "for i in 1 2 3; do (sleep 0.05 &); done; (exec sleep 4243.5 &); sleep 0.5; \
         ps -o stat | /bin/busybox grep -c Z || true",
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "0\n"),
        "{stderr}"
    );
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|d| std::fs::read(d.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains("4243.5"))
        .count();
    assert_eq!(left, 0, "a container process outlived the container");
}

#[test]
fn the_hosts_signals_reach_the_entrypoint_with_exact_statuses() {
    use std::os::fd::AsFd as _;
    let Some(e) = env() else { return };
    // Through the PAL calls, as a host launcher makes them: the pid the host gets is the
    // container's PID 1; a SIGTERM is forwarded to the entrypoint, a SIGKILL ends the
    // container at once; either way the status is the signal's.
    let enclave = encc_interface::host::Enclave::spawn(&bin("init")).unwrap();
    let image = format!("docker://{}/test/busybox-root:latest", e.registry);
    let ready = enclave.boot(&e.boot_config(), &image).unwrap();
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    for signal in [libc::SIGTERM, libc::SIGKILL, libc::SIGINT] {
        // A duration of its own, to find this sleep among the host's processes.
        let seconds = format!("{}", 1000 + signal);
        let argv = [ready.entry_program.clone(), format!("exec sleep {seconds}")];
        let pid = enclave
            .create_process(&ready.entry_program, &argv, &[], [null.as_fd(); 3])
            .unwrap();
        // Sent while the shell is still starting, a SIGINT was lost once on a loaded machine
        // (sleep ran out and exited 0; the shell's own handling of SIGINT before its exec is
        // the likely cause): send it once sleep runs.
        wait_for_process(&["sleep", seconds.as_str()]);
        enclave.kill(pid, signal).unwrap();
        let status = enclave.wait(pid).unwrap();
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == signal,
            "signal {signal}: wait status {status:#x}"
        );
    }
    enclave.destroy().unwrap();
    e.assert_clean();
}

/// Waits (up to 60 s) until a process of the host runs with exactly `argv`.
fn wait_for_process(argv: &[&str]) {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let found = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == wanted)
        });
        if found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no process {argv:?} started within 60 s");
}

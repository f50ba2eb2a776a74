//! Processes started by a test, as /proc shows them.

use std::process::Child;

/// `pid` and every process below it (ppid chains in /proc), children first.
pub fn process_tree(pid: u32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(n) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((n, ppid));
        }
    }
    let mut tree = vec![pid as i32];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(n, _)| *n),
        );
        i += 1;
    }
    tree.reverse();
    tree
}

/// One line per thread of `pid` and of every process below it: pid/tid, name, state, the
/// kernel function it sleeps in (`wchan`) and the command line.
pub fn describe_tree(pid: u32) -> String {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    for pid in process_tree(pid).into_iter().rev() {
        let cmdline = read(format!("/proc/{pid}/cmdline")).replace('\0', " ");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
            })
            .into_iter()
            .flatten();
        for tid in tasks {
            let task = format!("/proc/{pid}/task/{tid}");
            let status = read(format!("{task}/status"));
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            out.push_str(&format!(
                "  {pid}/{tid} {} {} wchan={} {}\n",
                field("Name:"),
                field("State:"),
                read(format!("{task}/wchan")),
                cmdline.trim()
            ));
        }
    }
    out
}

/// Kills `child` and everything it started (its enclave included) with SIGKILL.
pub fn kill_tree(child: &mut Child) {
    for pid in process_tree(child.id()) {
        // SAFETY: kill takes plain integers; these are processes this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    child.wait().unwrap();
}

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

/// Kills `child` and everything it started (its enclave included) with SIGKILL.
pub fn kill_tree(child: &mut Child) {
    for pid in process_tree(child.id()) {
        // SAFETY: kill takes plain integers; these are processes this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    child.wait().unwrap();
}

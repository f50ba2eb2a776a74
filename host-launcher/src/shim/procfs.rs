//! What the host can see of a container from /proc: the helper's process tree (the runner,
//! the enclave's processes, the container's), for Pids and Stats.

use std::collections::HashMap;

/// Host pids of `root` and every process descended from it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![root];
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = Stat::read(pid) {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&pid) = out.get(i) {
        if let Some(kids) = children.get(&pid) {
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// The few fields of /proc/PID/stat and statm the shim reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in bytes.
    pub rss: u64,
}

impl Stat {
    pub fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let mut stat = parse_stat(&text)?;
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) {
            let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            stat.rss = pages * 4096;
        }
        Some(stat)
    }
}

/// Fields after the `(comm)`, which may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
        rss: 0,
    })
}

/// Totals over a process tree: (processes, cpu nanoseconds, resident bytes).
pub fn totals(root: u32) -> (u64, u64, u64) {
    let pids = tree(root);
    let (mut ticks, mut rss) = (0u64, 0u64);
    for pid in &pids {
        if let Some(stat) = Stat::read(*pid) {
            ticks += stat.cpu_ticks;
            rss += stat.rss;
        }
    }
    // USER_HZ is 100 on Linux.
    (pids.len() as u64, ticks * 10_000_000, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let line = "42 (a b) c) S 7 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 7,
                cpu_ticks: 8,
                rss: 0
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_tree_holds_self() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(totals(me).0 >= 1);
    }
}

//! Occlum 0.30's system call table, from the committed fixture
//! `tests/fixtures/occlum/syscalls-occlum-v0.30.1.txt` (made from Occlum's
//! src/libos/src/syscall/mod.rs at tag v0.30.1 by make-syscall-table.sh).

use anyhow::{bail, Context as _, Result};

/// The fixture, compiled in so the filter and the check use the same pinned table.
const FIXTURE: &str = include_str!("../../../fixtures/occlum/syscalls-occlum-v0.30.1.txt");

/// Occlum's handler for numbers it lists but does not implement (answers ENOSYS).
const UNSUPPORTED: &str = "handle_unsupported";

/// MountRootFS, Occlum's own system call.
pub const SYS_MOUNT_ROOTFS: u32 = 363;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub nr: u32,
    pub name: String,
    pub implemented: bool,
}

/// The table.
#[derive(Debug)]
pub struct Table {
    entries: Vec<Entry>,
    /// The fixture's first line (tag and commit).
    pub source: String,
}

impl Table {
    /// The compiled-in fixture.
    pub fn occlum_0_30() -> Result<Self> {
        Self::parse(FIXTURE)
    }

    fn parse(text: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [nr, name, handler] = fields[..] else {
                bail!(
                    "syscall table line {}: {line:?} is not NUMBER NAME HANDLER",
                    i + 1
                );
            };
            entries.push(Entry {
                nr: nr
                    .parse()
                    .with_context(|| format!("syscall table line {}", i + 1))?,
                name: name.to_owned(),
                implemented: handler != UNSUPPORTED,
            });
        }
        if entries.len() < 300 {
            bail!("syscall table has only {} entries", entries.len());
        }
        let source = text.lines().next().unwrap_or_default().to_owned();
        Ok(Self { entries, source })
    }

    /// The row for `nr`, if Occlum lists it.
    pub fn get(&self, nr: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.nr == nr)
    }

    /// Whether Occlum implements `nr`.
    pub fn implemented(&self, nr: u32) -> bool {
        self.get(nr).is_some_and(|e| e.implemented)
    }

    /// Every number Occlum implements.
    pub fn implemented_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().filter(|e| e.implemented).map(|e| e.nr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_occlum_0_30_1() {
        let t = Table::occlum_0_30().unwrap();
        assert!(t.source.contains("v0.30.1"), "{}", t.source);
        assert!(t.implemented(0), "read");
        assert!(t.implemented(56), "clone");
        assert!(t.implemented(SYS_MOUNT_ROOTFS));
        assert_eq!(t.get(SYS_MOUNT_ROOTFS).unwrap().name, "MountRootFS");
        assert!(!t.implemented(57), "fork");
        assert!(t.get(57).is_some());
        assert!(!t.implemented(155), "pivot_root");
        assert!(!t.implemented(105), "setuid");
        assert!(t.get(435).is_none(), "clone3 is not in Occlum's table");
    }
}

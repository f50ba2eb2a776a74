//! What the enclave and the container's PID 1 tell each other over their socket: the
//! [`Plan`] (enclave to PID 1, then the enclave shuts its writing side) and [`Report`]s
//! (PID 1 to the enclave: started or failed, later the entrypoint's wait status).
//!
//! A plan is NUL-separated text (no field contains NUL: the caller checks); a report is a
//! tag byte and a little-endian `i32`, a failure followed by its message.

/// Everything PID 1 needs to set up the container and start its entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Working directory inside the root (already created).
    pub cwd: String,
    /// The image user.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
    /// The entrypoint's argv (not empty).
    pub argv: Vec<String>,
    /// Its environment, `NAME=value`.
    pub env: Vec<String>,
}

impl Plan {
    pub(super) fn encode(&self) -> Vec<u8> {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let mut fields = vec![
            self.cwd.clone(),
            self.uid.to_string(),
            self.gid.to_string(),
            groups.join(","),
            self.argv.len().to_string(),
        ];
        fields.extend(self.argv.iter().cloned());
        fields.extend(self.env.iter().cloned());
        let mut bytes = Vec::new();
        for field in fields {
            bytes.extend_from_slice(field.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    /// The plan in `bytes`, or None when they are not one.
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let body = bytes.strip_suffix(&[0])?;
        let mut fields = body
            .split(|b| *b == 0)
            .map(|f| String::from_utf8(f.to_vec()).ok());
        let mut next = || fields.next().flatten();
        let cwd = next()?;
        let uid = next()?.parse().ok()?;
        let gid = next()?.parse().ok()?;
        let groups = next()?;
        let groups = groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let argc: usize = next()?.parse().ok()?;
        let argv: Vec<String> = (0..argc).map(|_| next()).collect::<Option<_>>()?;
        let env: Vec<String> = std::iter::from_fn(next).collect();
        if argv.is_empty() {
            return None;
        }
        Some(Self {
            cwd,
            uid,
            gid,
            groups,
            argv,
            env,
        })
    }
}

/// What PID 1 reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    /// The entrypoint was executed.
    Started,
    /// Executing the entrypoint failed with this errno.
    ExecFailed(i32),
    /// Setting up the container failed (errno, what failed).
    SetupFailed(i32, String),
    /// The entrypoint ended with this wait(2) status.
    Exited(i32),
}

impl Report {
    /// Bytes of a report but a failure's text (which runs to the end of the stream).
    pub(super) const FIXED_LEN: usize = 5;

    pub(super) fn encode(&self) -> Vec<u8> {
        let (tag, value, text) = match self {
            Self::Started => (b'S', 0, ""),
            Self::ExecFailed(errno) => (b'E', *errno, ""),
            Self::SetupFailed(errno, text) => (b'F', *errno, text.as_str()),
            Self::Exited(status) => (b'X', *status, ""),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&value.to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    /// The report at the start of `bytes` (a failure's text runs to the end).
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        let value = i32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let text = rest.get(4..).unwrap_or_default();
        match tag {
            b'S' => Some(Self::Started),
            b'E' => Some(Self::ExecFailed(value)),
            b'F' => Some(Self::SetupFailed(
                value,
                String::from_utf8_lossy(text).into_owned(),
            )),
            b'X' => Some(Self::Exited(value)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_reports_round_trip() {
        let plan = Plan {
            cwd: "/home/user".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![2000, 3000],
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo a=b".into(),
                String::new(),
            ],
            env: vec!["PATH=/bin".into(), "EMPTY=".into()],
        };
        assert_eq!(Plan::decode(&plan.encode()), Some(plan.clone()));
        let bare = Plan {
            groups: Vec::new(),
            env: Vec::new(),
            ..plan
        };
        assert_eq!(Plan::decode(&bare.encode()), Some(bare));
        assert_eq!(Plan::decode(b"/\x000\x000\0\x000\0"), None, "no argv");
        assert_eq!(Plan::decode(b"/\0x\0"), None);
        for report in [
            Report::Started,
            Report::ExecFailed(libc::ENOENT),
            Report::SetupFailed(libc::EPERM, "cannot mount proc on /proc".into()),
            Report::Exited(0x8f),
        ] {
            assert_eq!(Report::decode(&report.encode()), Some(report));
        }
        assert_eq!(Report::decode(b"S\0\0"), None);
    }
}

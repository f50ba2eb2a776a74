//! Resolving an image's `User` (`uid`, `uid:gid`, `name`, `name:group`, `uid:group`,
//! `name:gid`) through the image's own `/etc/passwd` and `/etc/group`, with supplementary
//! groups, the way runc and docker do.

/// Resolved credentials of the container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (from `/etc/group` membership), without the primary group.
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` when unknown), for `HOME`.
    pub home: String,
}

/// Why a `User` cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// A user name that `/etc/passwd` does not list.
    #[error("no user {0:?} in the image's /etc/passwd")]
    NoUser(String),
    /// A group name that `/etc/group` does not list.
    #[error("no group {0:?} in the image's /etc/group")]
    NoGroup(String),
    /// An empty user or group part.
    #[error("invalid User {0:?}")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `user` (the image config's `User`; empty means root) against the contents of
/// the image's `/etc/passwd` and `/etc/group` (empty when the image has none).
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<Credentials, UserError> {
    let user = user.trim();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if group_part == Some("") || (user_part.is_empty() && group_part.is_some()) {
        return Err(UserError::Invalid(user.to_owned()));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::NoUser(user_part.to_owned()))?,
        ),
    };
    let uid = match (&entry, user_part.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => return Err(UserError::NoUser(user_part.to_owned())),
    };
    let (gid, supplementary) = match group_part {
        Some(g) => {
            // An explicit group replaces the passwd group and the supplementary groups.
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| UserError::NoGroup(g.to_owned()))?,
            };
            (gid, Vec::new())
        }
        None => {
            let gid = entry.as_ref().map_or(0, |e| e.gid);
            let mut groups: Vec<u32> = match &entry {
                Some(e) => group_entries(group)
                    .filter(|g| g.members.contains(&e.name) && g.gid != gid)
                    .map(|g| g.gid)
                    .collect(),
                None => Vec::new(),
            };
            groups.sort_unstable();
            groups.dedup();
            (gid, groups)
        }
    };
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_owned();
    Ok(Credentials {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nuser:x:1000:1000:User:/home/user:/bin/sh\nbroken line\nnobody:x:65534:65534::/:/bin/false\n";
    const GROUP: &str =
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user,other\nwheel:x:10:user\nnogroup:x:65534:\n";

    fn creds(uid: u32, gid: u32, groups: &[u32], home: &str) -> Credentials {
        Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn empty_user_is_root() {
        assert_eq!(
            resolve_user("", PASSWD, GROUP).unwrap(),
            creds(0, 0, &[], "/root")
        );
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        assert_eq!(
            resolve_user("user", PASSWD, GROUP).unwrap(),
            creds(1000, 1000, &[10, 2000], "/home/user")
        );
    }

    #[test]
    fn numeric_uid_uses_passwd_when_listed_and_root_group_otherwise() {
        assert_eq!(
            resolve_user("1000", PASSWD, GROUP).unwrap(),
            creds(1000, 1000, &[10, 2000], "/home/user")
        );
        assert_eq!(
            resolve_user("4242", PASSWD, GROUP).unwrap(),
            creds(4242, 0, &[], "/")
        );
    }

    #[test]
    fn explicit_group_replaces_supplementary_groups() {
        assert_eq!(
            resolve_user("user:extra", PASSWD, GROUP).unwrap(),
            creds(1000, 2000, &[], "/home/user")
        );
        assert_eq!(
            resolve_user("4242:77", "", "").unwrap(),
            creds(4242, 77, &[], "/")
        );
    }

    #[test]
    fn unknown_names_and_malformed_specs_are_errors() {
        assert_eq!(
            resolve_user("ghost", PASSWD, GROUP),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve_user("user:ghosts", PASSWD, GROUP),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert!(matches!(
            resolve_user("user:", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
        assert!(matches!(
            resolve_user(":1", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
    }
}

//! Who may ask what over the socket.
//!
//! The kernel tells the daemon who is at the other end of each connection (SO_PEERCRED: uid,
//! gid, pid); that, not anything the client says, decides its [`Role`]:
//! - root, the daemon's own user and members of `[daemon.access] admin_group`: [`Role::Admin`],
//!   everything;
//! - members of `ban_group` (default `netban`): [`Role::Ban`], ban and unban under a named
//!   source — not every source of an address at once, not reload, sync or plan (which contact
//!   devices and clouds);
//! - everyone else: [`Role::Read`], ping, list, status and history.
//!
//! Group membership is the caller's primary group and its supplementary groups (read from
//! `/proc/<pid>/status` at connect time); group names are resolved in `/etc/group` when the
//! daemon starts.

use netban_config::AccessSection;
use netban_proto::Request;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Ban,
    Admin,
}

/// Who called, as the kernel says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
    pub role: Role,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

/// The access rules, with group names resolved to ids.
#[derive(Clone, Debug)]
pub struct Access {
    own_uid: u32,
    admin_gid: Option<u32>,
    ban_gid: Option<u32>,
}

impl Access {
    /// Resolves the configured groups in `/etc/group`. A configured group that does not exist
    /// grants nothing (and is logged): refusing to start would lock root out of its own
    /// daemon for a typo in a group name.
    pub fn new(section: &AccessSection, own_uid: u32) -> Access {
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let resolve = |name: &Option<String>| {
            let name = name.as_deref()?;
            let gid = group_id(&groups, name);
            if gid.is_none() {
                tracing::warn!(group = name, "access group not found in /etc/group");
            }
            gid
        };
        Access {
            own_uid,
            admin_gid: resolve(&section.admin_group),
            ban_gid: resolve(&section.ban_group),
        }
    }

    /// The role of a caller with this uid, primary gid and supplementary groups.
    pub fn role(&self, uid: u32, gid: u32, supplementary: &[u32]) -> Role {
        let member =
            |wanted: Option<u32>| wanted.is_some_and(|g| g == gid || supplementary.contains(&g));
        if self.is_superuser(uid) || member(self.admin_gid) {
            Role::Admin
        } else if member(self.ban_gid) {
            Role::Ban
        } else {
            Role::Read
        }
    }

    /// Whether `uid` is an administrator whatever its groups (root or the daemon's user).
    pub fn is_superuser(&self, uid: u32) -> bool {
        uid == 0 || uid == self.own_uid
    }

    /// The caller at the other end of a connection with these credentials (reads its
    /// groups in `/proc` unless it is a superuser).
    pub fn caller(&self, cred: &tokio::net::unix::UCred) -> Caller {
        let role = if self.is_superuser(cred.uid()) {
            Role::Admin
        } else {
            let supplementary = cred.pid().map(supplementary_groups).unwrap_or_default();
            self.role(cred.uid(), cred.gid(), &supplementary)
        };
        Caller {
            uid: cred.uid(),
            pid: cred.pid(),
            role,
        }
    }
}

/// Why a request was refused to its caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("permission denied: {what} needs the {needs} role; {caller} has {has}")]
pub struct Denied {
    what: &'static str,
    needs: &'static str,
    has: &'static str,
    caller: String,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Ban => "ban",
            Role::Admin => "admin",
        }
    }

    /// The least role `request` needs, and what to call it in a refusal.
    fn needed_for(request: &Request) -> (Role, &'static str) {
        match request {
            Request::Ping | Request::List { .. } | Request::Status | Request::History { .. } => {
                (Role::Read, "reading")
            }
            Request::Ban(_) => (Role::Ban, "banning"),
            Request::Unban(args) if args.source.is_some() && !args.all_of_source => {
                (Role::Ban, "unbanning")
            }
            Request::Unban(_) => (Role::Admin, "unbanning every source or every address"),
            Request::Plan { .. } => (Role::Admin, "planning"),
            Request::Sync { .. } => (Role::Admin, "syncing"),
            Request::Reload => (Role::Admin, "reloading"),
        }
    }
}

impl Caller {
    /// Whether this caller may make `request`.
    pub fn permits(&self, request: &Request) -> Result<(), Denied> {
        self.role.permits(request, || self.to_string())
    }
}

impl Role {
    /// Whether this role may make `request`; `who` names the caller in a refusal (the HTTP
    /// API's tokens have roles of the same names and the same rules).
    pub fn permits(self, request: &Request, who: impl FnOnce() -> String) -> Result<(), Denied> {
        let (needs, what) = Role::needed_for(request);
        if self >= needs {
            Ok(())
        } else {
            Err(Denied {
                what,
                needs: needs.name(),
                has: self.name(),
                caller: who(),
            })
        }
    }
}

/// The gid of group `name` in an `/etc/group` text.
fn group_id(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// The supplementary groups of process `pid` (empty when it is gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix("Groups:").map(|g| {
                    g.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netban_core::{BanDuration, Prefix, Source};
    use netban_proto::{BanArgs, UnbanArgs};

    const GROUPS: &str = "root:x:0:\nadm:x:4:syslog\nnetban:x:990:fail2ban\nops:x:1200:\n";

    fn access() -> Access {
        Access {
            own_uid: 995,
            admin_gid: group_id(GROUPS, "ops"),
            ban_gid: group_id(GROUPS, "netban"),
        }
    }

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller {
            uid,
            pid: Some(42),
            role: access().role(uid, gid, groups),
        }
    }

    fn ban() -> Request {
        Request::Ban(BanArgs {
            prefixes: vec!["203.0.113.7".parse::<Prefix>().unwrap()],
            source: Source::new("sshd").unwrap(),
            duration: BanDuration::Seconds(60),
            reason: None,
            failures: None,
            origin_host: None,
            restored: false,
        })
    }

    fn unban(source: Option<&str>, all_of_source: bool) -> Request {
        Request::Unban(UnbanArgs {
            prefixes: if all_of_source {
                vec![]
            } else {
                vec!["203.0.113.7".parse().unwrap()]
            },
            source: source.map(|s| Source::new(s).unwrap()),
            origin_host: None,
            all_of_source,
        })
    }

    #[test]
    fn group_ids_are_read_from_etc_group() {
        assert_eq!(group_id(GROUPS, "netban"), Some(990));
        assert_eq!(group_id(GROUPS, "adm"), Some(4));
        assert_eq!(group_id(GROUPS, "netba"), None);
    }

    #[test]
    fn roles_come_from_uid_and_groups() {
        assert_eq!(caller(0, 0, &[]).role, Role::Admin);
        assert_eq!(
            caller(995, 995, &[]).role,
            Role::Admin,
            "the daemon's own user"
        );
        assert_eq!(caller(1000, 1000, &[1200]).role, Role::Admin);
        assert_eq!(caller(1000, 990, &[]).role, Role::Ban, "primary group");
        assert_eq!(caller(1000, 1000, &[4, 990]).role, Role::Ban);
        assert_eq!(caller(1000, 1000, &[4]).role, Role::Read);
    }

    #[test]
    fn each_role_may_do_what_it_should_and_no_more() {
        let reader = caller(1000, 1000, &[]);
        let banner = caller(1000, 990, &[]);
        let admin = caller(0, 0, &[]);
        for read in [
            Request::Ping,
            Request::Status,
            Request::List { prefix: None },
            Request::History {
                prefix: "203.0.113.7".parse().unwrap(),
                limit: 10,
            },
        ] {
            assert!(reader.permits(&read).is_ok(), "{read:?}");
        }
        let denied = reader.permits(&ban()).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "permission denied: banning needs the ban role; uid 1000 pid 42 has read"
        );
        assert!(banner.permits(&ban()).is_ok());
        assert!(banner.permits(&unban(Some("sshd"), false)).is_ok());
        for admin_only in [
            unban(None, false),
            unban(Some("sshd"), true),
            Request::Reload,
            Request::Sync { target: None },
            Request::Plan { target: None },
        ] {
            assert!(banner.permits(&admin_only).is_err(), "{admin_only:?}");
            assert!(admin.permits(&admin_only).is_ok(), "{admin_only:?}");
        }
    }
}

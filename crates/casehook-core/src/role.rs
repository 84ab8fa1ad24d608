//! API key roles and what each may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role an API key carries. Roles are ordered: `admin` can do everything `member` can,
/// and `member` everything `read` can.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Post to one inbound hook (`/in/…`) and nothing else: the key names its hook.
    Inbound,
    /// Read anything in the workspace.
    Read,
    /// Read, and create and change cases and events.
    Member,
    /// Everything, including forms, keys, workspaces and integrations.
    Admin,
}

impl Role {
    /// Whether a key with this role may perform an action that requires `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inbound => "inbound",
            Role::Read => "read",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "inbound" => Ok(Role::Inbound),
            other => Err(format!(
                "unknown role `{other}` (expected admin, member, read or inbound)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Member));
        assert!(Role::Member.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Member));
        assert!(!Role::Member.allows(Role::Admin));
        assert!(
            !Role::Inbound.allows(Role::Read),
            "an inbound key reads nothing"
        );
    }

    #[test]
    fn roles_round_trip_through_text() {
        for r in [Role::Read, Role::Member, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("owner".parse::<Role>().is_err());
    }
}

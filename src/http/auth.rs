//! Who may call what: HTTP Basic credentials checked by a [`ManagementAuth`], then RabbitMQ's
//! management tag rules as one pure function, [`authorize`].

use base64::Engine;

use super::error::ApiError;

/// An authenticated user as the management API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    /// RabbitMQ user tags: `administrator`, `monitoring`, `policymaker`, `management`, others ignored.
    pub tags: Vec<String>,
    /// The vhosts this user has any permission on (what RabbitMQ calls its login vhosts).
    pub vhosts: Vec<String>,
}

impl UserInfo {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }
    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }
    pub fn is_management(&self) -> bool {
        self.is_monitor() || self.is_policymaker() || self.has("management")
    }
    pub fn can_access_vhost(&self, vhost: &str) -> bool {
        self.vhosts.iter().any(|v| v == vhost)
    }
}

/// Checks credentials against the broker's users. Implementations compare secrets in constant time
/// and never log the password.
pub trait ManagementAuth: Send + Sync + 'static {
    /// The user when the password is right, `None` for an unknown user, a wrong password, or a
    /// loopback-only user (`guest`) calling from `peer` elsewhere than this machine (`None`: a
    /// caller without a socket address, who counts as remote).
    fn authenticate(
        &self,
        username: &str,
        password: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Option<UserInfo>;
}

/// What an endpoint needs from its caller, one variant per class of RabbitMQ's `is_authorized_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Any management user (overview, whoami, cluster-name, health checks, lists filtered per user).
    Management,
    /// `monitoring` or `administrator` (nodes).
    Monitor,
    /// `administrator` (users, permissions, vhost create/delete, definitions, cluster-name PUT).
    Administrator,
    /// Objects in a vhost: the caller needs a permission on it (tags do not bypass this, as in RabbitMQ).
    Vhost(&'a str),
    /// Policy writes: `administrator`, or `policymaker` with access to the vhost.
    Policies(&'a str),
    /// Runtime parameters across vhosts (global parameters, the parameters list):
    /// `administrator` or `policymaker`.
    Parameters,
    /// A connection or channel of `owner`: the owner; for reads also `monitoring`, for DELETE
    /// also `administrator`.
    Owned { owner: &'a str, write: bool },
}

/// RabbitMQ management's tag rules. A user with no management tag is refused everything.
pub fn authorize(user: &UserInfo, access: Access<'_>) -> Result<(), ApiError> {
    if !user.is_management() {
        return Err(ApiError::not_authorised("Not management user"));
    }
    let (allowed, reason) = match access {
        Access::Management => (true, ""),
        Access::Monitor => (user.is_monitor(), "Not monitor user"),
        Access::Administrator => (user.is_admin(), "Not administrator user"),
        Access::Vhost(vhost) => (
            user.can_access_vhost(vhost),
            "User not authorised to access virtual host",
        ),
        Access::Policies(vhost) => (
            user.is_admin() || (user.is_policymaker() && user.can_access_vhost(vhost)),
            "User not authorised to access object",
        ),
        Access::Parameters => (
            user.is_policymaker(),
            "User not authorised to access object",
        ),
        Access::Owned { owner, write } => (
            owner == user.name
                || if write {
                    user.is_admin()
                } else {
                    user.is_monitor()
                },
            "User not authorised to access object",
        ),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::not_authorised(reason))
    }
}

/// Decodes an `Authorization: Basic …` header into (user, password). Any other scheme, bad base64 or
/// a missing colon is a failed login.
pub fn basic_credentials(header: &str) -> Result<(String, String), ApiError> {
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(ApiError::LoginFailed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::LoginFailed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ApiError::LoginFailed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::LoginFailed)?;
    let (user, password) = decoded.split_once(':').ok_or(ApiError::LoginFailed)?;
    Ok((user.to_string(), password.to_string()))
}

/// Authenticates a request's `Authorization` header value: 401 without one (empty body, as RabbitMQ),
/// 401 `Login failed` with wrong ones, 401 `Not management user` without a management tag.
pub fn authenticate(
    auth: &dyn ManagementAuth,
    header: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> Result<UserInfo, ApiError> {
    let header = header.ok_or(ApiError::NoCredentials)?;
    let (user, password) = basic_credentials(header)?;
    let info = auth
        .authenticate(&user, &password, peer)
        .ok_or(ApiError::LoginFailed)?;
    authorize(&info, Access::Management)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(tags: &[&str]) -> UserInfo {
        UserInfo {
            name: "u".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            vhosts: vec!["/".into()],
        }
    }

    fn allowed(tags: &[&str], access: Access<'_>) -> bool {
        authorize(&user(tags), access).is_ok()
    }

    #[test]
    fn no_management_tag_is_refused_everything() {
        for tags in [&[][..], &["impersonator"][..]] {
            for access in [
                Access::Management,
                Access::Vhost("/"),
                Access::Owned {
                    owner: "u",
                    write: false,
                },
            ] {
                assert_eq!(
                    authorize(&user(tags), access),
                    Err(ApiError::not_authorised("Not management user"))
                );
            }
        }
    }

    #[test]
    fn tag_rules_per_endpoint_class() {
        // (tags, Management, Monitor, Administrator, Policies(/), Policies(other))
        let table: &[(&[&str], [bool; 5])] = &[
            (&["management"], [true, false, false, false, false]),
            (&["policymaker"], [true, false, false, true, false]),
            (&["monitoring"], [true, true, false, false, false]),
            (&["administrator"], [true, true, true, true, true]),
            (
                &["management", "monitoring"],
                [true, true, false, false, false],
            ),
        ];
        for (tags, expected) in table {
            let got = [
                allowed(tags, Access::Management),
                allowed(tags, Access::Monitor),
                allowed(tags, Access::Administrator),
                allowed(tags, Access::Policies("/")),
                allowed(tags, Access::Policies("other")),
            ];
            assert_eq!(&got, expected, "{tags:?}");
        }
        assert_eq!(
            authorize(&user(&["management"]), Access::Monitor),
            Err(ApiError::not_authorised("Not monitor user"))
        );
        assert_eq!(
            authorize(&user(&["monitoring"]), Access::Administrator),
            Err(ApiError::not_authorised("Not administrator user"))
        );
    }

    #[test]
    fn vhost_access_needs_a_permission_whatever_the_tags() {
        for tags in [&["management"][..], &["monitoring"], &["administrator"]] {
            assert!(allowed(tags, Access::Vhost("/")));
            assert_eq!(
                authorize(&user(tags), Access::Vhost("test/vh")),
                Err(ApiError::not_authorised(
                    "User not authorised to access virtual host"
                ))
            );
        }
    }

    #[test]
    fn connections_are_their_owners_and_monitors_read_admins_close() {
        let other = |write| Access::Owned {
            owner: "someone",
            write,
        };
        let own = |write| Access::Owned { owner: "u", write };
        assert!(allowed(&["management"], own(true)));
        assert!(!allowed(&["management"], other(false)));
        assert!(allowed(&["monitoring"], other(false)));
        assert!(!allowed(&["monitoring"], other(true)));
        assert!(allowed(&["administrator"], other(true)));
    }

    #[test]
    fn basic_header_parsing() {
        // "guest:guest", and a password containing a colon.
        assert_eq!(
            basic_credentials("Basic Z3Vlc3Q6Z3Vlc3Q=").unwrap(),
            ("guest".into(), "guest".into())
        );
        assert_eq!(
            basic_credentials("basic dTpwOnE=").unwrap(),
            ("u".into(), "p:q".into())
        );
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic Z3Vlc3Q="] {
            assert_eq!(basic_credentials(bad), Err(ApiError::LoginFailed), "{bad}");
        }
    }
}

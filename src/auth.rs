//! Users, passwords and the SASL mechanisms of connection.start-ok (PLAIN and AMQPLAIN).

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use warren_protocol::{decode_field_table, FieldValue};

/// The mechanisms offered in connection.start, in RabbitMQ's order.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

/// A user: salted SHA-256 of the password (RabbitMQ's default hashing scheme) and its rights.
struct User {
    salt: [u8; 4],
    password_hash: [u8; 32],
    loopback_only: bool,
}

/// Why a login was refused (never told to the client in detail, as RabbitMQ does).
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Mechanism not offered.
    UnknownMechanism(String),
    /// The SASL response could not be parsed.
    MalformedResponse,
    /// Unknown user or wrong password.
    InvalidCredentials(String),
    /// The user may only connect from loopback.
    LoopbackOnly(String),
}

/// In RabbitMQ's words, for the log (the client only hears "Login was refused"). Names the
/// client sent are escaped: a user name with a newline cannot forge a log line.
impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::UnknownMechanism(m) => {
                let m = crate::logging::log_safe(m);
                write!(f, "unsupported authentication mechanism '{m}'")
            }
            AuthError::MalformedResponse => f.write_str("malformed SASL response"),
            AuthError::InvalidCredentials(user) => {
                write!(
                    f,
                    "user '{}' - invalid credentials",
                    crate::logging::log_safe(user)
                )
            }
            AuthError::LoopbackOnly(user) => {
                write!(f, "user '{user}' can only connect via localhost")
            }
        }
    }
}

/// The user database.
#[derive(Default)]
pub struct Users {
    users: DashMap<String, User>,
}

fn hash(salt: &[u8; 4], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

impl Users {
    /// Adds or replaces a user.
    pub fn add(&self, name: &str, password: &str, loopback_only: bool) {
        let salt: [u8; 4] = rand::random();
        let password_hash = hash(&salt, password.as_bytes());
        self.users.insert(
            name.to_owned(),
            User {
                salt,
                password_hash,
                loopback_only,
            },
        );
    }

    /// Checks a connection.start-ok response; returns the user name.
    pub fn authenticate(
        &self,
        mechanism: &str,
        response: &Bytes,
        peer: IpAddr,
    ) -> Result<String, AuthError> {
        let (name, password) = match mechanism {
            "PLAIN" => parse_plain(response)?,
            "AMQPLAIN" => parse_amqplain(response)?,
            other => return Err(AuthError::UnknownMechanism(other.to_owned())),
        };
        let user = self
            .users
            .get(&name)
            .ok_or_else(|| AuthError::InvalidCredentials(name.clone()))?;
        if hash(&user.salt, password.as_bytes()) != user.password_hash {
            return Err(AuthError::InvalidCredentials(name));
        }
        if user.loopback_only && !peer.is_loopback() {
            return Err(AuthError::LoopbackOnly(name));
        }
        Ok(name)
    }
}

/// PLAIN (RFC 4616): `authzid \0 authcid \0 password`.
fn parse_plain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut parts = response.split(|b| *b == 0);
    let (_authzid, user, pass) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err(AuthError::MalformedResponse),
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| AuthError::MalformedResponse);
    Ok((text(user)?, text(pass)?))
}

/// AMQPLAIN: a field table with LOGIN and PASSWORD, written without its 4-byte size.
fn parse_amqplain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut framed = BytesMut::with_capacity(response.len() + 4);
    framed.put_u32(u32::try_from(response.len()).map_err(|_| AuthError::MalformedResponse)?);
    framed.put_slice(response);
    let table = decode_field_table(&framed.freeze()).map_err(|_| AuthError::MalformedResponse)?;
    let field = |key: &str| match table.get(key) {
        Some(FieldValue::LongStr(b)) => {
            String::from_utf8(b.to_vec()).map_err(|_| AuthError::MalformedResponse)
        }
        _ => Err(AuthError::MalformedResponse),
    };
    Ok((field("LOGIN")?, field("PASSWORD")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn users() -> Users {
        let users = Users::default();
        users.add("guest", "guest", true);
        users
    }

    #[test]
    fn plain_login() {
        let ok = users().authenticate("PLAIN", &Bytes::from_static(b"\0guest\0guest"), LOOPBACK);
        assert_eq!(ok, Ok("guest".to_owned()));
        let bad = users().authenticate("PLAIN", &Bytes::from_static(b"\0guest\0nope"), LOOPBACK);
        assert_eq!(bad, Err(AuthError::InvalidCredentials("guest".into())));
    }

    #[test]
    fn guest_only_from_loopback() {
        let err = users().authenticate("PLAIN", &Bytes::from_static(b"\0guest\0guest"), REMOTE);
        assert_eq!(err, Err(AuthError::LoopbackOnly("guest".into())));
    }

    #[test]
    fn amqplain_login() {
        // LOGIN S "guest", PASSWORD S "guest", without the table's size prefix.
        let mut r = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "guest")] {
            r.push(k.len() as u8);
            r.extend_from_slice(k.as_bytes());
            r.push(b'S');
            r.extend_from_slice(&(v.len() as u32).to_be_bytes());
            r.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            users().authenticate("AMQPLAIN", &Bytes::from(r), LOOPBACK),
            Ok("guest".into())
        );
    }

    #[test]
    fn malformed_responses() {
        let u = users();
        assert_eq!(
            u.authenticate("PLAIN", &Bytes::from_static(b"guest"), LOOPBACK),
            Err(AuthError::MalformedResponse)
        );
        assert_eq!(
            u.authenticate("AMQPLAIN", &Bytes::from_static(b"\x05LOG"), LOOPBACK),
            Err(AuthError::MalformedResponse)
        );
        assert!(matches!(
            u.authenticate("EXTERNAL", &Bytes::new(), LOOPBACK),
            Err(AuthError::UnknownMechanism(_))
        ));
    }
}

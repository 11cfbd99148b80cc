//! SASL mechanisms of connection.start/start-ok: PLAIN (RFC 4616), AMQPLAIN (a field table) and
//! EXTERNAL (the name comes from a verified TLS client certificate, as RabbitMQ's
//! `rabbit_auth_mechanism_ssl`). Parsing only: whether the user may log in is `access_control`'s.

use super::error::AuthError;
use bytes::{BufMut, BytesMut};
use warren_protocol::{decode_field_table, FieldValue};

/// Mechanisms offered on a plaintext connection or without a verified client certificate.
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";
/// Mechanisms offered when the peer presented a certificate that was verified.
pub const MECHANISMS_WITH_EXTERNAL: &str = "PLAIN AMQPLAIN EXTERNAL";

/// The `mechanisms` field of connection.start: EXTERNAL only when there is a verified peer
/// certificate (RabbitMQ's `should_offer/1` asks the socket for a peer certificate).
pub fn offered_mechanisms(has_verified_peer_certificate: bool) -> &'static str {
    if has_verified_peer_certificate {
        MECHANISMS_WITH_EXTERNAL
    } else {
        MECHANISMS
    }
}

/// What a start-ok response claims.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A name and a password (PLAIN, AMQPLAIN).
    Password {
        /// Login name.
        username: String,
        /// Cleartext password: compared, never stored or logged.
        password: String,
    },
    /// EXTERNAL: the name taken from the peer certificate.
    External {
        /// Login name.
        username: String,
    },
}

/// Reads a start-ok response. `peer_identity` is the user name derived from the connection's
/// verified client certificate (see `crate::tls::PeerIdentity`), `None` without one.
pub fn parse_response(
    mechanism: &str,
    response: &[u8],
    peer_identity: Option<&str>,
) -> Result<Credentials, AuthError> {
    match mechanism {
        "PLAIN" => parse_plain(response),
        "AMQPLAIN" => parse_amqplain(response),
        "EXTERNAL" => external(peer_identity),
        other => Err(AuthError::UnknownMechanism(other.to_owned())),
    }
}

/// EXTERNAL ignores the response (RabbitMQ's `handle_response/2` does too: the client may send
/// an authorization id, but the certificate decides).
fn external(peer_identity: Option<&str>) -> Result<Credentials, AuthError> {
    match peer_identity {
        Some(name) => Ok(Credentials::External {
            username: name.to_owned(),
        }),
        None => Err(AuthError::NoPeerCertificate),
    }
}

/// PLAIN (RFC 4616): `authzid \0 authcid \0 password`.
fn parse_plain(response: &[u8]) -> Result<Credentials, AuthError> {
    let mut parts = response.split(|b| *b == 0);
    let (_authzid, user, pass) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err(AuthError::MalformedResponse),
    };
    Ok(Credentials::Password {
        username: text(user)?,
        password: text(pass)?,
    })
}

fn text(bytes: &[u8]) -> Result<String, AuthError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| AuthError::MalformedResponse)
}

/// AMQPLAIN: a field table with LOGIN and PASSWORD, written without its 4-byte size.
fn parse_amqplain(response: &[u8]) -> Result<Credentials, AuthError> {
    let mut framed = BytesMut::with_capacity(response.len() + 4);
    framed.put_u32(u32::try_from(response.len()).map_err(|_| AuthError::MalformedResponse)?);
    framed.put_slice(response);
    let table = decode_field_table(&framed.freeze()).map_err(|_| AuthError::MalformedResponse)?;
    let field = |key: &str| match table.get(key) {
        Some(FieldValue::LongStr(b)) => text(b),
        _ => Err(AuthError::MalformedResponse),
    };
    Ok(Credentials::Password {
        username: field("LOGIN")?,
        password: field("PASSWORD")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(u: &str, p: &str) -> Credentials {
        Credentials::Password {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn plain_and_amqplain_parse() {
        assert_eq!(
            parse_response("PLAIN", b"\0guest\0guest", None),
            Ok(password("guest", "guest"))
        );
        let mut r = Vec::new();
        for (k, v) in [("LOGIN", "bob"), ("PASSWORD", "pw")] {
            r.push(k.len() as u8);
            r.extend_from_slice(k.as_bytes());
            r.push(b'S');
            r.extend_from_slice(&(v.len() as u32).to_be_bytes());
            r.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            parse_response("AMQPLAIN", &r, None),
            Ok(password("bob", "pw"))
        );
    }

    #[test]
    fn malformed_responses_are_refused() {
        assert_eq!(
            parse_response("PLAIN", b"guest", None),
            Err(AuthError::MalformedResponse)
        );
        assert_eq!(
            parse_response("PLAIN", b"\0a\0b\0c", None),
            Err(AuthError::MalformedResponse)
        );
        assert_eq!(
            parse_response("PLAIN", b"\0\xff\0x", None),
            Err(AuthError::MalformedResponse)
        );
        assert_eq!(
            parse_response("AMQPLAIN", b"\x05LOG", None),
            Err(AuthError::MalformedResponse)
        );
        assert_eq!(
            parse_response("CRAM-MD5", b"", None),
            Err(AuthError::UnknownMechanism("CRAM-MD5".into()))
        );
    }

    #[test]
    fn external_needs_a_verified_certificate_and_ignores_the_response() {
        assert_eq!(
            parse_response("EXTERNAL", b"someone-else", Some("app-1")),
            Ok(Credentials::External {
                username: "app-1".into()
            })
        );
        assert_eq!(
            parse_response("EXTERNAL", b"", None),
            Err(AuthError::NoPeerCertificate)
        );
        assert_eq!(offered_mechanisms(false), "PLAIN AMQPLAIN");
        assert!(offered_mechanisms(true).split(' ').any(|m| m == "EXTERNAL"));
    }
}

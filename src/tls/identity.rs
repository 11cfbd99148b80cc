//! The user name a verified client certificate stands for, as RabbitMQ's `ssl_cert_login_from`:
//! the subject's common name (several CNs joined with `,`, as `rabbit_ssl:peer_cert_auth_name/2`)
//! or the whole subject in RabbitMQ's RFC 4514 form (`rabbit_cert_info:subject/1`: RDNs last
//! first, `+` inside a multi-valued RDN, its attribute names and escaping).

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::x509::AttributeTypeAndValue;

/// Which part of the certificate is the user name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertLoginFrom {
    /// The subject's CN (`common_name`).
    #[default]
    CommonName,
    /// The full subject DN (`distinguished_name`), e.g. `CN=app,O=Acme,C=US`.
    DistinguishedName,
}

impl CertLoginFrom {
    /// Parses the configuration value (`common_name` or `distinguished_name`).
    pub fn try_from_name(name: &str) -> Option<Self> {
        match name {
            "common_name" => Some(CertLoginFrom::CommonName),
            "distinguished_name" => Some(CertLoginFrom::DistinguishedName),
            _ => None,
        }
    }
}

/// The user name of a peer's chain (leaf first); `None` when there is no certificate, it does
/// not parse, or it has no CN in `CommonName` mode (EXTERNAL is then refused).
pub fn peer_identity(chain: &[CertificateDer<'_>], from: CertLoginFrom) -> Option<String> {
    let leaf = chain.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    match from {
        CertLoginFrom::CommonName => {
            let names: Vec<String> = subject.iter_common_name().map(attribute_text).collect();
            (!names.is_empty()).then(|| names.join(","))
        }
        CertLoginFrom::DistinguishedName => Some(distinguished_name(subject)),
    }
}

fn distinguished_name(subject: &X509Name<'_>) -> String {
    let rdns: Vec<String> = subject
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| format!("{}={}", attribute_name(atv), escape(&attribute_text(atv))))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute_text(atv: &AttributeTypeAndValue<'_>) -> String {
    match atv.as_str() {
        Ok(text) => text.to_owned(),
        Err(_) => {
            let hex: String = atv.as_slice().iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        }
    }
}

/// RabbitMQ's short names; anything else is written as its dotted OID (RFC 4514 §2.3).
fn attribute_name(atv: &AttributeTypeAndValue<'_>) -> String {
    let oid = atv.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return oid,
    };
    short.to_owned()
}

/// `rabbit_cert_info:escape_rdn_value/2`: a leading space or `#` and a trailing space are
/// escaped, so are `" + , ; < > \`, and every byte below 32 or from 126 up as `\XX` (so
/// non-ASCII text appears as its escaped UTF-8 bytes).
fn escape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (i, &c) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        let leading = first && (c == b' ' || c == b'#');
        let trailing_space = !first && last && c == b' ';
        let special = matches!(c, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\');
        if leading || trailing_space || special {
            out.push('\\');
            out.push(c as char);
        } else if !(32..126).contains(&c) {
            out.push_str(&format!("\\{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escaping_follows_rabbitmq() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("é~"), "\\C3\\A9\\7E");
        assert_eq!(escape(" "), "\\ ");
    }
}

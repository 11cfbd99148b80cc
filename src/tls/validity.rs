//! Until when the certificates in a PEM file are valid, for the management API's
//! `health/checks/certificate-expiration` (RabbitMQ's `check_certificate_expiration`). Files are
//! read at each call, as RabbitMQ does, so a renewed certificate on disk counts at once.

use std::path::Path;

use rustls::pki_types::pem::{self, SectionKind};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One PEM section of a certificate file: the certificate's end of validity (Unix seconds), or
/// why it has none (RabbitMQ's texts).
pub type SectionValidity = Result<i64, String>;

/// The end of validity of every section of the PEM file at `path`, in file order, checked at
/// `now` (Unix seconds): a certificate not valid yet is an error entry, as in RabbitMQ. The
/// whole file is an error when it cannot be read or holds no PEM section.
pub fn certificate_end_dates(path: &Path, now: i64) -> Result<Vec<SectionValidity>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut rest = bytes.as_slice();
    let mut sections = Vec::new();
    loop {
        match pem::from_buf(&mut rest) {
            Ok(Some((kind, der))) => sections.push(section_validity(kind, &der, now)),
            Ok(None) => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    if sections.is_empty() {
        return Err("The certificate file provided does not contain any PEM entry.".to_owned());
    }
    Ok(sections)
}

fn section_validity(kind: SectionKind, der: &[u8], now: i64) -> SectionValidity {
    if kind != SectionKind::Certificate {
        return Err(format!(
            "The certificate file provided contains a {kind:?} entry"
        ));
    }
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let validity = cert.validity();
    if validity.not_before.timestamp() > now {
        return Err("Certificate is not yet valid".to_owned());
    }
    Ok(validity.not_after.timestamp())
}

/// The sections of a file that make it fail the check: errors, and certificates that end
/// before `deadline` (Unix seconds).
pub fn expiring_before(
    sections: Result<Vec<SectionValidity>, String>,
    deadline: i64,
) -> Result<Vec<SectionValidity>, String> {
    sections.map(|all| {
        all.into_iter()
            .filter(|s| s.as_ref().map_or(true, |end| *end < deadline))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_pem(not_before: (i32, u8), not_after: (i32, u8)) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn unix(year: i32, month: u8) -> i64 {
        rcgen::date_time_ymd(year, month, 1).unix_timestamp()
    }

    #[test]
    fn a_chain_reports_each_certificate_and_only_the_expiring_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.pem");
        let chain = certificate_pem((2020, 1), (2030, 1)) + &certificate_pem((2020, 1), (2040, 1));
        std::fs::write(&path, chain).unwrap();
        let now = unix(2026, 12);
        let all = certificate_end_dates(&path, now).unwrap();
        assert_eq!(all, vec![Ok(unix(2030, 1)), Ok(unix(2040, 1))]);
        let within_5_years = expiring_before(Ok(all.clone()), unix(2031, 12));
        assert_eq!(within_5_years, Ok(vec![Ok(unix(2030, 1))]));
        assert_eq!(expiring_before(Ok(all), unix(2027, 1)), Ok(vec![]));
    }

    #[test]
    fn keys_missing_files_empty_files_and_future_certificates_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let now = unix(2026, 12);
        let key = dir.path().join("key.pem");
        std::fs::write(&key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert_eq!(
            certificate_end_dates(&key, now),
            Ok(vec![Err(
                "The certificate file provided contains a PrivateKey entry".to_owned()
            )])
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        assert!(certificate_end_dates(&empty, now)
            .unwrap_err()
            .contains("does not contain any PEM entry"));
        let missing = dir.path().join("missing.pem");
        assert!(certificate_end_dates(&missing, now)
            .unwrap_err()
            .contains("missing.pem"));
        let future = dir.path().join("future.pem");
        std::fs::write(&future, certificate_pem((2030, 1), (2031, 1))).unwrap();
        let sections = certificate_end_dates(&future, now);
        assert_eq!(
            sections,
            Ok(vec![Err("Certificate is not yet valid".to_owned())])
        );
        // An error section always fails the check, whatever the deadline.
        assert_eq!(expiring_before(sections.clone(), 0), sections);
    }
}

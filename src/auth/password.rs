//! Password hashes as RabbitMQ stores them: `salt(4) ‖ H(salt ‖ UTF-8 password)`, base64 in
//! definitions, with H one of SHA-256 (the default), SHA-512 or MD5 (`rabbit_password_hashing_*`,
//! see RabbitMQ's `rabbit_password:salted_hash/3`). Never logs or keeps a cleartext password.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// RabbitMQ's salt length in bytes.
const SALT_LEN: usize = 4;

/// A `hashing_algorithm` of RabbitMQ's definitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashingAlgorithm {
    /// `rabbit_password_hashing_sha256`, RabbitMQ's default since 3.6.
    #[default]
    #[serde(rename = "rabbit_password_hashing_sha256")]
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    #[serde(rename = "rabbit_password_hashing_sha512")]
    Sha512,
    /// `rabbit_password_hashing_md5`: users created before RabbitMQ 3.6.
    #[serde(rename = "rabbit_password_hashing_md5")]
    Md5,
}

impl HashingAlgorithm {
    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// Parses a definitions name.
    pub fn try_from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512, Self::Md5]
            .into_iter()
            .find(|a| a.as_str() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            HashingAlgorithm::Sha256 => run::<Sha256>(salt, password),
            HashingAlgorithm::Sha512 => run::<Sha512>(salt, password),
            HashingAlgorithm::Md5 => run::<Md5>(salt, password),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            HashingAlgorithm::Sha256 => 32,
            HashingAlgorithm::Sha512 => 64,
            HashingAlgorithm::Md5 => 16,
        }
    }
}

/// A stored password: the algorithm and `salt ‖ digest`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: HashingAlgorithm,
    salted: Vec<u8>,
}

// Hashes are secrets too: keep them out of Debug output and therefore out of logs.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm.as_str())
    }
}

/// An imported `password_hash` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    /// Not base64.
    #[error("password_hash is not valid base64")]
    NotBase64,
    /// Decoded to something other than a 4-byte salt and a digest of the algorithm's size.
    #[error("password_hash has {got} bytes, {algorithm} needs {expected}")]
    WrongLength {
        /// The algorithm's definitions name.
        algorithm: &'static str,
        /// Bytes expected (salt + digest).
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(algorithm: HashingAlgorithm, password: &str) -> Self {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::with_salt(algorithm, salt, password)
    }

    /// Hashes `password` with a given salt (tests and reproducible fixtures).
    pub fn with_salt(algorithm: HashingAlgorithm, salt: [u8; SALT_LEN], password: &str) -> Self {
        let mut salted = salt.to_vec();
        salted.extend_from_slice(&algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, salted }
    }

    /// Reads a definitions `password_hash` (base64). An empty string is RabbitMQ's "no password"
    /// (`rabbitmqctl clear_password`): such a user can log in only with EXTERNAL.
    pub fn try_from_base64(
        algorithm: HashingAlgorithm,
        text: &str,
    ) -> Result<Option<Self>, PasswordHashError> {
        if text.is_empty() {
            return Ok(None);
        }
        let salted = BASE64
            .decode(text.trim())
            .map_err(|_| PasswordHashError::NotBase64)?;
        let expected = SALT_LEN + algorithm.digest_len();
        if salted.len() != expected {
            return Err(PasswordHashError::WrongLength {
                algorithm: algorithm.as_str(),
                expected,
                got: salted.len(),
            });
        }
        Ok(Some(PasswordHash { algorithm, salted }))
    }

    /// The definitions `password_hash`.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.salted)
    }

    /// The definitions `hashing_algorithm`.
    pub fn algorithm(&self) -> HashingAlgorithm {
        self.algorithm
    }

    /// Whether `password` is this one, compared in constant time. RabbitMQ refuses a blank
    /// password whatever is stored (`rabbit_auth_backend_internal:user_login_authentication/2`).
    pub fn verify(&self, password: &str) -> bool {
        if password.is_empty() {
            return false;
        }
        let (salt, digest) = self.salted.split_at(SALT_LEN);
        let candidate = self.algorithm.digest(salt, password.as_bytes());
        candidate.ct_eq(digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed by RabbitMQ 3.10.8's own code: `rabbit_password:hash(Mod, <<"s3cret-päss"/utf8>>)`
    // and `rabbit_password:hash(rabbit_password_hashing_sha256, <<"guest">>)`, base64-encoded
    // (erl with the broker's ebin on the code path).
    const RABBIT_SHA256: &str = "wE0LGy425wpz5rD8SDmRNPC6mduyF33XyoK9YyQYuKcKWzvg";
    const RABBIT_SHA512: &str =
        "00BR9hkZiJvG4o1hj6fhfr+/HQ8l4J4BtnBrDb0SrxSTiPXxbO6uM7pCgECXIoNlJGHn3tY1aFQ65rc+/b0c1rRIP8c=";
    const RABBIT_MD5: &str = "665dNszTOgmtXX1/vEe4hY/RUdA=";
    const RABBIT_GUEST_SHA256: &str = "ucMcvIwVbmk3H7bBJ1q4ZbuQIzO2wYNx0wxMZgfrubDxz+oY";
    const PASSWORD: &str = "s3cret-päss";

    fn imported(alg: HashingAlgorithm, b64: &str) -> PasswordHash {
        PasswordHash::try_from_base64(alg, b64)
            .expect("valid hash")
            .expect("not empty")
    }

    #[test]
    fn hashes_made_by_rabbitmq_verify() {
        for (alg, b64) in [
            (HashingAlgorithm::Sha256, RABBIT_SHA256),
            (HashingAlgorithm::Sha512, RABBIT_SHA512),
            (HashingAlgorithm::Md5, RABBIT_MD5),
        ] {
            let h = imported(alg, b64);
            assert!(h.verify(PASSWORD), "{alg:?}");
            assert!(
                !h.verify("s3cret-pass"),
                "{alg:?} accepted a wrong password"
            );
            assert!(!h.verify(""), "{alg:?} accepted a blank password");
            assert_eq!(h.to_base64(), b64, "{alg:?} round trip");
        }
        assert!(imported(HashingAlgorithm::Sha256, RABBIT_GUEST_SHA256).verify("guest"));
    }

    #[test]
    fn our_hash_equals_rabbitmqs_for_the_same_salt() {
        let theirs = imported(HashingAlgorithm::Sha256, RABBIT_SHA256);
        let salt: [u8; 4] = theirs.salted[..4].try_into().expect("4 bytes");
        let ours = PasswordHash::with_salt(HashingAlgorithm::Sha256, salt, PASSWORD);
        assert_eq!(ours.to_base64(), RABBIT_SHA256);
    }

    #[test]
    fn new_hashes_are_salted_and_verify() {
        let a = PasswordHash::new(HashingAlgorithm::Sha256, "pw");
        let b = PasswordHash::new(HashingAlgorithm::Sha256, "pw");
        assert!(a.verify("pw") && b.verify("pw"));
        // 2^-32 chance of equal salts.
        assert_ne!(a.to_base64(), b.to_base64());
        assert_eq!(a.to_base64().len(), 48, "4+32 bytes in base64");
    }

    #[test]
    fn bad_imports_are_refused_and_empty_means_no_password() {
        assert_eq!(
            PasswordHash::try_from_base64(HashingAlgorithm::Sha256, "!!!"),
            Err(PasswordHashError::NotBase64)
        );
        assert!(matches!(
            PasswordHash::try_from_base64(HashingAlgorithm::Sha512, RABBIT_SHA256),
            Err(PasswordHashError::WrongLength {
                expected: 68,
                got: 36,
                ..
            })
        ));
        assert_eq!(
            PasswordHash::try_from_base64(HashingAlgorithm::Md5, ""),
            Ok(None)
        );
    }

    #[test]
    fn algorithm_names_round_trip_through_serde() {
        for alg in [
            HashingAlgorithm::Sha256,
            HashingAlgorithm::Sha512,
            HashingAlgorithm::Md5,
        ] {
            let json = serde_json::to_string(&alg).expect("serializes");
            assert_eq!(json, format!("\"{}\"", alg.as_str()));
            assert_eq!(HashingAlgorithm::try_from_name(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn debug_hides_the_hash() {
        let h = PasswordHash::with_salt(HashingAlgorithm::Sha256, [1, 2, 3, 4], "pw");
        assert!(!format!("{h:?}").contains(&h.to_base64()));
    }
}

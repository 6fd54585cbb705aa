//! Patient identity reduced to what the ledger may keep: a keyed HMAC token and a ZIP3.
//!
//! The MRN is hashed the moment it is parsed; nothing here stores or prints it. The key's `Debug`
//! prints `[redacted]`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The facility's patient key: HMAC-SHA256 keyed state, ready to be cloned per token.
#[derive(Clone)]
pub struct PatientKey {
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for PatientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientKey([redacted])")
    }
}

/// HMAC-SHA256(facility key, MRN) in lowercase hex: the only patient key the ledger holds.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PatientToken(String);

impl PatientKey {
    /// Builds the key from the secret's bytes. An empty key is refused by the caller's validation.
    pub fn new(secret: &[u8]) -> PatientKey {
        PatientKey {
            keyed: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Tokenizes an MRN (surrounding whitespace ignored). Returns `None` for an empty MRN.
    pub fn token(&self, mrn: &str) -> Option<PatientToken> {
        let mrn = mrn.trim();
        if mrn.is_empty() {
            return None;
        }
        let mut mac = self.keyed.clone();
        mac.update(mrn.as_bytes());
        Some(PatientToken(hex::encode(mac.finalize().into_bytes())))
    }
}

impl PatientToken {
    /// The token as stored (64 hex characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a token read back from the ledger.
    pub fn from_stored(text: String) -> PatientToken {
        PatientToken(text)
    }
}

/// Three-digit ZIP prefixes with 20,000 people or fewer, which HIPAA's Safe Harbor method requires to
/// be written as `000` (HHS guidance, 2000 Census figures).
const SPARSE_ZIP3: &[&str] = &[
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// The first three digits of a US ZIP code (`"12345-6789"` → `"123"`), `"000"` for the sparsely
/// populated prefixes Safe Harbor withholds, or `None` if it is not a ZIP code.
pub fn zip3(zip: &str) -> Option<String> {
    let zip = zip.trim();
    let digits: String = zip.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 5 {
        return None;
    }
    let rest = &zip[5..];
    let plus_four_ok = rest.is_empty()
        || (rest.len() == 5
            && rest.starts_with('-')
            && rest[1..].bytes().all(|b| b.is_ascii_digit()));
    if !plus_four_ok {
        return None;
    }
    let prefix = &digits[..3];
    Some(
        if SPARSE_ZIP3.contains(&prefix) {
            "000"
        } else {
            prefix
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_keyed_and_stable() {
        let key = PatientKey::new(b"facility-key");
        let other = PatientKey::new(b"other-key");
        let token = key.token(" MRN-001 ").unwrap();
        assert_eq!(token, key.token("MRN-001").unwrap());
        assert_ne!(token, other.token("MRN-001").unwrap());
        assert_eq!(token.as_str().len(), 64);
        assert!(!token.as_str().contains("MRN"));
        assert_eq!(key.token("   "), None);
        assert_eq!(format!("{key:?}"), "PatientKey([redacted])");
    }

    #[test]
    fn zip3_keeps_three_digits_of_valid_zips_only() {
        assert_eq!(zip3("12345").as_deref(), Some("123"));
        assert_eq!(zip3("12345-6789").as_deref(), Some("123"));
        assert_eq!(
            zip3("03601").as_deref(),
            Some("000"),
            "a Safe Harbor prefix"
        );
        assert_eq!(zip3("89301-1234").as_deref(), Some("000"));
        assert_eq!(zip3("1234"), None);
        assert_eq!(zip3("12345-67"), None);
        assert_eq!(zip3("ABCDE"), None);
        assert_eq!(zip3(""), None);
    }
}

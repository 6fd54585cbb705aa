//! `system:key` references to source records, as `[[identity.merge]]` and `[[identity.split]]`
//! write them and `refbridge status` prints them. Parsing only: whether the ledger holds the
//! record is decided when identity resolution runs, never at config load.

use std::fmt;

/// The systems a source record can come from.
pub const SYSTEMS: [&str; 3] = ["ehr", "salesforce", "hubspot"];

/// One source record: its system and its key there (an EHR spelling, a CRM id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordRef {
    pub system: String,
    pub key: String,
}

impl RecordRef {
    /// Reads `system:key`; the key is everything after the first colon, trimmed.
    pub fn parse(text: &str) -> Result<RecordRef, String> {
        let Some((system, key)) = text.split_once(':') else {
            return Err(
                "write a record as system:key, e.g. \"hubspot:1234\" or \"ehr:Mercy Hosp ED\""
                    .to_string(),
            );
        };
        let system = system.trim();
        if !SYSTEMS.contains(&system) {
            return Err(format!(
                "unknown system {system:?}: use {}",
                SYSTEMS.join(", ")
            ));
        }
        let key = key.trim();
        if key.is_empty() {
            return Err("the key after the system is empty".to_string());
        }
        Ok(RecordRef {
            system: system.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.system, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::RecordRef;

    #[test]
    fn references_read_system_and_key_and_refuse_the_rest() {
        let check = |text: &str, expected: Result<(&str, &str), &str>| {
            let parsed = RecordRef::parse(text);
            match expected {
                Ok((system, key)) => {
                    let reference = parsed.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!(
                        (reference.system.as_str(), reference.key.as_str()),
                        (system, key)
                    );
                    assert_eq!(reference.to_string(), format!("{system}:{key}"));
                }
                Err(fragment) => {
                    let message = parsed.expect_err(text);
                    assert!(message.contains(fragment), "{text}: {message}");
                }
            }
        };
        check("hubspot:1234", Ok(("hubspot", "1234")));
        check(
            "ehr: Dr. A. Lee - Mercy ",
            Ok(("ehr", "Dr. A. Lee - Mercy")),
        );
        check("ehr:Clinic: East", Ok(("ehr", "Clinic: East")));
        check("salesforce:001A", Ok(("salesforce", "001A")));
        check("Mercy Hospital", Err("system:key"));
        check("epic:123", Err("unknown system"));
        check("hubspot:  ", Err("empty"));
    }
}

//! National Provider Identifier: ten digits, the last a Luhn check digit over "80840" + the first nine.

use std::fmt;

/// A syntactically valid NPI (ten digits, correct check digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Npi([u8; 10]);

/// Why a string is not an NPI. Carries no part of the input, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpiError {
    /// Not exactly ten digits (after removing spaces and dashes).
    NotTenDigits,
    /// Ten digits whose last one is not the Luhn check digit of "80840" + the first nine.
    BadCheckDigit,
}

impl fmt::Display for NpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpiError::NotTenDigits => f.write_str("an NPI has exactly ten digits"),
            NpiError::BadCheckDigit => f.write_str(
                "the NPI check digit does not match (Luhn over 80840 + first nine digits)",
            ),
        }
    }
}

impl std::error::Error for NpiError {}

impl Npi {
    /// Parses an NPI, ignoring surrounding whitespace and inner spaces or dashes.
    pub fn parse(text: &str) -> Result<Npi, NpiError> {
        let mut digits = [0u8; 10];
        let mut count = 0;
        for byte in text.trim().bytes() {
            match byte {
                b'0'..=b'9' => {
                    if count == 10 {
                        return Err(NpiError::NotTenDigits);
                    }
                    digits[count] = byte - b'0';
                    count += 1;
                }
                b' ' | b'-' => {}
                _ => return Err(NpiError::NotTenDigits),
            }
        }
        if count != 10 {
            return Err(NpiError::NotTenDigits);
        }
        if check_digit(&digits[..9]) != digits[9] {
            return Err(NpiError::BadCheckDigit);
        }
        Ok(Npi(digits))
    }

    /// Completes nine digits with their check digit (used by synthetic data generators).
    pub fn from_first_nine(first_nine: u32) -> Npi {
        let mut digits = [0u8; 10];
        let mut rest = first_nine % 1_000_000_000;
        for slot in digits[..9].iter_mut().rev() {
            *slot = (rest % 10) as u8;
            rest /= 10;
        }
        digits[9] = check_digit(&digits[..9]);
        Npi(digits)
    }
}

/// Luhn check digit over the prefix 80840 followed by `nine` (the NPI standard's rule).
fn check_digit(nine: &[u8]) -> u8 {
    let prefixed = [8u8, 0, 8, 4, 0].iter().chain(nine.iter());
    let digits: Vec<u8> = prefixed.copied().collect();
    // Luhn: double every second digit from the right, counting the (absent) check digit as first.
    let mut sum = 0u32;
    for (position_from_right, digit) in digits.iter().rev().enumerate() {
        let mut value = u32::from(*digit);
        if position_from_right % 2 == 0 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    ((10 - (sum % 10)) % 10) as u8
}

impl serde::Serialize for Npi {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Npi {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Npi, D::Error> {
        let text = String::deserialize(deserializer)?;
        Npi::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Npi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for digit in self.0 {
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_cms_example_and_rejects_its_neighbours() {
        // The example from the CMS NPI check-digit specification.
        assert_eq!(Npi::parse("1234567893").unwrap().to_string(), "1234567893");
        assert_eq!(
            Npi::parse(" 123-456-7893 ").unwrap().to_string(),
            "1234567893"
        );
        assert_eq!(Npi::parse("1234567890"), Err(NpiError::BadCheckDigit));
        assert_eq!(Npi::parse("123456789"), Err(NpiError::NotTenDigits));
        assert_eq!(Npi::parse("12345678931"), Err(NpiError::NotTenDigits));
        assert_eq!(Npi::parse("12345a7893"), Err(NpiError::NotTenDigits));
        assert_eq!(Npi::parse(""), Err(NpiError::NotTenDigits));
    }

    #[test]
    fn generated_npis_are_valid() {
        for seed in [0u32, 1, 123_456_789, 999_999_999, 42] {
            let npi = Npi::from_first_nine(seed);
            assert_eq!(Npi::parse(&npi.to_string()), Ok(npi));
        }
    }
}

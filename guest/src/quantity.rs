//! Kubernetes resource quantities (`"3000"`, `"16Gi"`, `"500m"`, `"1e3"`), parsed exactly.
//!
//! Device resources are counts, MiB and percentages: integers. A quantity is parsed to an exact
//! value and then required to be a whole number; `"16Gi"` is the integer 17179869184 (too large
//! for a MiB field, which the caller checks), `"500m"` is not an integer.

/// Why a quantity string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("empty quantity")]
    Empty,
    /// Not of the form `<number><suffix>` (e.g. `12x`, `1..2`, `Gi`).
    #[error("not a Kubernetes quantity")]
    Malformed,
    /// A valid quantity that is not a whole number (e.g. `500m`, `0.5`).
    #[error("not a whole number")]
    NotInteger,
    /// A whole number beyond what any device field can hold.
    #[error("too large")]
    TooLarge,
}

/// Parses `s` as a Kubernetes quantity and returns its value as a whole number.
///
/// ```
/// use hamr_guest::quantity::{parse_integer, QuantityError};
/// assert_eq!(parse_integer("3000"), Ok(3000));
/// assert_eq!(parse_integer("16Gi"), Ok(16 << 30));
/// assert_eq!(parse_integer("2k"), Ok(2000));
/// assert_eq!(parse_integer("1.5e3"), Ok(1500));
/// assert_eq!(parse_integer("-3"), Ok(-3));
/// assert_eq!(parse_integer("500m"), Err(QuantityError::NotInteger));
/// assert_eq!(parse_integer("12x"), Err(QuantityError::Malformed));
/// ```
pub fn parse_integer(s: &str) -> Result<i128, QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let mut mantissa: i128 = 0;
    let mut digits = 0usize;
    let mut frac_digits: i32 = 0;
    let mut seen_dot = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(i128::from(bytes[i] - b'0')))
                    .ok_or(QuantityError::TooLarge)?;
                digits += 1;
                if seen_dot {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(QuantityError::Malformed);
    }
    let (binary_shift, decimal_exp) = suffix(&s[i..])?;
    // value = mantissa × 2^binary_shift × 10^exp10, computed exactly.
    let mut value = mantissa
        .checked_mul(1i128 << binary_shift)
        .ok_or(QuantityError::TooLarge)?;
    let exp10 = decimal_exp - frac_digits;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.checked_mul(10).ok_or(QuantityError::TooLarge)?;
        }
    } else {
        for _ in 0..(-exp10) {
            if value % 10 != 0 {
                return Err(QuantityError::NotInteger);
            }
            value /= 10;
        }
    }
    Ok(if negative { -value } else { value })
}

/// The suffix's (power of two, power of ten).
fn suffix(s: &str) -> Result<(u32, i32), QuantityError> {
    Ok(match s {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let rest = s
                .strip_prefix('e')
                .or_else(|| s.strip_prefix('E'))
                .ok_or(QuantityError::Malformed)?;
            let exp: i32 = rest.parse().map_err(|_| QuantityError::Malformed)?;
            if !(-60..=60).contains(&exp) {
                return Err(QuantityError::TooLarge);
            }
            (0, exp)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_in_every_notation() {
        let table: &[(&str, i128)] = &[
            ("0", 0),
            ("3000", 3000),
            ("+7", 7),
            ("-1", -1),
            ("1Ki", 1024),
            ("16Gi", 17_179_869_184),
            ("16.0Gi", 17_179_869_184),
            ("0.5Ki", 512),
            ("2k", 2000),
            ("1M", 1_000_000),
            ("1e3", 1000),
            ("1.5e3", 1500),
            ("4294967346", 4_294_967_346),
            ("1000m", 1),
            (" 12 ", 12),
        ];
        for (input, want) in table {
            assert_eq!(parse_integer(input), Ok(*want), "quantity {input:?}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let table: &[(&str, QuantityError)] = &[
            ("", QuantityError::Empty),
            ("Gi", QuantityError::Malformed),
            ("12x", QuantityError::Malformed),
            ("1.2.3", QuantityError::Malformed),
            ("abc", QuantityError::Malformed),
            ("500m", QuantityError::NotInteger),
            ("0.5", QuantityError::NotInteger),
            ("0.3Ki", QuantityError::NotInteger),
            ("1e99", QuantityError::TooLarge),
            (
                "99999999999999999999999999999999999999999",
                QuantityError::TooLarge,
            ),
        ];
        for (input, want) in table {
            assert_eq!(parse_integer(input), Err(*want), "quantity {input:?}");
        }
    }
}

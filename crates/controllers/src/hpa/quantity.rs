//! Resource quantities as the autoscaler needs them: a quantity's value in
//! milli-units (rounded up, like apimachinery's `MilliValue`), and a milli
//! value written back in canonical decimal-SI form (`NewMilliQuantity(v,
//! DecimalSI).String()`: `200m`, `1`, `1500m`, `2M`).

/// The value of `s` (`100m`, `0.5`, `64Mi`, `1e3`) in milli-units, rounded
/// up; `None` if `s` is not a quantity or the value does not fit in an i64.
pub fn parse_milli(s: &str) -> Option<i64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'-' => (-1i128, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let digits = format!("{whole}{frac}");
    // More digits than an i128 holds cannot be a meaningful request or usage.
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = digits.trim_start_matches('0').parse().unwrap_or(0);
    let frac_digits = i32::try_from(frac.len()).ok()?;
    let (binary, exp10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        e if e.starts_with(['e', 'E']) => (1, e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    // value × 1000 = mantissa × binary × 10^(exp10 + 3 − frac_digits)
    let scaled = mantissa.checked_mul(binary)?;
    let exp = exp10 + 3 - frac_digits;
    let milli = if exp >= 0 {
        scaled.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
    } else {
        let div = 10i128.checked_pow(u32::try_from(-exp).ok()?);
        match div {
            // Rounded up (towards +∞), as MilliValue does.
            Some(d) => {
                let q = scaled / d;
                if scaled % d != 0 && sign > 0 {
                    q + 1
                } else {
                    q
                }
            }
            None => i128::from(scaled != 0 && sign > 0),
        }
    };
    i64::try_from(sign * milli).ok()
}

/// `milli` milli-units as a canonical decimal-SI quantity string.
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut n = milli / 1000;
    let mut suffix = 0usize;
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    while n % 1000 == 0 && suffix + 1 < SUFFIXES.len() {
        n /= 1000;
        suffix += 1;
    }
    format!("{n}{}", SUFFIXES[suffix])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities_to_milli_values() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("64Mi"), Some(64 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1Ki"), Some(1_024_000));
        assert_eq!(parse_milli("1k"), Some(1_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1E-3"), Some(1));
        assert_eq!(parse_milli("0"), Some(0));
        assert_eq!(parse_milli(".5"), Some(500));
        assert_eq!(parse_milli("1.5Gi"), Some(1_610_612_736_000));
        // MilliValue rounds up.
        assert_eq!(parse_milli("1u"), Some(1));
        assert_eq!(parse_milli("1500u"), Some(2));
        assert_eq!(parse_milli("0.0001"), Some(1));
        assert_eq!(parse_milli("-100m"), Some(-100));
        for bad in ["", "m", "abc", "1.2.3", "1x", "1e", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
        assert_eq!(parse_milli("100E"), None, "overflows i64 milli");
    }

    #[test]
    fn formats_canonical_decimal_si() {
        assert_eq!(format_milli(200), "200m");
        assert_eq!(format_milli(1000), "1");
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(0), "0");
        assert_eq!(format_milli(67_108_864_000), "67108864");
        assert_eq!(format_milli(2_000_000_000), "2M");
        assert_eq!(format_milli(5_000_000), "5k");
    }
}

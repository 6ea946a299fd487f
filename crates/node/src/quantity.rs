//! Usage quantities (`250m`, `1.5`, `64Mi`, `1G`, `2e3`) as the fake runtime
//! reports them; parsing is skiff-resources' (negative values are not usage).

fn parse(s: &str) -> Option<f64> {
    skiff_resources::parse_quantity(s).filter(|v| *v >= 0.0)
}

/// CPU in millicores.
pub fn cpu_millis(s: &str) -> Option<u64> {
    parse(s).map(|v| to_u64((v * 1000.0).ceil()))
}

/// Memory (or any byte quantity) in bytes.
pub fn bytes(s: &str) -> Option<u64> {
    parse(s).map(|v| to_u64(v.ceil()))
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_u64(v: f64) -> u64 {
    if v <= 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_memory() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(bytes("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(bytes("4Ti"), Some(4 << 40));
        assert_eq!(bytes("lots"), None);
        assert_eq!(bytes("-1"), None);
        assert_eq!(bytes("1Xi"), None);
    }
}

//! JSON renderings of apimachinery types that have custom `MarshalJSON`
//! methods in Go: `Time`, `MicroTime` and `Duration`.

use chrono::{DateTime, Utc};

/// `metav1.Time` as Go renders it: RFC 3339 in UTC, whole seconds. The
/// protobuf form carries no nanoseconds worth keeping (Go drops them too).
pub(crate) fn time(seconds: i64) -> Option<String> {
    let t: DateTime<Utc> = DateTime::from_timestamp(seconds, 0)?;
    Some(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits.
pub(crate) fn micro_time(seconds: i64, nanos: i64) -> Option<String> {
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let t: DateTime<Utc> = DateTime::from_timestamp(seconds, nanos - nanos % 1000)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// A nanosecond count as Go's `time.Duration.String()` writes it: `0s`,
/// `1.5µs`, `100ms`, `1m30s`, `1h0m0.5s`, `-2s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (scale, unit) = match n {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{sign}{}{unit}", decimal(n, scale));
    }
    let secs = n / 1_000_000_000;
    let frac_secs = decimal(secs % 60 * 1_000_000_000 + n % 1_000_000_000, 1_000_000_000);
    let mins = secs / 60;
    if mins == 0 {
        return format!("{sign}{frac_secs}s");
    }
    let hours = mins / 60;
    if hours == 0 {
        return format!("{sign}{}m{frac_secs}s", mins % 60);
    }
    format!("{sign}{hours}h{}m{frac_secs}s", mins % 60)
}

/// `value / scale` in decimal, without trailing zeros or a bare point.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_600_500_000_000, "1h0m0.5s"),
            (-2_000_000_000, "-2s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(1_704_164_645).unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(time(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            micro_time(1_704_164_645, 123_456_789).unwrap(),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            micro_time(1_704_164_645, 0).unwrap(),
            "2024-01-02T03:04:05.000000Z"
        );
        assert!(time(i64::MAX).is_none());
        assert!(micro_time(0, -1).is_none());
    }
}

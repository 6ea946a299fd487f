//! Human-readable durations, as kubectl's `duration.HumanDuration` prints ages.

use chrono::TimeDelta;

/// Formats an age: `5s`, `3m2s`, `10m`, `5h3m`, `20h`, `2d3h`, `40d`, `2y10d`, `9y`.
/// Up to one second in the future counts as `0s` (clock skew); further is `<invalid>`.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with_rest(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return with_rest(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn with_rest(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: i64) -> String {
        human_duration(TimeDelta::seconds(n))
    }

    #[test]
    fn matches_kubectl_thresholds() {
        assert_eq!(s(-5), "<invalid>");
        assert_eq!(s(-1), "0s");
        assert_eq!(s(5), "5s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(182), "3m2s");
        assert_eq!(s(240), "4m");
        assert_eq!(s(600), "10m");
        assert_eq!(s(179 * 60 + 30), "179m");
        assert_eq!(s(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(s(7 * 3600), "7h");
        assert_eq!(s(20 * 3600), "20h");
        assert_eq!(s(51 * 3600), "2d3h");
        assert_eq!(s(72 * 3600), "3d");
        assert_eq!(s(40 * 86400), "40d");
        assert_eq!(s(740 * 86400), "2y10d");
        assert_eq!(s(3000 * 86400), "8y");
    }
}

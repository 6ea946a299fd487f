//! A small parser for CronJob schedules, accepting what upstream's cron library
//! accepts in standard mode: five fields or a `@descriptor`.

/// Bounds and names of each of the five fields.
const FIELDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule; `Err` carries a message in the cron library's wording.
pub(crate) fn parse(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if let Some(rest) = schedule.strip_prefix('@') {
        if DESCRIPTORS.contains(&schedule) {
            return Ok(());
        }
        if let Some(d) = rest.strip_prefix("every ") {
            return go_duration(d.trim()).map_err(|_| {
                format!(
                    "failed to parse duration {schedule}: time: invalid duration \"{}\"",
                    d.trim()
                )
            });
        }
        return Err(format!("unrecognized descriptor: {schedule}"));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, (min, max, names)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            range(part, min, max, names)?;
        }
    }
    Ok(())
}

fn number(s: &str, names: &[&str], min: u32) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return u32::try_from(i).map(|i| i + min).map_err(|e| e.to_string());
    }
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing \"{s}\": invalid syntax")
    })
}

fn range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (span, step) = match expr.split_once('/') {
        Some((span, step)) => (span, Some(step)),
        None => (expr, None),
    };
    let (lo, hi) = if span == "*" || span == "?" {
        (min, max)
    } else if let Some((a, b)) = span.split_once('-') {
        (number(a, names, min)?, number(b, names, min)?)
    } else {
        let n = number(span, names, min)?;
        (n, if step.is_some() { max } else { n })
    };
    if let Some(step) = step {
        let step = number(step, &[], 0)?;
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if lo < min {
        return Err(format!(
            "beginning of range ({lo}) below minimum ({min}): {expr}"
        ));
    }
    if hi > max {
        return Err(format!("end of range ({hi}) above maximum ({max}): {expr}"));
    }
    if lo > hi {
        return Err(format!(
            "beginning of range ({lo}) beyond end of range ({hi}): {expr}"
        ));
    }
    Ok(())
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `90s`, `1.5h`.
fn go_duration(s: &str) -> Result<(), ()> {
    let mut rest = s;
    if rest.is_empty() {
        return Err(());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(())?;
        if digits == 0 {
            return Err(());
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(*u))
            .max_by_key(|u| u.len())
            .ok_or(())?;
        rest = &rest[unit.len()..];
    }
    Ok(())
}

/// `validateTimeZone`: an explicit IANA name. Without a time zone database we check
/// the shape of the name (components of letters, digits, `.`, `-`, `_`, `+`), which
/// rejects what users mistype most; see the crate report for the gap.
pub(crate) fn time_zone(tz: &str) -> Result<(), String> {
    if tz.is_empty() {
        return Err("timeZone must be nil or non-empty string".into());
    }
    if tz.eq_ignore_ascii_case("local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    let valid_part = |p: &str| {
        (1..=14).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    let first_upper = tz.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    if !first_upper || !tz.split('/').all(valid_part) {
        return Err(format!("unknown time zone {tz}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_schedules() {
        for s in [
            "*/5 * * * *",
            "0 0 * * *",
            "0 9-17 * * MON-FRI",
            "15,45 */2 1 jan,jul ?",
            "@hourly",
            "@every 1h30m",
            "0 0 1 1 0",
        ] {
            assert_eq!(parse(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn rejects_bad_schedules_with_library_messages() {
        assert_eq!(
            parse("bogus"),
            Err("expected exactly 5 fields, found 1: [bogus]".into())
        );
        assert_eq!(
            parse("60 * * * *"),
            Err("end of range (60) above maximum (59): 60".into())
        );
        assert_eq!(
            parse("* * 0 * *"),
            Err("beginning of range (0) below minimum (1): 0".into())
        );
        assert_eq!(
            parse("5-1 * * * *"),
            Err("beginning of range (5) beyond end of range (1): 5-1".into())
        );
        assert_eq!(
            parse("*/0 * * * *"),
            Err("step of range should be a positive number: */0".into())
        );
        assert_eq!(
            parse("@fortnightly"),
            Err("unrecognized descriptor: @fortnightly".into())
        );
        assert!(parse("x * * * *")
            .unwrap_err()
            .starts_with("failed to parse int from x"));
        assert!(parse("@every soon").is_err());
        assert!(parse("* * * * 7").is_err());
    }

    #[test]
    fn time_zones() {
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(time_zone("UTC").is_ok());
        assert!(time_zone("Etc/GMT+5").is_ok());
        assert!(time_zone("Local").is_err());
        assert_eq!(
            time_zone("not a zone"),
            Err("unknown time zone not a zone".into())
        );
        assert!(time_zone("").is_err());
    }
}

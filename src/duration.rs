//! Durations for the command line: `500ms`, `2s`, `0.5s`, `1.5s`, `1m`; a bare number is
//! milliseconds. Hand-written rather than `humantime`: humantime rejects fractions (`0.5s`)
//! and bare numbers, the two forms CI flags use most, and its error messages do not name
//! the accepted units.

use std::time::Duration;

/// Why a duration did not parse; the message names the input and the accepted units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: {why}")]
pub struct DurationError {
    pub input: String,
    pub why: String,
}

/// Parses `N`, `Nms`, `Ns`, `Nm` where N is a non-negative decimal (`1.5`, `.5`, `2`).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why: String| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty duration; use e.g. 500ms, 2s or 1m".into()));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim_start();
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err(format!(
            "no number before the unit {unit:?}; use e.g. 500ms, 2s or 1m"
        )));
    }
    let millis_per_unit: f64 = match unit {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        other => {
            return Err(err(format!("unknown unit {other}; use ms, s or m")));
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| err(format!("{num:?} is not a number")))?;
    let millis = value * millis_per_unit;
    // One year is far beyond any budget; it also keeps the float in exact-integer range.
    if !millis.is_finite() || millis > 365.0 * 24.0 * 3_600_000.0 {
        return Err(err("too long (at most one year)".into()));
    }
    // Whole microseconds: `0.0005s` is 500 us, not a rounding artefact.
    let micros = (millis * 1_000.0).round() as u64;
    Ok(Duration::from_micros(micros))
}

/// `Duration` formatted back the way the parser reads it (`1.5s`, `500ms`, `2m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms >= 1_000 {
        let s = d.as_secs_f64();
        let text = format!("{s:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}s")
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("2s").unwrap(), ms(2_000));
        assert_eq!(parse_duration("0.5s").unwrap(), ms(500));
        assert_eq!(parse_duration("1.5s").unwrap(), ms(1_500));
        assert_eq!(parse_duration(".25s").unwrap(), ms(250));
        assert_eq!(parse_duration("1m").unwrap(), ms(60_000));
        assert_eq!(parse_duration("1.5m").unwrap(), ms(90_000));
        assert_eq!(parse_duration("250").unwrap(), ms(250));
        assert_eq!(parse_duration("0").unwrap(), ms(0));
        assert_eq!(parse_duration(" 3s ").unwrap(), ms(3_000));
        assert_eq!(parse_duration("10 s").unwrap(), ms(10_000));
        assert_eq!(
            parse_duration("0.0005s").unwrap(),
            Duration::from_micros(500)
        );
    }

    #[test]
    fn errors_name_the_unit() {
        let e = parse_duration("2x").unwrap_err();
        assert_eq!(e.to_string(), "`2x`: unknown unit x; use ms, s or m");
        let e = parse_duration("2h").unwrap_err();
        assert!(e.to_string().contains("unknown unit h"), "{e}");
        let e = parse_duration("5sec").unwrap_err();
        assert!(e.to_string().contains("unknown unit sec"), "{e}");
    }

    #[test]
    fn errors_for_bad_numbers() {
        for bad in ["", "   ", "s", "ms", ".", "1.2.3s", "-1s", "abc"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().starts_with('`'), "{bad}: {e}");
        }
        assert!(parse_duration("99999999999m").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [ms(0), ms(500), ms(1_500), ms(2_000), ms(60_000), ms(90_000)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(ms(1_500)), "1.5s");
        assert_eq!(format_duration(ms(120_000)), "2m");
    }
}

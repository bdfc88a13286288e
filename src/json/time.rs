//! RFC 3339 text of a protobuf timestamp, written without chrono for the years 0 to 9999 and
//! exactly as chrono writes it: canonical JSON's timestamps (`+00:00`) and the SIEM shapes'
//! (`Z`, or milliseconds for the moment of hand-over).

use pbjson_types::Timestamp;

/// How [`write_rfc3339`] writes an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339 {
    /// `Z` instead of `+00:00`.
    pub zulu: bool,
    /// Always three fraction digits (chrono's `SecondsFormat::Millis`) instead of as many as
    /// the nanoseconds need: none, 3, 6 or 9 (`SecondsFormat::AutoSi`).
    pub millis: bool,
}

impl Rfc3339 {
    /// Canonical JSON's: chrono's `to_rfc3339`.
    pub const CANONICAL: Self = Self {
        zulu: false,
        millis: false,
    };
    /// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`.
    pub const ZULU: Self = Self {
        zulu: true,
        millis: false,
    };
    /// `to_rfc3339_opts(SecondsFormat::Millis, true)`.
    pub const ZULU_MILLIS: Self = Self {
        zulu: true,
        millis: true,
    };

    fn seconds_format(self) -> chrono::SecondsFormat {
        if self.millis {
            chrono::SecondsFormat::Millis
        } else {
            chrono::SecondsFormat::AutoSi
        }
    }
}

/// `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59Z`: the seconds whose year chrono writes with
/// four digits and no sign, written here without chrono.
const FOUR_DIGIT_YEARS: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

/// Appends `ts` in UTC as RFC 3339 text (no quotes), as chrono writes the instant in `style`.
/// Returns false, and appends nothing, for a timestamp that is no instant to chrono (as
/// pbjson converts it): negative nanoseconds, out of chrono's range, or nanoseconds past a
/// second that is not a leap second.
pub fn write_rfc3339(out: &mut Vec<u8>, ts: &Timestamp, style: Rfc3339) -> bool {
    let Ok(nanos) = u32::try_from(ts.nanos) else {
        return false;
    };
    if !FOUR_DIGIT_YEARS.contains(&ts.seconds) || nanos >= 1_000_000_000 {
        // Signed or five-digit years, leap seconds, and what chrono rejects: rare, left to chrono.
        let Some(t) = chrono::DateTime::from_timestamp(ts.seconds, nanos) else {
            return false;
        };
        out.extend_from_slice(t.to_rfc3339_opts(style.seconds_format(), style.zulu).as_bytes());
        return true;
    }
    let (year, month, day) = civil_from_days(ts.seconds.div_euclid(86_400));
    let of_day = ts.seconds.rem_euclid(86_400) as u32;
    let mut text = [0u8; 35];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        text[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&fixed::<4>(year));
    put(b"-");
    put(&fixed::<2>(month));
    put(b"-");
    put(&fixed::<2>(day));
    put(b"T");
    put(&fixed::<2>(of_day / 3600));
    put(b":");
    put(&fixed::<2>(of_day / 60 % 60));
    put(b":");
    put(&fixed::<2>(of_day % 60));
    if style.millis {
        put(b".");
        put(&fixed::<3>(nanos / 1_000_000));
    } else if nanos == 0 {
    } else if nanos.is_multiple_of(1_000_000) {
        put(b".");
        put(&fixed::<3>(nanos / 1_000_000));
    } else if nanos.is_multiple_of(1_000) {
        put(b".");
        put(&fixed::<6>(nanos / 1_000));
    } else {
        put(b".");
        put(&fixed::<9>(nanos));
    }
    put(if style.zulu { b"Z" } else { b"+00:00" });
    out.extend_from_slice(&text[..at]);
    true
}

/// `ts` as [`write_rfc3339`] writes it, or `None` for an instant chrono has not.
pub fn rfc3339(ts: &Timestamp, style: Rfc3339) -> Option<String> {
    let mut out = Vec::with_capacity(35);
    write_rfc3339(&mut out, ts, style).then(|| String::from_utf8(out).ok())?
}

/// `n` in exactly `W` decimal digits (zero-padded; `n` has at most `W` digits).
fn fixed<const W: usize>(mut n: u32) -> [u8; W] {
    let mut digits = [b'0'; W];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    digits
}

/// Year, month and day of the proleptic Gregorian calendar `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`), for years 0 to 9999.
fn civil_from_days(days: i64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chrono_text(ts: &Timestamp, style: Rfc3339) -> Option<String> {
        let t = chrono::DateTime::<chrono::Utc>::try_from(*ts).ok()?;
        Some(t.to_rfc3339_opts(style.seconds_format(), style.zulu))
    }

    const STYLES: [Rfc3339; 3] = [Rfc3339::CANONICAL, Rfc3339::ZULU, Rfc3339::ZULU_MILLIS];

    #[test]
    fn edges_are_written_as_chrono_writes_them() {
        let ends = [*FOUR_DIGIT_YEARS.start(), *FOUR_DIGIT_YEARS.end()];
        let seconds = ends.iter().flat_map(|&s| [s - 1, s, s + 1]).chain([
            0,
            -1,
            951_782_400,
            4_107_542_400,
            1_483_228_799,
            1_483_228_800,
            i64::MIN,
            i64::MAX,
        ]);
        for seconds in seconds {
            for nanos in [
                0,
                1,
                999,
                1_000,
                1_000_000,
                123_456_789,
                999_999_999,
                1_000_000_000,
                1_500_000_000,
                2_000_000_000,
                -1,
            ] {
                let ts = Timestamp { seconds, nanos };
                for style in STYLES {
                    assert_eq!(rfc3339(&ts, style), chrono_text(&ts, style), "{ts:?} {style:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_instant_is_written_as_chrono_writes_it(
            seconds in prop_oneof![FOUR_DIGIT_YEARS, any::<i64>(), -1_000_000_000_000i64..1_000_000_000_000],
            nanos in prop_oneof![0..1_000_000_000i32, (0..1_000_000i32).prop_map(|n| n * 1_000), (0..1_000i32).prop_map(|n| n * 1_000_000), any::<i32>()],
        ) {
            let ts = Timestamp { seconds, nanos };
            for style in STYLES {
                prop_assert_eq!(rfc3339(&ts, style), chrono_text(&ts, style), "{:?}", style);
            }
        }
    }
}

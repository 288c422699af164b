//! Calendar dates in UTC from seconds since the Unix epoch, without a time crate: the run
//! listings (`tracking::util::format_utc`) and the model metadata's creation time
//! (`model::utc_timestamp`) both print them.

/// `YYYY-MM-DD HH:MM:SS` for `secs` seconds since 1970-01-01 00:00:00 UTC (negative: before).
pub(crate) fn date_time(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian; Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_leap_days_and_the_epoch() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        assert_eq!(date_time(-1), "1969-12-31 23:59:59");
        assert_eq!(date_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(date_time(951_868_799), "2000-02-29 23:59:59");
        assert_eq!(date_time(4_107_542_400), "2100-03-01 00:00:00");
    }
}

//! `strftime_now(format)`, the template global transformers defines as
//! `datetime.now().strftime(format)`. Llama 3.x templates use it to write "Today Date: 26 Jul 2024".
//!
//! We format the current time in UTC (training machines and containers almost always run in UTC,
//! where Python's local time is the same), with the C-locale names Python uses.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A broken-down UTC time, just what `strftime` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Monday .. 6 = Sunday (Python's `weekday()`).
    pub weekday: u32,
    /// 1..=366
    pub day_of_year: u32,
}

impl CivilTime {
    /// The current time in UTC.
    pub(crate) fn now_utc() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// Converts seconds since the Unix epoch (Howard Hinnant's `civil_from_days`).
    pub(crate) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy_from_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy_from_march + 2) / 153;
        let day = (doy_from_march - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let day_of_year = CUMULATIVE[(month - 1) as usize] + day + u32::from(leap && month > 2);
        CivilTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            // 1970-01-01 was a Thursday (weekday 3).
            weekday: (days + 3).rem_euclid(7) as u32,
            day_of_year,
        }
    }
}

/// Formats `time` like Python's `datetime.strftime` (glibc directives, including `%-d` without padding).
pub(crate) fn strftime(time: &CivilTime, format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let no_pad = chars.peek() == Some(&'-');
        if no_pad {
            chars.next();
        }
        let Some(directive) = chars.next() else {
            out.push('%');
            break;
        };
        let num = |out: &mut String, value: i64, width: usize| {
            if no_pad {
                let _ = write!(out, "{value}");
            } else {
                let _ = write!(out, "{value:0width$}");
            }
        };
        let hour12 = match time.hour % 12 {
            0 => 12,
            h => h,
        };
        let weekday = WEEKDAYS[time.weekday as usize % 7];
        let month = MONTHS[(time.month as usize + 11) % 12];
        match directive {
            'a' => out.push_str(&weekday[..3]),
            'A' => out.push_str(weekday),
            'b' | 'h' => out.push_str(&month[..3]),
            'B' => out.push_str(month),
            'd' => num(&mut out, time.day.into(), 2),
            'e' => {
                let _ = write!(out, "{:>2}", time.day);
            }
            'm' => num(&mut out, time.month.into(), 2),
            'y' => num(&mut out, time.year.rem_euclid(100), 2),
            'Y' => {
                let _ = write!(out, "{}", time.year);
            }
            'H' => num(&mut out, time.hour.into(), 2),
            'I' => num(&mut out, hour12.into(), 2),
            'M' => num(&mut out, time.minute.into(), 2),
            'S' => num(&mut out, time.second.into(), 2),
            'p' => out.push_str(if time.hour < 12 { "AM" } else { "PM" }),
            'j' => num(&mut out, time.day_of_year.into(), 3),
            'w' => {
                let _ = write!(out, "{}", (time.weekday + 1) % 7);
            }
            'u' => {
                let _ = write!(out, "{}", time.weekday + 1);
            }
            'D' | 'x' => {
                let _ = write!(
                    out,
                    "{:02}/{:02}/{:02}",
                    time.month,
                    time.day,
                    time.year.rem_euclid(100)
                );
            }
            'F' => {
                let _ = write!(out, "{}-{:02}-{:02}", time.year, time.month, time.day);
            }
            'T' | 'X' => {
                let _ = write!(
                    out,
                    "{:02}:{:02}:{:02}",
                    time.hour, time.minute, time.second
                );
            }
            'R' => {
                let _ = write!(out, "{:02}:{:02}", time.hour, time.minute);
            }
            'c' => {
                let _ = write!(
                    out,
                    "{} {} {:>2} {:02}:{:02}:{:02} {}",
                    &weekday[..3],
                    &month[..3],
                    time.day,
                    time.hour,
                    time.minute,
                    time.second,
                    time.year
                );
            }
            // `datetime.now()` is naive: no zone name, no offset.
            'z' | 'Z' => {}
            'n' => out.push('\n'),
            't' => out.push('\t'),
            '%' => out.push('%'),
            other => {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_strftime() {
        // 2024-07-26 13:05:09 UTC, a Friday: python datetime(2024,7,26,13,5,9).strftime(...)
        let time = CivilTime::from_unix(1_721_999_109);
        assert_eq!(strftime(&time, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            strftime(&time, "%A %B %-d, %Y %I:%M:%S %p %j %%"),
            "Friday July 26, 2024 01:05:09 PM 208 %"
        );
        assert_eq!(strftime(&time, "%Y-%m-%d %H:%M"), "2024-07-26 13:05");
    }

    #[test]
    fn handles_leap_years_and_the_epoch() {
        let epoch = CivilTime::from_unix(0);
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.weekday),
            (1970, 1, 1, 3)
        );
        let leap_day = CivilTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!(
            (
                leap_day.year,
                leap_day.month,
                leap_day.day,
                leap_day.day_of_year
            ),
            (2000, 2, 29, 60)
        );
    }
}

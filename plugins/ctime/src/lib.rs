//! `ctime`: a demo app that answers with the server's current local time.
//!
//! A port of seed 002's `ctime.py`, the first "dynamic" page of that post:
//!
//! ```python
//! def application(env, dealHeaders):
//!     dealHeaders("200 OK", [("Content-type", "text/plain")])
//!     return time.ctime()
//! ```
//!
//! The body is exactly what Python's `time.ctime()` returns, e.g.
//! `Sun Jun  7 23:07:04 2015` (no trailing newline). Exported as
//! `application`: `host ./libctime.so:application`.

use chrono::{DateTime, Local, TimeZone};
use plugin_api::{export_app, Environ, ResponseError, StartResponse};

/// The app: `200 OK`, `text/plain`, the local time in `time.ctime()` form.
fn application(_environ: &Environ, start_response: &mut StartResponse) -> Result<String, ResponseError> {
    start_response.start("200 OK", &[("Content-Type", "text/plain")])?;
    Ok(ctime(&Local::now()))
}

/// Formats `time` like Python's `time.ctime()`: `Sun Jun  7 23:07:04 2015`,
/// with the day of the month space-padded to two characters.
fn ctime<Tz: TimeZone>(time: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    time.format("%a %b %e %H:%M:%S %Y").to_string()
}

export_app!(application);

#[cfg(test)]
mod tests {
    use super::ctime;
    use chrono::{FixedOffset, TimeZone, Utc};

    #[test]
    fn formats_like_python_time_ctime() {
        // The date in seed 000's hard-coded `Date` header.
        let single_digit_day = Utc.with_ymd_and_hms(2015, 6, 7, 23, 7, 4).single().expect("valid date");
        assert_eq!(ctime(&single_digit_day), "Sun Jun  7 23:07:04 2015");

        let two_digit_day = Utc
            .with_ymd_and_hms(2026, 11, 21, 8, 41, 5)
            .single()
            .expect("valid date");
        assert_eq!(ctime(&two_digit_day), "Sat Nov 21 08:41:05 2026");
    }

    #[test]
    fn uses_the_wall_clock_of_the_given_zone() {
        let east = FixedOffset::east_opt(8 * 3600).expect("valid offset");
        let time = east
            .with_ymd_and_hms(2019, 1, 1, 22, 9, 58)
            .single()
            .expect("valid date");
        assert_eq!(ctime(&time), "Tue Jan  1 22:09:58 2019");
    }
}

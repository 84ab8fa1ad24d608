//! Cron schedules of scheduled API-call fields: parse a cron expression and find its next run.
//!
//! Supported: standard five-field cron (minute, hour, day-of-month, month, day-of-week), an
//! optional leading seconds field (six fields), `*`, lists `1,5`, ranges `1-5`, steps `*/15`
//! and `10-50/10`, month names `JAN`–`DEC` and weekday names `SUN`–`SAT` (any case), 0 and 7
//! both Sunday, and the macros `@hourly @daily @midnight @weekly @monthly @yearly @annually`.
//! As in Vixie cron, when both the day-of-month and the day-of-week field are restricted
//! (neither starts with `*`), a day matching either one runs; otherwise a day must match both.
//! Everything is in UTC. Quartz extensions (`?`, `L`, `W`, `#`) and anything else are refused
//! with a sentence naming the bad part.
//!
//! Why our own parser rather than a crate: the well-kept crates (`croner`, `cron`) are built
//! on chrono, which core does not otherwise pull in (even CEL is built without it), so every
//! time would have to be converted; both accept syntax we want to refuse (`L`, `W`, `#`, `?`)
//! and `cron` requires the seconds field, so we would still need our own checking pass. The
//! grammar is small, and a bitmask per field over the `time` crate already in core is a few
//! hundred lines that keep core pure and fast to build.
//!
//! [`Schedule::next_after`] walks day by day (skipping whole months that cannot match), and
//! within a matching day finds the hour, minute and second from the fields' bitmasks, so even
//! a rare schedule costs at most a few thousand cheap day checks.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// How far ahead [`Schedule::next_after`] looks: eight years, so every February 29 is found,
/// even across 2100, which is not a leap year.
const HORIZON_DAYS: i64 = 8 * 366;

/// A parsed cron expression (see the module documentation for the syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1 to 31.
    days: u64,
    /// Bits 1 to 12.
    months: u64,
    /// Bits 0 (Sunday) to 6 (Saturday).
    weekdays: u64,
    /// Both day fields are restricted: a day matching either runs (Vixie cron).
    either_day: bool,
}

/// One field of the expression: its name in messages, its range and the names it accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// The highest value `*` stands for (below `max` only for the day-of-week field).
    star_max: u32,
    /// Names for the values from `min` on, matched without regard to case.
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    star_max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    star_max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    star_max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    star_max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    star_max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
/// 7 is Sunday too; `*` means 0 to 6.
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    star_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

impl Schedule {
    /// Parse a cron expression (five fields, six with leading seconds, or a macro such as
    /// `@daily`). The error is one sentence naming the bad part, e.g.
    /// "`*/0` in the minute field: a step must be at least 1".
    pub fn parse(source: &str) -> Result<Self, String> {
        let text = source.trim();
        if text.is_empty() {
            return Err(
                "the schedule is empty: expected five cron fields such as `0 6 * * *`, \
                 or a macro such as `@daily`"
                    .to_owned(),
            );
        }
        let expanded = if text.starts_with('@') {
            match text.to_ascii_lowercase().as_str() {
                "@hourly" => "0 * * * *",
                "@daily" | "@midnight" => "0 0 * * *",
                "@weekly" => "0 0 * * 0",
                "@monthly" => "0 0 1 * *",
                "@yearly" | "@annually" => "0 0 1 1 *",
                _ => {
                    return Err(format!(
                        "`{text}` is not a known macro: use @hourly, @daily, @midnight, \
                         @weekly, @monthly, @yearly or @annually"
                    ));
                }
            }
        } else {
            text
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match parts.len() {
            5 => (1, &parts[..]),
            6 => (parse_field(parts[0], &SECOND)?, &parts[1..]),
            n => {
                return Err(format!(
                    "`{text}` has {n} field{}: expected 5 (minute hour day-of-month month \
                     day-of-week) or 6 (with leading seconds)",
                    if n == 1 { "" } else { "s" }
                ));
            }
        };
        let [minute, hour, day, month, weekday] = rest else {
            return Err(format!("`{text}`: expected 5 or 6 fields"));
        };
        let minutes = parse_field(minute, &MINUTE)?;
        let hours = parse_field(hour, &HOUR)?;
        let days = parse_field(day, &DAY)?;
        let months = parse_field(month, &MONTH)?;
        let weekdays = parse_field(weekday, &WEEKDAY)?;
        Ok(Self {
            source: source.to_owned(),
            seconds,
            minutes,
            hours,
            days,
            months,
            // Fold Sunday-as-7 onto 0.
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            either_day: !day.starts_with('*') && !weekday.starts_with('*'),
        })
    }

    /// The first run strictly after `after`, in UTC, on a whole minute (or a whole second with
    /// the six-field form); `None` if there is none within the next eight years (such as
    /// `0 0 30 2 *`) or the run would fall past the calendar's end.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.checked_to_offset(UtcOffset::UTC)?;
        let whole = after.checked_sub(Duration::nanoseconds(i64::from(after.nanosecond())))?;
        let start = whole.checked_add(Duration::SECOND)?;
        let mut date = start.date();
        let end = date
            .checked_add(Duration::days(HORIZON_DAYS))
            .unwrap_or(Date::MAX);
        let mut from = (start.hour(), start.minute(), start.second());
        while date <= end {
            if !has(self.months, u32::from(u8::from(date.month()))) {
                date = first_of_next_month(date)?;
                from = (0, 0, 0);
                continue;
            }
            if self.day_matches(date)
                && let Some((h, m, s)) = self.first_time_from(from)
            {
                let time = Time::from_hms(h, m, s).ok()?;
                return Some(PrimitiveDateTime::new(date, time).assume_utc());
            }
            date = date.next_day()?;
            from = (0, 0, 0);
        }
        None
    }

    /// The expression as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = has(self.days, u32::from(date.day()));
        let weekday = has(
            self.weekdays,
            u32::from(date.weekday().number_days_from_sunday()),
        );
        if self.either_day {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first (hour, minute, second) of the schedule at or after `from` on one day.
    fn first_time_from(&self, from: (u8, u8, u8)) -> Option<(u8, u8, u8)> {
        let (h0, m0, s0) = (u32::from(from.0), u32::from(from.1), u32::from(from.2));
        let mut hour = next_bit(self.hours, h0);
        while let Some(h) = hour {
            let mut minute = next_bit(self.minutes, if h == h0 { m0 } else { 0 });
            while let Some(m) = minute {
                let s_from = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, s_from) {
                    // All three are below 60, so the narrowing casts cannot truncate.
                    return Some((h as u8, m as u8, s as u8));
                }
                minute = next_bit(self.minutes, m + 1);
            }
            hour = next_bit(self.hours, h + 1);
        }
        None
    }
}

fn has(mask: u64, bit: u32) -> bool {
    bit < 64 && mask & (1 << bit) != 0
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = match date.month() {
        Month::December => (date.year().checked_add(1)?, Month::January),
        m => (date.year(), m.next()),
    };
    Date::from_calendar_date(year, month, 1).ok()
}

/// Parse one field into a bitmask of the values it matches.
fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let name = field.name;
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "`{text}` in the {name} field has an empty list item"
            ));
        }
        if let Some(what) = unsupported(item) {
            return Err(format!(
                "`{item}` in the {name} field: {what} is not supported"
            ));
        }
        let (base, step) = match item.split_once('/') {
            None => (item, 1),
            Some((base, step)) => {
                let step: u32 = step.parse().map_err(|_| {
                    format!("`{item}` in the {name} field: the step `{step}` is not a number")
                })?;
                if step == 0 {
                    return Err(format!(
                        "`{item}` in the {name} field: a step must be at least 1"
                    ));
                }
                (base, step)
            }
        };
        let (low, high) = if base == "*" {
            (field.min, field.star_max)
        } else if let Some((a, b)) = base.split_once('-') {
            if a.is_empty() || b.is_empty() {
                return Err(format!(
                    "`{item}` in the {name} field: a range needs a value on both sides"
                ));
            }
            let (low, high) = (value(a, field)?, value(b, field)?);
            if low > high {
                return Err(format!(
                    "`{item}` in the {name} field: a range must go from low to high"
                ));
            }
            (low, high)
        } else if item.contains('/') {
            return Err(format!(
                "`{item}` in the {name} field: a step needs `*` or a range before it, \
                 such as `{base}-{}/{step}`",
                field.max
            ));
        } else {
            let v = value(base, field)?;
            (v, v)
        };
        let mut v = low;
        while v <= high {
            mask |= 1 << v;
            v = v.saturating_add(step);
        }
    }
    Ok(mask)
}

/// The Quartz extension an item uses, if any, for a clearer refusal than "not a number".
fn unsupported(item: &str) -> Option<&'static str> {
    let digits_then = |token: &str, suffix: &str| {
        token
            .to_ascii_uppercase()
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
    };
    let tokens = || item.split(['-', '/']);
    if item.contains('?') {
        Some("`?` (no specific value)")
    } else if item.contains('#') {
        Some("`#` (nth weekday of the month)")
    } else if tokens().any(|t| digits_then(t, "LW") || digits_then(t, "L")) {
        Some("`L` (last day)")
    } else if tokens().any(|t| digits_then(t, "W")) {
        Some("`W` (nearest weekday)")
    } else {
        None
    }
}

/// One value of a field: a number in range or, where the field has them, a name.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let name = field.name;
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        // At most twelve names, so the index fits.
        return Ok(field.min + i as u32);
    }
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{text}` in the {name} field is out of range: it must be from {} to {}",
                field.min, field.max
            )),
        };
    }
    Err(match (field.names.first(), field.names.last()) {
        (Some(first), Some(last)) => {
            format!("`{text}` in the {name} field is not a number or a name from {first} to {last}")
        }
        _ => format!("`{text}` in the {name} field is not a number"),
    })
}

#[cfg(test)]
mod tests;

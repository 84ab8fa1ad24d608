use super::*;
use proptest::prelude::*;
use time::macros::datetime;

fn schedule(source: &str) -> Schedule {
    Schedule::parse(source).unwrap_or_else(|e| panic!("`{source}` should parse: {e}"))
}

fn error(source: &str) -> String {
    match Schedule::parse(source) {
        Ok(s) => panic!("`{source}` should be refused, got {s:?}"),
        Err(e) => e,
    }
}

/// The next `n` runs after `from`.
fn runs(source: &str, from: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
    let s = schedule(source);
    let mut out = Vec::new();
    let mut at = from;
    for _ in 0..n {
        at = s.next_after(at).expect("a next run");
        out.push(at);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing and its errors

#[test]
fn parse_errors_name_the_bad_part() {
    let cases = [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("* * * *", "`* * * *` has 4 fields: expected 5"),
        ("*", "`*` has 1 field: expected 5"),
        ("* * * * * * *", "has 7 fields"),
        (
            "*/0 * * * *",
            "`*/0` in the minute field: a step must be at least 1",
        ),
        (
            "*/x * * * *",
            "`*/x` in the minute field: the step `x` is not a number",
        ),
        (
            "60 * * * *",
            "`60` in the minute field is out of range: it must be from 0 to 59",
        ),
        ("0 24 * * *", "`24` in the hour field is out of range"),
        ("0 0 0 * *", "`0` in the day-of-month field is out of range"),
        (
            "0 0 32 * *",
            "`32` in the day-of-month field is out of range",
        ),
        ("0 0 * 13 *", "`13` in the month field is out of range"),
        ("0 0 * * 8", "`8` in the day-of-week field is out of range"),
        ("60 0 0 * * *", "`60` in the second field is out of range"),
        ("99999999999 * * * *", "in the minute field is out of range"),
        (
            "0 0 ? * MON",
            "`?` in the day-of-month field: `?` (no specific value) is not supported",
        ),
        (
            "0 0 L * *",
            "`L` in the day-of-month field: `L` (last day) is not supported",
        ),
        ("0 0 LW * *", "`L` (last day) is not supported"),
        (
            "0 0 * * 5L",
            "`5L` in the day-of-week field: `L` (last day) is not supported",
        ),
        (
            "0 0 15W * *",
            "`15W` in the day-of-month field: `W` (nearest weekday) is not supported",
        ),
        (
            "0 0 * * MON#2",
            "`MON#2` in the day-of-week field: `#` (nth weekday of the month)",
        ),
        (
            "5-1 * * * *",
            "`5-1` in the minute field: a range must go from low to high",
        ),
        (
            "-5 * * * *",
            "`-5` in the minute field: a range needs a value on both sides",
        ),
        (
            "5/15 * * * *",
            "`5/15` in the minute field: a step needs `*` or a range before it",
        ),
        (
            "1,,2 * * * *",
            "`1,,2` in the minute field has an empty list item",
        ),
        (
            "0 0 * FOO *",
            "`FOO` in the month field is not a number or a name from JAN to DEC",
        ),
        (
            "0 0 * * MONDAY",
            "`MONDAY` in the day-of-week field is not a number or a name",
        ),
        ("0 MON * * *", "`MON` in the hour field is not a number"),
        (
            "0 0 * JAN-MON *",
            "`MON` in the month field is not a number or a name",
        ),
        ("@fortnightly", "`@fortnightly` is not a known macro"),
        ("@daily 5", "is not a known macro"),
    ];
    for (source, want) in cases {
        let got = error(source);
        assert!(
            got.contains(want),
            "`{source}`: {got:?} should contain {want:?}"
        );
    }
}

#[test]
fn valid_expressions_parse_and_keep_their_text() {
    for source in [
        "* * * * *",
        "*/15 * * * *",
        "10-50/10 * * * *",
        "0 9-17 * * MON-FRI",
        "0 0 1,15 jan,Jul *",
        "0 0 * * 0,7",
        "30 0 6 * * *",
        "@hourly",
        "@DAILY",
        " 0 6 * * * ",
    ] {
        assert_eq!(schedule(source).as_str(), source);
    }
}

#[test]
fn macros_equal_their_five_field_forms() {
    let same = |a: &str, b: &str| {
        let (x, y) = (schedule(a), schedule(b));
        assert_eq!(
            (x.minutes, x.hours, x.days, x.months),
            (y.minutes, y.hours, y.days, y.months)
        );
        assert_eq!(
            (x.weekdays, x.either_day, x.seconds),
            (y.weekdays, y.either_day, y.seconds)
        );
    };
    same("@hourly", "0 * * * *");
    same("@daily", "0 0 * * *");
    same("@midnight", "0 0 * * *");
    same("@weekly", "0 0 * * 0");
    same("@monthly", "0 0 1 * *");
    same("@yearly", "0 0 1 1 *");
    same("@annually", "0 0 1 1 *");
}

// ---------------------------------------------------------------------------------------------
// next_after

#[test]
fn every_minute_runs_on_the_next_whole_minute() {
    let s = schedule("* * * * *");
    assert_eq!(
        s.next_after(datetime!(2024-05-01 10:00:00 UTC)),
        Some(datetime!(2024-05-01 10:01:00 UTC))
    );
    assert_eq!(
        s.next_after(datetime!(2024-05-01 10:00:59.999 UTC)),
        Some(datetime!(2024-05-01 10:01:00 UTC))
    );
    assert_eq!(
        s.next_after(datetime!(2024-05-01 10:00:00.5 UTC)),
        Some(datetime!(2024-05-01 10:01:00 UTC))
    );
}

#[test]
fn every_fifteen_minutes() {
    assert_eq!(
        runs("*/15 * * * *", datetime!(2024-05-01 10:07:00 UTC), 4),
        [
            datetime!(2024-05-01 10:15:00 UTC),
            datetime!(2024-05-01 10:30:00 UTC),
            datetime!(2024-05-01 10:45:00 UTC),
            datetime!(2024-05-01 11:00:00 UTC),
        ]
    );
}

#[test]
fn stepped_range() {
    assert_eq!(
        runs("10-50/10 * * * *", datetime!(2024-05-01 10:45:00 UTC), 3),
        [
            datetime!(2024-05-01 10:50:00 UTC),
            datetime!(2024-05-01 11:10:00 UTC),
            datetime!(2024-05-01 11:20:00 UTC),
        ]
    );
}

#[test]
fn hourly_at_half_past() {
    assert_eq!(
        runs("30 * * * *", datetime!(2024-05-01 10:30:00 UTC), 2),
        [
            datetime!(2024-05-01 11:30:00 UTC),
            datetime!(2024-05-01 12:30:00 UTC)
        ]
    );
}

#[test]
fn daily_at_six() {
    assert_eq!(
        runs("0 6 * * *", datetime!(2024-05-01 06:00:00 UTC), 2),
        [
            datetime!(2024-05-02 06:00:00 UTC),
            datetime!(2024-05-03 06:00:00 UTC)
        ]
    );
    assert_eq!(
        schedule("0 6 * * *").next_after(datetime!(2024-05-01 05:59:59 UTC)),
        Some(datetime!(2024-05-01 06:00:00 UTC))
    );
}

#[test]
fn weekdays_nine_to_five_on_the_hour() {
    // 2024-05-03 is a Friday.
    let got = runs("0 9-17 * * 1-5", datetime!(2024-05-03 16:30:00 UTC), 3);
    assert_eq!(
        got,
        [
            datetime!(2024-05-03 17:00:00 UTC),
            datetime!(2024-05-06 09:00:00 UTC),
            datetime!(2024-05-06 10:00:00 UTC),
        ]
    );
    assert_eq!(
        runs("0 9-17 * * MON-FRI", datetime!(2024-05-03 16:30:00 UTC), 3),
        got
    );
}

#[test]
fn monthly_on_the_31st_skips_short_months() {
    assert_eq!(
        runs("0 0 31 * *", datetime!(2024-01-31 00:00:00 UTC), 4),
        [
            datetime!(2024-03-31 00:00:00 UTC),
            datetime!(2024-05-31 00:00:00 UTC),
            datetime!(2024-07-31 00:00:00 UTC),
            datetime!(2024-08-31 00:00:00 UTC),
        ]
    );
}

#[test]
fn february_29th_only_in_leap_years() {
    assert_eq!(
        runs("0 12 29 2 *", datetime!(2023-01-01 00:00:00 UTC), 3),
        [
            datetime!(2024-02-29 12:00:00 UTC),
            datetime!(2028-02-29 12:00:00 UTC),
            datetime!(2032-02-29 12:00:00 UTC),
        ]
    );
    // 2100 is not a leap year: eight years to the next one.
    assert_eq!(
        schedule("0 0 29 2 *").next_after(datetime!(2096-03-01 00:00:00 UTC)),
        Some(datetime!(2104-02-29 00:00:00 UTC))
    );
}

#[test]
fn day_of_month_or_day_of_week_when_both_are_restricted() {
    // The 13th, or any Friday: 2024-09-06 (Fri), 09-13 (Fri and 13th), 09-20 (Fri), 09-27 (Fri),
    // 10-04 (Fri), 10-11 (Fri), 10-13 (Sun, the 13th).
    let got = runs("0 0 13 * 5", datetime!(2024-09-01 00:00:00 UTC), 7);
    let days: Vec<_> = got.iter().map(|t| (u8::from(t.month()), t.day())).collect();
    assert_eq!(
        days,
        [
            (9, 6),
            (9, 13),
            (9, 20),
            (9, 27),
            (10, 4),
            (10, 11),
            (10, 13)
        ]
    );
}

#[test]
fn a_starred_day_field_makes_the_other_decide() {
    // `*` day-of-month: Fridays only.
    let got = runs("0 0 * * 5", datetime!(2024-09-01 00:00:00 UTC), 3);
    assert!(
        got.iter().all(|t| t.weekday() == time::Weekday::Friday),
        "{got:?}"
    );
    // `*/2` counts as starred (Vixie): odd days that are also Mondays.
    let got = runs("0 0 */2 * 1", datetime!(2024-09-01 00:00:00 UTC), 3);
    for t in &got {
        assert_eq!(t.weekday(), time::Weekday::Monday, "{t}");
        assert_eq!(t.day() % 2, 1, "{t}");
    }
}

#[test]
fn sunday_is_both_zero_and_seven() {
    let from = datetime!(2024-05-01 00:00:00 UTC); // a Wednesday
    let sundays = runs("0 0 * * 0", from, 3);
    assert_eq!(sundays[0], datetime!(2024-05-05 00:00:00 UTC));
    assert_eq!(runs("0 0 * * 7", from, 3), sundays);
    assert_eq!(runs("0 0 * * SUN", from, 3), sundays);
    assert_eq!(runs("0 0 * * sun", from, 3), sundays);
    // A range up to 7 ends on Sunday.
    assert_eq!(
        runs("0 0 * * 6-7", from, 2),
        [
            datetime!(2024-05-04 00:00:00 UTC),
            datetime!(2024-05-05 00:00:00 UTC)
        ]
    );
}

#[test]
fn month_and_weekday_names_in_any_case() {
    assert_eq!(
        runs("0 8 * mar,Sep wed", datetime!(2024-01-01 00:00:00 UTC), 2),
        [
            datetime!(2024-03-06 08:00:00 UTC),
            datetime!(2024-03-13 08:00:00 UTC)
        ]
    );
    assert_eq!(
        runs("0 0 1 JAN-mar *", datetime!(2024-02-15 00:00:00 UTC), 2),
        [
            datetime!(2024-03-01 00:00:00 UTC),
            datetime!(2025-01-01 00:00:00 UTC)
        ]
    );
}

#[test]
fn six_fields_run_on_seconds() {
    assert_eq!(
        runs("*/20 * * * * *", datetime!(2024-05-01 10:00:05 UTC), 4),
        [
            datetime!(2024-05-01 10:00:20 UTC),
            datetime!(2024-05-01 10:00:40 UTC),
            datetime!(2024-05-01 10:01:00 UTC),
            datetime!(2024-05-01 10:01:20 UTC),
        ]
    );
    assert_eq!(
        schedule("30 15 6 * * *").next_after(datetime!(2024-05-01 06:15:30 UTC)),
        Some(datetime!(2024-05-02 06:15:30 UTC))
    );
}

#[test]
fn an_impossible_date_has_no_next_run() {
    let from = datetime!(2024-01-01 00:00:00 UTC);
    assert_eq!(schedule("0 0 30 2 *").next_after(from), None);
    assert_eq!(schedule("0 0 31 4,6,9,11 *").next_after(from), None);
}

#[test]
fn runs_cross_the_year_end() {
    assert_eq!(
        runs("0 0 * * *", datetime!(2024-12-31 23:59:00 UTC), 1),
        [datetime!(2025-01-01 00:00:00 UTC)]
    );
    assert_eq!(
        runs("@yearly", datetime!(2024-06-01 00:00:00 UTC), 2),
        [
            datetime!(2025-01-01 00:00:00 UTC),
            datetime!(2026-01-01 00:00:00 UTC)
        ]
    );
    assert_eq!(
        runs("59 23 31 12 *", datetime!(2024-12-31 23:59:00 UTC), 1),
        [datetime!(2025-12-31 23:59:00 UTC)]
    );
}

#[test]
fn other_offsets_are_read_as_the_same_instant_and_answered_in_utc() {
    let got = schedule("0 6 * * *")
        .next_after(datetime!(2024-05-01 07:30:00 +02:00))
        .expect("a run");
    assert_eq!(got, datetime!(2024-05-01 06:00:00 UTC));
    assert_eq!(got.offset(), UtcOffset::UTC);
}

#[test]
fn the_end_of_the_calendar_gives_none() {
    let s = schedule("* * * * *");
    assert_eq!(s.next_after(datetime!(9999-12-31 23:59:00 UTC)), None);
    assert_eq!(
        s.next_after(datetime!(9999-12-31 23:58:00 UTC)),
        Some(datetime!(9999-12-31 23:59:00 UTC))
    );
    // The same instant as 10000-01-01 in UTC, past the calendar.
    assert_eq!(s.next_after(datetime!(9999-12-31 23:00:00 -02:00)), None);
}

// ---------------------------------------------------------------------------------------------
// Property: the result is the first matching time, checked by an independent matcher.

/// Whether `value` matches one field's text, read directly from the text.
fn field_matches(text: &str, value: u32, min: u32, max: u32, names: &[&str]) -> bool {
    let number = |s: &str| -> u32 {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| min + i as u32)
            .unwrap_or_else(|| s.parse().expect("a number"))
    };
    text.split(',').any(|item| {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => (b, s.parse::<u32>().expect("a step")),
            None => (item, 1),
        };
        let (low, high) = match base.split_once('-') {
            _ if base == "*" => (min, max),
            Some((a, b)) => (number(a), number(b)),
            None => (number(base), number(base)),
        };
        (low..=high).contains(&value) && (value - low).is_multiple_of(step)
    })
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Whether `t` is a run of `expr` (five or six fields, no macros).
fn reference_matches(expr: &str, t: OffsetDateTime) -> bool {
    let mut f: Vec<&str> = expr.split_whitespace().collect();
    if f.len() == 5 {
        f.insert(0, "0");
    }
    let wd = u32::from(t.weekday().number_days_from_sunday());
    let dom = field_matches(f[3], u32::from(t.day()), 1, 31, &[]);
    let dow =
        field_matches(f[5], wd, 0, 7, &DAYS) || (wd == 0 && field_matches(f[5], 7, 0, 7, &DAYS));
    let day = if f[3].starts_with('*') || f[5].starts_with('*') {
        dom && dow
    } else {
        dom || dow
    };
    t.nanosecond() == 0
        && field_matches(f[0], u32::from(t.second()), 0, 59, &[])
        && field_matches(f[1], u32::from(t.minute()), 0, 59, &[])
        && field_matches(f[2], u32::from(t.hour()), 0, 23, &[])
        && field_matches(f[4], u32::from(u8::from(t.month())), 1, 12, &MONTHS)
        && day
}

/// One random field: a list of `*`, `*/s`, `a`, `a-b` and `a-b/s` items, with names sometimes.
fn field(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let value = move |v: u32, name: bool| {
        let i = (v - min) as usize;
        if name && i < names.len() {
            names[i].to_owned()
        } else {
            v.to_string()
        }
    };
    let item = prop_oneof![
        Just("*".to_owned()),
        (1..=max).prop_map(|s| format!("*/{s}")),
        (min..=max, any::<bool>()).prop_map(move |(a, n)| value(a, n)),
        (min..=max, min..=max, any::<bool>()).prop_map(move |(a, b, n)| {
            format!("{}-{}", value(a.min(b), n), value(a.max(b), n))
        }),
        (min..=max, min..=max, 1..=max)
            .prop_map(move |(a, b, s)| { format!("{}-{}/{s}", a.min(b), a.max(b)) }),
    ];
    proptest::collection::vec(item, 1..=3).prop_map(|items| items.join(","))
}

fn expression() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.3, field(0, 59, &[])),
        field(0, 59, &[]),
        field(0, 23, &[]),
        field(1, 31, &[]),
        field(1, 12, &MONTHS),
        field(0, 7, &DAYS),
    )
        .prop_map(|(s, mi, h, dom, mo, dow)| {
            let five = format!("{mi} {h} {dom} {mo} {dow}");
            match s {
                Some(s) => format!("{s} {five}"),
                None => five,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn next_after_is_the_first_matching_time_after(
        expr in expression(),
        secs in 946_684_800i64..4_102_444_800, // 2000 to 2100
        nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
    ) {
        let s = Schedule::parse(&expr).map_err(TestCaseError::fail)?;
        let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range")
            + Duration::nanoseconds(i64::from(nanos));
        let Some(r) = s.next_after(t) else {
            // Only impossible dates (such as the 31st of short months) have no next run here.
            return Err(TestCaseError::reject("no run within the horizon"));
        };
        prop_assert!(r > t, "{r} is not after {t}");
        prop_assert_eq!(r.offset(), UtcOffset::UTC);
        prop_assert!(reference_matches(&expr, r), "`{}` does not match {}", expr, r);
        prop_assert_eq!(s.next_after(r - Duration::SECOND), Some(r));
        // Nothing in between matches, where that is cheap to check.
        let seconds = expr.split_whitespace().count() == 6;
        let step = if seconds { Duration::SECOND } else { Duration::MINUTE };
        if (r - t) / step < 5_000.0 {
            let whole = t - Duration::nanoseconds(i64::from(t.nanosecond()));
            let mut c = if seconds { whole } else { whole - Duration::seconds(i64::from(whole.second())) } + step;
            while c < r {
                prop_assert!(!reference_matches(&expr, c), "`{}` matches {} before {}", expr, c, r);
                c += step;
            }
        }
    }
}

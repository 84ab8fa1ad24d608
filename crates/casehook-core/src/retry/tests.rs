use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use time::macros::datetime;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn no_jitter() -> RetryPolicy {
    RetryPolicy {
        jitter: false,
        ..RetryPolicy::default()
    }
}

#[test]
fn error_kinds_have_stable_snake_case_names() {
    let all = [
        (ErrorKind::Dns, "dns"),
        (ErrorKind::Connect, "connect"),
        (ErrorKind::Tls, "tls"),
        (ErrorKind::Timeout, "timeout"),
        (ErrorKind::BlockedBySsrfGuard, "blocked_by_ssrf_guard"),
        (ErrorKind::InvalidUrl, "invalid_url"),
        (ErrorKind::BodyTooLarge, "body_too_large"),
        (ErrorKind::Io, "io"),
        (ErrorKind::HttpStatus, "http_status"),
    ];
    for (kind, name) in all {
        assert_eq!(serde_json::to_value(kind).expect("serializes"), json!(name));
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.to_string(), name);
        let back: ErrorKind = serde_json::from_value(json!(name)).expect("parses");
        assert_eq!(back, kind);
    }
    assert_eq!(
        serde_json::to_value(Verdict::Gone).expect("ok"),
        json!("gone")
    );
}

#[test]
fn two_hundreds_succeed() {
    let p = RetryPolicy::default();
    for s in [200, 201, 202, 204, 299] {
        assert_eq!(
            p.verdict(AttemptOutcome::Status(s)),
            Verdict::Success,
            "{s}"
        );
    }
}

#[test]
fn redirects_fail_without_retry() {
    let p = RetryPolicy::default();
    for s in [300, 301, 302, 303, 307, 308] {
        assert_eq!(p.verdict(AttemptOutcome::Status(s)), Verdict::Fail, "{s}");
    }
}

#[test]
fn gone_disables_even_when_client_errors_are_retried() {
    let lenient = RetryPolicy {
        retry_client_errors: true,
        ..RetryPolicy::default()
    };
    for p in [RetryPolicy::default(), lenient] {
        assert_eq!(p.verdict(AttemptOutcome::Status(410)), Verdict::Gone);
    }
}

#[test]
fn throttling_timeouts_and_server_errors_retry() {
    let p = RetryPolicy::default();
    for s in [408, 425, 429, 500, 501, 502, 503, 504, 520, 599] {
        assert_eq!(p.verdict(AttemptOutcome::Status(s)), Verdict::Retry, "{s}");
    }
}

#[test]
fn other_client_errors_fail_unless_the_policy_retries_them() {
    let strict = RetryPolicy::default();
    let lenient = RetryPolicy {
        retry_client_errors: true,
        ..RetryPolicy::default()
    };
    for s in [400, 401, 403, 404, 409, 413, 422, 499] {
        assert_eq!(
            strict.verdict(AttemptOutcome::Status(s)),
            Verdict::Fail,
            "{s}"
        );
        assert_eq!(
            lenient.verdict(AttemptOutcome::Status(s)),
            Verdict::Retry,
            "{s}"
        );
    }
}

#[test]
fn invalid_statuses_fail() {
    let p = RetryPolicy::default();
    for s in [0, 100, 101, 199, 600, 999] {
        assert_eq!(p.verdict(AttemptOutcome::Status(s)), Verdict::Fail, "{s}");
    }
}

#[test]
fn network_errors_retry_and_configuration_errors_fail() {
    let p = RetryPolicy::default();
    use ErrorKind::*;
    for kind in [Dns, Connect, Tls, Timeout, Io, HttpStatus] {
        assert_eq!(
            p.verdict(AttemptOutcome::Error(kind)),
            Verdict::Retry,
            "{kind}"
        );
    }
    for kind in [BlockedBySsrfGuard, InvalidUrl, BodyTooLarge] {
        assert_eq!(
            p.verdict(AttemptOutcome::Error(kind)),
            Verdict::Fail,
            "{kind}"
        );
    }
}

#[test]
fn outcomes_name_their_error_kind_for_the_log() {
    assert_eq!(AttemptOutcome::Status(204).error_kind(), None);
    assert_eq!(
        AttemptOutcome::Status(503).error_kind(),
        Some(ErrorKind::HttpStatus)
    );
    assert_eq!(
        AttemptOutcome::Error(ErrorKind::Tls).error_kind(),
        Some(ErrorKind::Tls)
    );
}

#[test]
fn the_default_schedule_is_the_standard_webhooks_one() {
    let p = RetryPolicy::default();
    let expected = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];
    assert_eq!(p.schedule, expected.map(secs).to_vec());
    assert_eq!(p.max_attempts(), 10);
    // 75:35:05, as in the spec's table.
    assert_eq!(p.total_span(), secs(75 * 3600 + 35 * 60 + 5));
    assert!(p.jitter);
    assert!(!p.retry_client_errors);
    p.validate().expect("default is valid");
}

#[test]
fn delays_follow_the_schedule_then_run_out() {
    let p = no_jitter();
    let mut r = rng();
    assert_eq!(p.next_delay(0, None, &mut r), Some(Duration::ZERO));
    for (i, d) in p.schedule.iter().enumerate() {
        let failed = u32::try_from(i + 1).expect("small");
        assert_eq!(p.next_delay(failed, None, &mut r), Some(*d));
    }
    assert_eq!(p.next_delay(10, None, &mut r), None);
    assert_eq!(p.next_delay(u32::MAX, None, &mut r), None);
    assert_eq!(RetryPolicy::none().next_delay(1, None, &mut r), None);
}

#[test]
fn jitter_stays_within_twenty_percent_and_varies() {
    let p = RetryPolicy {
        schedule: vec![secs(100)],
        ..RetryPolicy::default()
    };
    let mut r = rng();
    let delays: Vec<Duration> = (0..500)
        .filter_map(|_| p.next_delay(1, None, &mut r))
        .collect();
    assert_eq!(delays.len(), 500);
    assert!(delays.iter().all(|d| *d >= secs(80) && *d <= secs(120)));
    let below = delays.iter().filter(|d| **d < secs(100)).count();
    assert!((150..350).contains(&below), "roughly half below: {below}");
    let zero = RetryPolicy {
        schedule: vec![Duration::ZERO],
        ..RetryPolicy::default()
    };
    assert_eq!(zero.next_delay(1, None, &mut r), Some(Duration::ZERO));
}

#[test]
fn seeded_rngs_give_repeatable_delays() {
    let p = RetryPolicy::default();
    let a: Vec<_> = (1..=9).map(|n| p.next_delay(n, None, &mut rng())).collect();
    let b: Vec<_> = (1..=9).map(|n| p.next_delay(n, None, &mut rng())).collect();
    assert_eq!(a, b);
}

#[test]
fn retry_after_is_a_floor_capped_by_max_delay() {
    let p = RetryPolicy {
        schedule: vec![secs(5), secs(60)],
        max_delay: secs(3600),
        jitter: false,
        ..RetryPolicy::default()
    };
    let mut r = rng();
    assert_eq!(p.next_delay(1, Some(secs(120)), &mut r), Some(secs(120)));
    assert_eq!(p.next_delay(2, Some(secs(10)), &mut r), Some(secs(60)));
    assert_eq!(
        p.next_delay(1, Some(secs(86_400)), &mut r),
        Some(secs(3600))
    );
    // An exhausted schedule stays exhausted whatever the receiver asks.
    assert_eq!(p.next_delay(3, Some(secs(1)), &mut r), None);
}

#[test]
fn validation_explains_each_limit() {
    let too_many = RetryPolicy {
        schedule: vec![secs(1); 51],
        ..RetryPolicy::default()
    };
    assert_eq!(
        too_many.validate(),
        Err(RetryPolicyError::TooManyRetries(51))
    );
    let fifty = RetryPolicy {
        schedule: vec![secs(1); 50],
        ..RetryPolicy::default()
    };
    fifty.validate().expect("50 is allowed");
    RetryPolicy::none()
        .validate()
        .expect("no retries is allowed");

    let week = MAX_DELAY_LIMIT;
    let long = RetryPolicy {
        schedule: vec![secs(1), week + secs(1)],
        max_delay: week,
        ..RetryPolicy::default()
    };
    let err = long.validate().expect_err("too long");
    assert_eq!(
        err,
        RetryPolicyError::DelayTooLong {
            index: 1,
            secs: 604_801
        }
    );
    assert!(err.to_string().contains("schedule_secs[1]"), "{err}");

    let above = RetryPolicy {
        schedule: vec![secs(7200)],
        max_delay: secs(3600),
        ..RetryPolicy::default()
    };
    assert!(matches!(
        above.validate(),
        Err(RetryPolicyError::DelayAboveMax { index: 0, .. })
    ));
    for bad in [Duration::ZERO, week + secs(1)] {
        let p = RetryPolicy {
            max_delay: bad,
            schedule: vec![],
            ..RetryPolicy::default()
        };
        assert!(matches!(
            p.validate(),
            Err(RetryPolicyError::BadMaxDelay(_))
        ));
    }
}

#[test]
fn policies_serialize_as_seconds_and_round_trip() {
    let p = RetryPolicy::default();
    let v = serde_json::to_value(&p).expect("serializes");
    assert_eq!(
        v,
        json!({
            "schedule_secs": [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
            "jitter": true,
            "retry_client_errors": false,
            "max_delay_secs": 172800
        })
    );
    let back: RetryPolicy = serde_json::from_value(v).expect("parses");
    assert_eq!(back, p);
}

#[test]
fn missing_keys_take_the_defaults() {
    let p: RetryPolicy = serde_json::from_value(json!({})).expect("empty object");
    assert_eq!(p, RetryPolicy::default());
    let p: RetryPolicy =
        serde_json::from_value(json!({"schedule_secs": [1, 2], "jitter": false})).expect("ok");
    assert_eq!(p.schedule, vec![secs(1), secs(2)]);
    assert!(!p.jitter);
    assert_eq!(p.max_delay, RetryPolicy::default().max_delay);
}

#[test]
fn invalid_json_policies_are_refused_with_the_reason() {
    let err = serde_json::from_value::<RetryPolicy>(json!({"schedule_secs": [700000]}))
        .expect_err("too long");
    assert!(err.to_string().contains("schedule_secs[0]"), "{err}");
    let err =
        serde_json::from_value::<RetryPolicy>(json!({"schedule": [5]})).expect_err("unknown key");
    assert!(
        err.to_string().contains("unknown field `schedule`"),
        "{err}"
    );
    assert!(serde_json::from_value::<RetryPolicy>(json!({"schedule_secs": [-1]})).is_err());
}

#[test]
fn retry_after_accepts_seconds() {
    let now = datetime!(2024-05-01 12:00:00 UTC);
    assert_eq!(parse_retry_after("120", now), Some(secs(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(secs(u64::MAX))
    );
}

#[test]
fn retry_after_accepts_http_dates() {
    let now = datetime!(2015-10-21 07:27:00 UTC);
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(secs(60))
    );
    // The obsolete RFC 850 and asctime forms, which recipients must still accept.
    assert_eq!(
        parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now),
        Some(secs(60))
    );
    assert_eq!(
        parse_retry_after("Wed Oct 21 07:28:00 2015", now),
        Some(secs(60))
    );
    // A date already past means "now".
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        Some(Duration::ZERO)
    );
}

#[test]
fn retry_after_rejects_anything_else() {
    let now = datetime!(2024-05-01 12:00:00 UTC);
    for bad in [
        "",
        "-5",
        "1.5",
        "soon",
        "2024-05-01T12:00:00Z",
        "Wed, 99 Oct 2015",
    ] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad}");
    }
}

//! What an HTTP attempt's outcome means for its delivery (success, retry, fail, gone), and when
//! to try again: the retry policy an endpoint or API call carries in its JSON configuration,
//! and the `Retry-After` header.
//!
//! Pure: the caller passes the outcome, the clock and the random source, so the workers' timing
//! decisions are testable without sleeping.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why an attempt failed without (or with) an HTTP answer. The names are stored in the attempt
/// log and shown by the API: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection could be made (refused, reset, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No complete answer within the timeout.
    Timeout,
    /// The destination resolved to an address outbound requests may not reach.
    BlockedBySsrfGuard,
    /// The URL is malformed or uses a scheme other than http(s).
    InvalidUrl,
    /// A body over the configured size limit: the same content would be refused again.
    BodyTooLarge,
    /// The connection broke while sending or receiving.
    Io,
    /// The receiver answered with a status other than 2xx.
    HttpStatus,
    /// The request could not be authenticated: signing failed, or no access token was
    /// issued.
    Auth,
}

impl ErrorKind {
    /// The stored name (`blocked_by_ssrf_guard`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::BlockedBySsrfGuard => "blocked_by_ssrf_guard",
            Self::InvalidUrl => "invalid_url",
            Self::BodyTooLarge => "body_too_large",
            Self::Io => "io",
            Self::HttpStatus => "http_status",
            Self::Auth => "auth",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one HTTP attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No usable answer arrived.
    Error(ErrorKind),
}

impl AttemptOutcome {
    /// The kind to record in the attempt log: `http_status` for any non-2xx answer, `None`
    /// for a success.
    pub fn error_kind(self) -> Option<ErrorKind> {
        match self {
            Self::Status(s) if (200..300).contains(&s) => None,
            Self::Status(_) => Some(ErrorKind::HttpStatus),
            Self::Error(kind) => Some(kind),
        }
    }
}

/// What to do with a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Delivered (2xx).
    Success,
    /// Try again later, if the schedule has an attempt left.
    Retry,
    /// Give up: trying again would end the same way.
    Fail,
    /// The receiver answered `410 Gone`: give up and disable the endpoint.
    Gone,
}

/// The longest single delay a policy may contain (and the highest `max_delay`): 7 days.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The most retries a schedule may list.
pub const MAX_SCHEDULE_LEN: usize = 50;

/// How an endpoint (or API call) retries. In JSON:
/// `{"schedule_secs": [5, 300, …], "jitter": true, "retry_client_errors": false,
/// "max_delay_secs": 172800}`; every key is optional and defaults to the values below.
///
/// The default schedule is the one the Standard Webhooks specification recommends: after the
/// immediate first attempt, retries follow 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and
/// 24 h later: 10 attempts over 75 h 35 min 5 s (a little over three days), so a receiver
/// that is down over a long weekend still gets its messages. Jitter moves each delay by up to
/// ±20 % (see [`RetryPolicy::next_delay`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "RetryPolicyConfig")]
pub struct RetryPolicy {
    /// The wait after each failed attempt: the first entry follows the first attempt. Empty
    /// means no retries. Whole seconds in JSON.
    #[serde(rename = "schedule_secs", serialize_with = "secs_vec::serialize")]
    #[schema(value_type = Vec<u64>)]
    pub schedule: Vec<Duration>,
    /// Spread each delay uniformly over ±20 % of its scheduled value.
    pub jitter: bool,
    /// Retry 4xx answers (other than 408, 425, 429 and 410) instead of failing at once: for
    /// receivers that answer 404 or 409 while they are still being set up.
    pub retry_client_errors: bool,
    /// No wait is ever longer, even when the receiver's `Retry-After` asks for more.
    #[serde(rename = "max_delay_secs", serialize_with = "secs::serialize")]
    #[schema(value_type = u64)]
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        let schedule = [
            5,
            5 * MIN,
            30 * MIN,
            2 * HOUR,
            5 * HOUR,
            10 * HOUR,
            14 * HOUR,
            20 * HOUR,
            24 * HOUR,
        ];
        Self {
            schedule: schedule.into_iter().map(Duration::from_secs).collect(),
            jitter: true,
            retry_client_errors: false,
            // Above the longest default entry plus its jitter (28.8 h), so jitter is never
            // clipped, while a receiver's `Retry-After` cannot park a delivery for a week.
            max_delay: Duration::from_secs(48 * HOUR),
        }
    }
}

/// Why a retry policy was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    #[error("the retry schedule lists {0} delays; at most {MAX_SCHEDULE_LEN} are allowed")]
    TooManyRetries(usize),
    #[error(
        "schedule_secs[{index}] is {secs} s; a delay may be at most {} s (7 days)",
        MAX_DELAY_LIMIT.as_secs()
    )]
    DelayTooLong { index: usize, secs: u64 },
    #[error(
        "schedule_secs[{index}] is {secs} s, longer than max_delay_secs ({max_secs} s); raise max_delay_secs or shorten the delay"
    )]
    DelayAboveMax {
        index: usize,
        secs: u64,
        max_secs: u64,
    },
    #[error(
        "max_delay_secs must be between 1 and {limit} s (7 days), not {0}",
        limit = MAX_DELAY_LIMIT.as_secs()
    )]
    BadMaxDelay(u64),
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            schedule: Vec::new(),
            ..Self::default()
        }
    }

    /// Check the limits: at most 50 delays, each at most 7 days and at most `max_delay`,
    /// `max_delay` between 1 s and 7 days. Deserializing checks this too.
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        if self.schedule.len() > MAX_SCHEDULE_LEN {
            return Err(RetryPolicyError::TooManyRetries(self.schedule.len()));
        }
        if self.max_delay < Duration::from_secs(1) || self.max_delay > MAX_DELAY_LIMIT {
            return Err(RetryPolicyError::BadMaxDelay(self.max_delay.as_secs()));
        }
        for (index, delay) in self.schedule.iter().enumerate() {
            let secs = delay.as_secs();
            if *delay > MAX_DELAY_LIMIT {
                return Err(RetryPolicyError::DelayTooLong { index, secs });
            }
            if *delay > self.max_delay {
                let max_secs = self.max_delay.as_secs();
                return Err(RetryPolicyError::DelayAboveMax {
                    index,
                    secs,
                    max_secs,
                });
            }
        }
        Ok(())
    }

    /// Attempts in all: the first one plus one per scheduled delay.
    pub fn max_attempts(&self) -> usize {
        self.schedule.len() + 1
    }

    /// From the first attempt to the last, without jitter.
    pub fn total_span(&self) -> Duration {
        self.schedule.iter().sum()
    }

    /// What an attempt's outcome means under this policy.
    ///
    /// - 2xx: success.
    /// - 3xx: fail. Redirects are not followed: a hop could lead the request past the SSRF
    ///   guard, and the next attempt would meet the same redirect. The user should update
    ///   the URL (the spec's advice too).
    /// - 410: gone, the receiver asks us to stop; the endpoint gets disabled.
    /// - 408, 425, 429 and 5xx: retry (timeouts, "too early", rate limits, server trouble).
    /// - Other 4xx: fail, as the same request would be refused again, unless
    ///   `retry_client_errors` is set.
    /// - 1xx or outside 100-599: fail; that is no valid final answer.
    /// - DNS, connect, TLS, timeout and I/O errors: retry; networks and certificates recover.
    /// - SSRF guard, invalid URL, body too large: fail; nothing changes before the next try.
    /// - Auth (no access token was issued, signing failed): retry.
    /// - `http_status` without a status: retry, the safe side for at-least-once delivery.
    pub fn verdict(&self, outcome: AttemptOutcome) -> Verdict {
        match outcome {
            AttemptOutcome::Status(status) => self.status_verdict(status),
            AttemptOutcome::Error(kind) => match kind {
                ErrorKind::Dns
                | ErrorKind::Connect
                | ErrorKind::Tls
                | ErrorKind::Timeout
                | ErrorKind::Io
                | ErrorKind::HttpStatus
                // Mostly a token endpoint that did not answer; it may recover.
                | ErrorKind::Auth => Verdict::Retry,
                ErrorKind::BlockedBySsrfGuard | ErrorKind::InvalidUrl | ErrorKind::BodyTooLarge => {
                    Verdict::Fail
                }
            },
        }
    }

    fn status_verdict(&self, status: u16) -> Verdict {
        match status {
            200..=299 => Verdict::Success,
            410 => Verdict::Gone,
            408 | 425 | 429 | 500..=599 => Verdict::Retry,
            400..=499 if self.retry_client_errors => Verdict::Retry,
            _ => Verdict::Fail,
        }
    }

    /// How long to wait after `failed_attempts` attempts have failed, or `None` when the
    /// schedule is used up. `0` failed attempts means nothing has been tried yet: go now.
    ///
    /// With jitter the scheduled delay `d` becomes uniform in `[0.8·d, 1.2·d]`. Not AWS's "full
    /// jitter" (uniform in `[0, d]`): that would let some retries come almost at once, and
    /// shorten the schedule's span by half on average. ±20 % is enough to spread the retries
    /// of many deliveries that failed together during one outage, while a schedule keeps
    /// meaning what it says and its total span stays about the same.
    ///
    /// `retry_after` (the receiver's `Retry-After`) is a lower bound; the result never exceeds
    /// `max_delay`.
    pub fn next_delay(
        &self,
        failed_attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut (impl Rng + ?Sized),
    ) -> Option<Duration> {
        let Some(index) = failed_attempts.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        let base = *self.schedule.get(usize::try_from(index).ok()?)?;
        let jittered = if self.jitter { jitter(base, rng) } else { base };
        let delay = retry_after.map_or(jittered, |floor| jittered.max(floor));
        Some(delay.min(self.max_delay))
    }
}

fn jitter(base: Duration, rng: &mut (impl Rng + ?Sized)) -> Duration {
    // Millisecond resolution is plenty for scheduling, and keeps the arithmetic in u64:
    // even u64::MAX seconds cannot overflow once saturated.
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let low = ms - ms / 5;
    let high = ms.saturating_add(ms / 5);
    Duration::from_millis(rng.random_range(low..=high))
}

/// The wait a `Retry-After` header asks for: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete date formats RFC 9110 asks
/// recipients to accept). A date in the past means no wait; anything else is `None`.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number still means "a long time"; `max_delay` caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = OffsetDateTime::from(httpdate::parse_http_date(value).ok()?);
    Some(Duration::try_from(date - now).unwrap_or(Duration::ZERO))
}

/// The serialized form, whose conversion to `RetryPolicy` validates.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RetryPolicyConfig {
    schedule_secs: Vec<u64>,
    jitter: bool,
    retry_client_errors: bool,
    max_delay_secs: u64,
}

impl Default for RetryPolicyConfig {
    fn default() -> Self {
        let d = RetryPolicy::default();
        Self {
            schedule_secs: d.schedule.iter().map(Duration::as_secs).collect(),
            jitter: d.jitter,
            retry_client_errors: d.retry_client_errors,
            max_delay_secs: d.max_delay.as_secs(),
        }
    }
}

impl TryFrom<RetryPolicyConfig> for RetryPolicy {
    type Error = RetryPolicyError;
    fn try_from(c: RetryPolicyConfig) -> Result<Self, Self::Error> {
        let policy = Self {
            schedule: c
                .schedule_secs
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: c.jitter,
            retry_client_errors: c.retry_client_errors,
            max_delay: Duration::from_secs(c.max_delay_secs),
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// A `Duration` as whole seconds (sub-second parts are dropped).
mod secs {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// A list of `Duration`s as whole seconds.
mod secs_vec {
    use std::time::Duration;

    use serde::Serializer;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&d.as_secs())?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests;

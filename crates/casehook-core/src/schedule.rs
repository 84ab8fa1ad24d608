//! Cron schedules of scheduled API-call fields (being written).

use time::OffsetDateTime;

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
}

impl Schedule {
    /// Parse a cron expression; the error is a sentence saying what is wrong.
    pub fn parse(source: &str) -> Result<Self, String> {
        Err(format!("`{source}`: schedules are not supported yet"))
    }

    /// The first run strictly after `after`, if any within the next few years.
    pub fn next_after(&self, _after: OffsetDateTime) -> Option<OffsetDateTime> {
        None
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

use std::sync::Mutex;

use sesame_ports::Clock;
use time::OffsetDateTime;

/// A clock that only moves when told: for tests and demos of expiry.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(start))
    }
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = crate::lock(&self.0);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *crate::lock(&self.0)
    }
}

use time::OffsetDateTime;

/// Now. Tests move it; nothing in the flows reads the system time directly.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Randomness for codes, link tokens and ids. The production source is the OS CSPRNG.
pub trait Random: Send + Sync + std::fmt::Debug {
    fn fill(&self, dest: &mut [u8]);
}

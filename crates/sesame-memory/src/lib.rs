//! Embedded adapters for every port: the zero-setup default and the fast test double.
//! They keep state in process memory, so they suit one instance; production replicas use the
//! Postgres and Redis adapters, which pass the same contract tests.

mod clock;
mod limiter;
mod mailbox;
mod store;

pub use clock::ManualClock;
pub use limiter::MemoryRateLimiter;
pub use mailbox::{Mailbox, MailboxEntry};
pub use store::MemoryStore;

/// Locks a mutex, recovering the data if a thread panicked while holding it: the state is
/// updated in single steps, so it is never left half-written.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! What the fuzz targets share: the request format of the HTTP targets, an in-process Sesame
//! (the real actix app on the memory adapters, a manual clock) and an ES256 signer for
//! `private_key_jwt` assertions.
//!
//! The fuzz targets assert properties, not only "no panic"; each failed property is a panic,
//! which libFuzzer reports as a crash with the input that caused it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a fuzz harness fails loudly")]

pub mod app;
pub mod request;
pub mod signer;

/// The issuer of the in-process Sesame (and the `aud` of its client assertions).
pub const ISSUER: &str = "https://sesame.test/";

/// `SESAME_FUZZ_DEBUG` set: the targets say what they did (to check that the seeds reach what
/// they are meant to: `SESAME_FUZZ_DEBUG=1 <target binary> fuzz/corpus/<target>/seed-*`).
pub fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("SESAME_FUZZ_DEBUG").is_some())
}

/// `data` as text: the targets read text, other bytes are not interesting inputs.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `s` split at NUL into at most `n` fields (missing ones empty): the input of the targets that
/// take several strings (seed files are made with `printf 'a\0b\0c'`).
pub fn fields(s: &str, n: usize) -> Vec<&str> {
    let mut out: Vec<&str> = s.splitn(n, '\0').collect();
    out.resize(n, "");
    out
}

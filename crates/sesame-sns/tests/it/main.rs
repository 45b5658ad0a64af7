//! The SNS adapter against the local AWS emulator (moto server, see `tests/aws/moto.sh`) for the
//! round trip, and against a `wiremock` stub for what moto does not keep (message attributes)
//! and the answers it cannot give (throttling, 5xx, a server that never answers).
//!
//! The SDK gets static test credentials from the tests, never from the AWS chain; the one test of
//! the chain runs in a child process with a cleaned environment (`AWS_EC2_METADATA_DISABLED`).
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "../../../../tests/aws/moto.rs"]
mod moto;

mod emulator;
mod setup;
mod stub;

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use sesame_domain::PhoneNumber;
use sesame_ports::OutgoingSms;
use sesame_sns::{SnsConfig, SnsSmsSender};

/// What the tests give the SDK instead of the AWS chain.
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "sesame-tests"))
        .load()
        .await
}

/// A config for `endpoint` that gives up after one attempt, so error tests stay fast.
fn config(endpoint: &str) -> SnsConfig {
    SnsConfig { endpoint_url: Some(endpoint.to_owned()), max_attempts: 1, ..SnsConfig::default() }
}

async fn sender(config: &SnsConfig) -> SnsSmsSender {
    SnsSmsSender::from_sdk_config(&sdk_config().await, config).expect("valid SNS config")
}

/// A French mobile number (`+33 61x xx xx xx`, valid in libphonenumber) used by this test only.
fn recipient() -> PhoneNumber {
    PhoneNumber::parse(&format!("+3361{:07}", moto::unique() % 10_000_000)).unwrap()
}

fn sms(to: &PhoneNumber, text: &str) -> OutgoingSms {
    OutgoingSms { to: to.clone(), text: text.to_owned() }
}

/// The SMS moto recorded for `to` (`.sns.SMS[]`).
async fn sms_to(moto: &moto::Moto, to: &PhoneNumber) -> Vec<serde_json::Value> {
    let data = moto.data().await;
    let all = data["sns"]["SMS"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|m| m["phone_number"] == to.e164()).collect()
}

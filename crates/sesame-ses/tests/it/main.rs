//! The SES adapter against the local AWS emulator (moto server, see `tests/aws/moto.sh`) for the
//! round trip, and against a `wiremock` stub for the answers moto cannot give (throttling, 5xx,
//! a server that never answers).
//!
//! The SDK gets static test credentials from the tests, never from the AWS chain; the one test of
//! the chain runs in a child process with a cleaned environment (`AWS_EC2_METADATA_DISABLED`).
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "../../../../tests/aws/moto.rs"]
mod moto;

mod emulator;
mod setup;
mod stub;

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use moto::Moto;
use sesame_domain::Email;
use sesame_ports::OutgoingEmail;
use sesame_ses::{SesConfig, SesEmailSender};

/// What the tests give the SDK instead of the AWS chain.
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "sesame-tests"))
        .load()
        .await
}

/// A config for `endpoint` that gives up after one attempt, so error tests stay fast.
fn config(endpoint: &str, from: &str) -> SesConfig {
    SesConfig { endpoint_url: Some(endpoint.to_owned()), max_attempts: 1, ..SesConfig::new(from) }
}

async fn sender(config: &SesConfig) -> SesEmailSender {
    SesEmailSender::from_sdk_config(&sdk_config().await, config).expect("valid SES config")
}

/// An address used by this test only.
fn recipient() -> Email {
    Email::parse(&format!("user-{}@example.org", moto::unique())).unwrap()
}

fn email(to: &Email, subject: &str, text: &str, html: Option<&str>) -> OutgoingEmail {
    OutgoingEmail { to: to.clone(), subject: subject.to_owned(), text: text.to_owned(), html: html.map(str::to_owned) }
}

/// A moto server with a verified sending domain of this test's own.
struct TestSes {
    moto: Moto,
    from: String,
}

impl TestSes {
    async fn new() -> Self {
        Self::on(Moto::start().await).await
    }

    async fn on(moto: Moto) -> Self {
        let domain = format!("t{}.example.com", moto::unique());
        let client = aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(&sdk_config().await).endpoint_url(moto.endpoint()).build(),
        );
        // moto marks an identity verified at once; a reset would forget it.
        client.create_email_identity().email_identity(&domain).send().await.expect("creating the SES identity in moto");
        Self { moto, from: format!("no-reply@{domain}") }
    }

    fn config(&self) -> SesConfig {
        config(self.moto.endpoint(), &self.from)
    }

    /// The messages moto recorded for `to` (`.ses.Message[]`).
    async fn messages_to(&self, to: &Email) -> Vec<serde_json::Value> {
        let data = self.moto.data().await;
        let messages = data["ses"]["Message"].as_array().cloned().unwrap_or_default();
        messages
            .into_iter()
            .filter(|m| m["destinations"]["ToAddresses"].as_array().is_some_and(|a| a.iter().any(|t| t == to.as_str())))
            .collect()
    }
}

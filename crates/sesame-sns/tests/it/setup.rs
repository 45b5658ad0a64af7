//! Building the sender: config checks, and `connect` on the standard AWS chain.

use sesame_ports::SmsSender;
use sesame_sns::{SnsConfig, SnsSmsSender};

use crate::moto::{self, Moto};
use crate::{recipient, sdk_config, sms, sms_to};

async fn build(config: SnsConfig) -> anyhow::Result<SnsSmsSender> {
    SnsSmsSender::from_sdk_config(&sdk_config().await, &config)
}

#[tokio::test]
async fn a_bad_sender_id_is_refused_at_startup() {
    for id in ["", "TwelveLetter", "123456", "My Login", "Login\r\n"] {
        let err = build(SnsConfig { sender_id: Some(id.into()), ..SnsConfig::default() }).await.expect_err(id);
        assert!(format!("{err:#}").contains("sns.sender_id"), "{err:#}");
    }
}

#[tokio::test]
async fn a_bad_origination_number_is_refused_at_startup() {
    for number in ["", "+1 555 555 0100", "phone"] {
        let err = build(SnsConfig { origination_number: Some(number.into()), ..SnsConfig::default() })
            .await
            .expect_err(number);
        assert!(format!("{err:#}").contains("sns.origination_number"), "{err:#}");
    }
}

#[tokio::test]
async fn an_endpoint_that_is_not_an_http_url_is_refused_at_startup() {
    for endpoint in ["127.0.0.1:5000", "ftp://127.0.0.1"] {
        let err =
            build(SnsConfig { endpoint_url: Some(endpoint.into()), ..SnsConfig::default() }).await.expect_err(endpoint);
        assert!(format!("{err:#}").contains("sns.endpoint_url"), "{err:#}");
    }
}

/// Runs in a child process whose environment holds only what the parent gives it.
#[tokio::test]
async fn connect_takes_credentials_and_region_from_the_aws_chain() {
    if moto::in_child() {
        let var = |k: &str| std::env::var(k).unwrap();
        let config = SnsConfig { endpoint_url: Some(var("SESAME_IT_ENDPOINT")), ..SnsConfig::default() };
        let sender = SnsSmsSender::connect(&config).await.expect("connect");
        let to = sesame_domain::PhoneNumber::parse(&var("SESAME_IT_TO")).unwrap();
        sender.send(&sms(&to, "Code 1")).await.expect("sent with the chain's credentials");
        return;
    }
    let moto = Moto::start().await;
    let to = recipient();

    moto::run_in_child(
        "setup::connect_takes_credentials_and_region_from_the_aws_chain",
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("SESAME_IT_ENDPOINT", moto.endpoint()),
            ("SESAME_IT_TO", to.e164()),
        ],
    );

    assert_eq!(sms_to(&moto, &to).await.len(), 1);
}

/// Runs in a child process whose environment names no region.
#[tokio::test]
async fn connect_without_any_region_fails_naming_the_setting() {
    if moto::in_child() {
        let err = SnsSmsSender::connect(&SnsConfig::default()).await.expect_err("no region anywhere");
        assert!(format!("{err:#}").contains("sns.region"), "{err:#}");
        return;
    }
    moto::run_in_child("setup::connect_without_any_region_fails_naming_the_setting", &[]);
}

//! Building the sender: config checks, and `connect` on the standard AWS chain.

use sesame_ports::EmailSender;
use sesame_ses::{SesConfig, SesEmailSender};

use crate::moto;
use crate::{TestSes, email, recipient, sdk_config};

async fn build(config: SesConfig) -> anyhow::Result<SesEmailSender> {
    SesEmailSender::from_sdk_config(&sdk_config().await, &config)
}

#[tokio::test]
async fn a_from_name_with_a_line_break_is_refused_at_startup() {
    for name in ["Login\r\nBcc: victim@example.org", "Login\n", "Lo\0gin"] {
        let config = SesConfig { from_name: Some(name.into()), ..SesConfig::new("no-reply@example.com") };
        let err = build(config).await.expect_err(name);
        assert!(format!("{err:#}").contains("ses.from_name"), "{err:#}");
    }
}

#[tokio::test]
async fn a_from_address_that_is_not_a_plain_address_is_refused_at_startup() {
    for from in [
        "Login <no-reply@example.com>",
        "no-reply@example.com\r\nBcc: x@example.org",
        "not an address",
        "ñandú@example.com",
    ] {
        let err = build(SesConfig::new(from)).await.expect_err(from);
        assert!(format!("{err:#}").contains("ses.from_address"), "{err:#}");
    }
}

#[tokio::test]
async fn an_endpoint_that_is_not_an_http_url_is_refused_at_startup() {
    for endpoint in ["127.0.0.1:5000", "ftp://127.0.0.1"] {
        let config = SesConfig { endpoint_url: Some(endpoint.into()), ..SesConfig::new("no-reply@example.com") };
        let err = build(config).await.expect_err(endpoint);
        assert!(format!("{err:#}").contains("ses.endpoint_url"), "{err:#}");
    }
}

#[tokio::test]
async fn the_from_header_quotes_the_display_name() {
    let config = SesConfig { from_name: Some("Example Login".into()), ..SesConfig::new("No-Reply@Example.com") };
    assert_eq!(build(config).await.unwrap().from_header(), "\"Example Login\" <no-reply@example.com>");
}

/// Runs in a child process whose environment holds only what the parent gives it.
#[tokio::test]
async fn connect_takes_credentials_and_region_from_the_aws_chain() {
    if moto::in_child() {
        let var = |k: &str| std::env::var(k).unwrap();
        let config =
            SesConfig { endpoint_url: Some(var("SESAME_IT_ENDPOINT")), ..SesConfig::new(var("SESAME_IT_FROM")) };
        let sender = SesEmailSender::connect(&config).await.expect("connect");
        let to = sesame_domain::Email::parse(&var("SESAME_IT_TO")).unwrap();
        sender.send(&email(&to, "Your login code", "Code 1", None)).await.expect("sent with the chain's credentials");
        return;
    }
    let ses = TestSes::new().await;
    let to = recipient();

    moto::run_in_child(
        "setup::connect_takes_credentials_and_region_from_the_aws_chain",
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("SESAME_IT_ENDPOINT", ses.moto.endpoint()),
            ("SESAME_IT_FROM", &ses.from),
            ("SESAME_IT_TO", to.as_str()),
        ],
    );

    assert_eq!(ses.messages_to(&to).await.len(), 1);
}

/// Runs in a child process whose environment names no region.
#[tokio::test]
async fn connect_without_any_region_fails_naming_the_setting() {
    if moto::in_child() {
        let err =
            SesEmailSender::connect(&SesConfig::new("no-reply@example.com")).await.expect_err("no region anywhere");
        assert!(format!("{err:#}").contains("ses.region"), "{err:#}");
        return;
    }
    moto::run_in_child("setup::connect_without_any_region_fails_naming_the_setting", &[]);
}

//! Round trips through moto: what SNS records is what the adapter sent.

use std::time::{Duration, Instant};

use sesame_ports::{SendError, SmsSender};
use sesame_sns::SnsConfig;

use crate::moto::{self, Moto};
use crate::{config, recipient, sender, sms, sms_to};

#[tokio::test]
async fn an_sms_reaches_sns_with_its_number_and_text() {
    let moto = Moto::start().await;
    let to = recipient();
    let config = SnsConfig { sender_id: Some("Sesame".into()), ..config(moto.endpoint()) };

    let receipt = sender(&config).await.send(&sms(&to, "Votre code Sesame : 482913")).await.expect("sent");

    let recorded = sms_to(&moto, &to).await;
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["message"], "Votre code Sesame : 482913");
    assert_eq!(receipt.provider_id.as_deref(), recorded[0]["message_id"].as_str());
}

#[tokio::test]
async fn a_too_long_text_is_rejected_with_the_provider_message() {
    let moto = Moto::start().await;
    let to = recipient();

    let result = sender(&config(moto.endpoint())).await.send(&sms(&to, &"x".repeat(1_601))).await;

    match result {
        Err(SendError::Rejected(reason)) => assert!(reason.starts_with("InvalidParameter"), "{reason}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(sms_to(&moto, &to).await.is_empty());
}

#[tokio::test]
async fn a_stopped_emulator_makes_the_sender_unavailable_within_the_timeouts() {
    let mut moto = Moto::start_own().await;
    // The default config: three attempts, 2 s connect, 12 s for the whole operation.
    let config = SnsConfig { endpoint_url: Some(moto.endpoint().to_owned()), ..SnsConfig::default() };
    let sender = sender(&config).await;
    sender.send(&sms(&recipient(), "Code 1")).await.expect("sent while moto runs");

    moto.stop();
    let started = Instant::now();
    let result = sender.send(&sms(&recipient(), "Code 2")).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn nothing_listening_makes_the_sender_unavailable() {
    let endpoint = format!("http://127.0.0.1:{}", moto::free_port());

    let result = sender(&config(&endpoint)).await.send(&sms(&recipient(), "Code 1")).await;

    match result {
        Err(SendError::Unavailable(e)) => assert!(format!("{e:#}").contains("SNS Publish"), "{e:#}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

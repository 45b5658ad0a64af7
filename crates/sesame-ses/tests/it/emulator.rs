//! Round trips through moto: what SES records is what the adapter sent.

use std::time::{Duration, Instant};

use sesame_ports::{EmailSender, SendError};

use crate::moto::{self, Moto};
use crate::{TestSes, config, email, recipient, sender};

#[tokio::test]
async fn an_email_reaches_ses_with_its_subject_recipient_and_body() {
    let ses = TestSes::new().await;
    let to = recipient();
    let sender = sender(&ses.config()).await;

    let receipt = sender
        .send(&email(&to, "Connexion à Sesame ✓", "Votre code : 482913", Some("<p>Votre code : <b>482913</b></p>")))
        .await
        .expect("sent");

    let messages = ses.messages_to(&to).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message["subject"], "Connexion à Sesame ✓");
    assert_eq!(message["source"], ses.from.as_str());
    assert_eq!(message["destinations"]["ToAddresses"], serde_json::json!([to.as_str()]));
    // With both parts, moto keeps only the HTML one.
    assert_eq!(message["body"], "<p>Votre code : <b>482913</b></p>");
    assert_eq!(receipt.provider_id.as_deref(), message["id"].as_str());
}

#[tokio::test]
async fn a_text_only_email_reaches_ses_with_its_text() {
    let ses = TestSes::new().await;
    let to = recipient();

    sender(&ses.config()).await.send(&email(&to, "Your login code", "Your code is 120934", None)).await.expect("sent");

    let messages = ses.messages_to(&to).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0]["body"], "Your code is 120934");
}

#[tokio::test]
async fn the_from_display_name_reaches_ses() {
    let ses = TestSes::new().await;
    let to = recipient();
    let config = sesame_ses::SesConfig { from_name: Some("Example Login".into()), ..ses.config() };

    sender(&config).await.send(&email(&to, "Your login code", "Code 1", None)).await.expect("sent");

    let messages = ses.messages_to(&to).await;
    assert_eq!(messages[0]["source"], format!("\"Example Login\" <{}>", ses.from));
}

#[tokio::test]
async fn an_unverified_from_address_is_rejected_with_the_provider_message() {
    let moto = Moto::start().await;
    let from = format!("no-reply@unverified-{}.example.com", moto::unique());
    let sender = sender(&config(moto.endpoint(), &from)).await;

    let result = sender.send(&email(&recipient(), "Your login code", "Code 1", None)).await;

    match result {
        Err(SendError::Rejected(reason)) => {
            assert!(reason.starts_with("MessageRejected"), "{reason}");
            assert!(reason.contains("not verified"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stopped_emulator_makes_the_sender_unavailable_within_the_timeouts() {
    let mut ses = TestSes::on(Moto::start_own().await).await;
    // The default config: three attempts, 2 s connect, 12 s for the whole operation.
    let config = sesame_ses::SesConfig {
        endpoint_url: Some(ses.moto.endpoint().to_owned()),
        ..sesame_ses::SesConfig::new(&ses.from)
    };
    let sender = sender(&config).await;
    sender.send(&email(&recipient(), "Your login code", "Code 1", None)).await.expect("sent while moto runs");

    ses.moto.stop();
    let started = Instant::now();
    let result = sender.send(&email(&recipient(), "Your login code", "Code 2", None)).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn nothing_listening_makes_the_sender_unavailable() {
    let endpoint = format!("http://127.0.0.1:{}", moto::free_port());
    let sender = sender(&config(&endpoint, "no-reply@example.com")).await;

    let result = sender.send(&email(&recipient(), "Your login code", "Code 1", None)).await;

    match result {
        Err(SendError::Unavailable(e)) => assert!(format!("{e:#}").contains("SES SendEmail"), "{e:#}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

//! Delivery through the real SES and SNS adapters against the local AWS emulator (moto):
//! messages read back from the emulator, a provider outage that loses nothing, a permanent
//! SMS refusal answered as `sms_provider_error`, and the templates' languages.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Value, json};
use sesame_api::config::{ClientSettings, SenderKind};
use sesame_ses::{SesConfig, SesEmailSender};
use sesame_sns::{SnsConfig, SnsSmsSender};

use crate::helpers::{Proxy, Senders, TestApp, spawn_app_configured, spawn_app_with_senders};
use crate::moto::Moto;

pub(crate) async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "sesame-tests"))
        .load()
        .await
}

pub(crate) async fn verified_sender_domain(moto: &Moto) -> String {
    let domain = format!("t{}.example.com", crate::moto::unique());
    let client = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&sdk_config().await).endpoint_url(moto.endpoint()).build(),
    );
    client.create_email_identity().email_identity(&domain).send().await.expect("SES identity in moto");
    domain
}

/// The first run of 4–40 digits standing alone: how a person finds the code.
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).find(|t| (4..=40).contains(&t.len())).map(str::to_owned)
}

pub(crate) async fn emails_to(moto: &Moto, to: &str) -> Vec<Value> {
    let data = moto.data().await;
    data["ses"]["Message"]
        .as_array()
        .map(|all| all.iter().filter(|m| m["destinations"]["ToAddresses"][0] == to).cloned().collect())
        .unwrap_or_default()
}

async fn wait_for_emails(moto: &Moto, to: &str, n: usize) -> Vec<Value> {
    for _ in 0..750 {
        let got = emails_to(moto, to).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} email(s) to {to} never reached the emulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_delivers_and_a_provider_outage_loses_nothing() {
    let moto = Moto::start().await;
    let domain = verified_sender_domain(&moto).await;
    let upstream = moto.endpoint().trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(&upstream).await;
    let config = SesConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{}", proxy.port)),
        max_attempts: 1,
        ..SesConfig::new(format!("no-reply@{domain}"))
    };
    let ses = SesEmailSender::from_sdk_config(&sdk_config().await, &config).expect("SES sender");
    let app = spawn_app_with_senders(
        |s| {
            s.email = SenderKind::Ses;
            s.ses = Some(config.clone());
        },
        Senders { email: Some(Arc::new(ses)), sms: None },
    )
    .await;

    let to = format!("ses@{domain}");
    let start = |to: &str| json!({"client_id": "public-app", "connection": "email", "email": to, "send": "code"});
    assert_eq!(app.post_start(&start(&to)).await.status, 200);
    let sent = wait_for_emails(&moto, &to, 1).await;
    assert!(sent[0]["subject"].as_str().is_some_and(|s| s.contains("verification code")), "{}", sent[0]);
    let code = code_in(sent[0]["body"].as_str().expect("body")).expect("a code in the email");
    let login = app.post_token(&TestApp::otp_body("public-app", "email", &to, &code)).await;
    assert_eq!(login.status, 200, "logged in with the code read from the emulator: {}", login.body);

    // The provider goes away: starts still answer 200 at once, the messages wait.
    proxy.down().await;
    let waiting: Vec<String> = (0..3).map(|i| format!("wait{i}@{domain}")).collect();
    for to in &waiting {
        let started = std::time::Instant::now();
        assert_eq!(app.post_start(&start(to)).await.status, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "delivery is off the request path");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for to in &waiting {
        assert!(emails_to(&moto, to).await.is_empty());
    }
    // It comes back; once the backoff has passed every waiting message goes out exactly once.
    proxy.up();
    app.clock.advance(Duration::from_secs(61));
    for to in &waiting {
        wait_for_emails(&moto, to, 1).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for to in &waiting {
        assert_eq!(emails_to(&moto, to).await.len(), 1, "{to} got its message exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_delivers_sms_and_a_permanent_refusal_answers_sms_provider_error() {
    let moto = Moto::start().await;
    let config = SnsConfig { endpoint_url: Some(moto.endpoint().to_owned()), max_attempts: 1, ..SnsConfig::default() };
    let sns = SnsSmsSender::from_sdk_config(&sdk_config().await, &config).expect("SNS sender");
    let app = spawn_app_with_senders(
        |s| {
            s.sms = SenderKind::Sns;
            s.sns = Some(config.clone());
            let mut long: ClientSettings =
                serde_json::from_value(json!({"client_id": "long-sms", "name": "Long"})).expect("client");
            long.connections = vec!["sms".into()];
            s.clients.push(long);
            // moto refuses an SMS over 1600 bytes, as SNS does: a permanent refusal.
            s.templates.sms.push(
                serde_json::from_value(json!({"client_id": "long-sms", "language": "en", "text": format!("{}{{{{ code }}}}", "x".repeat(1700))}))
                    .expect("template"),
            );
        },
        Senders { email: None, sms: Some(Arc::new(sns)) },
    )
    .await;
    let phone = format!("+1415555{:04}", crate::moto::unique() % 10_000);
    let phone = if sesame_domain::PhoneNumber::parse(&phone).is_ok() { phone } else { "+14155552671".to_owned() };
    let start = |client: &str| json!({"client_id": client, "connection": "sms", "phone_number": phone});
    assert_eq!(app.post_start(&start("public-app")).await.status, 200);
    let data = moto.data().await;
    let sms = data["sns"]["SMS"]
        .as_array()
        .expect("sms list")
        .iter()
        .rev()
        .find(|m| m["phone_number"] == phone.as_str())
        .cloned();
    let sms = sms.expect("the SMS reached the emulator during the start (sms_wait_first_attempt)");
    let code = code_in(sms["message"].as_str().expect("message")).expect("code");
    let login = app.post_token(&TestApp::otp_body("public-app", "sms", &phone, &code)).await;
    assert_eq!(login.status, 200, "{}", login.body);

    let refused = app.post_start(&start("long-sms")).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (400, Some("sms_provider_error")), "{}", refused.body);
    assert!(
        refused.body["error_description"].as_str().is_some_and(|d| d.contains("InvalidParameter")),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn messages_follow_the_requested_language() {
    let app = spawn_app_configured(|_| {}).await;
    let cases = [
        ("fr-FR", "+33612345678", "Votre code"),
        ("de", "+4915123456789", "Ihr Bestätigungscode"),
        ("es;q=0.9, ja", "+34612345678", "Tu código"),
    ];
    for (lang, phone, expected) in cases {
        let r = app
            .http
            .post(format!("{}/passwordless/start", app.base))
            .header("accept-language", lang)
            .json(&json!({"client_id": "public-app", "connection": "sms", "phone_number": phone}))
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), 200);
        let text = app.mailbox(phone, 1).await[0]["text"].as_str().expect("text").to_owned();
        assert!(text.starts_with(expected), "{lang}: {text}");
    }
    let email = app
        .http
        .post(format!("{}/passwordless/start", app.base))
        .header("x-request-language", "fr")
        .header("accept-language", "de")
        .json(&json!({"client_id": "public-app", "connection": "email", "email": "fr@example.com", "send": "code"}))
        .send()
        .await
        .expect("start");
    assert_eq!(email.status(), 200);
    let msg = &app.mailbox("fr@example.com", 1).await[0];
    assert!(msg["subject"].as_str().is_some_and(|s| s.starts_with("Votre code")), "x-request-language wins: {msg}");
}

//! The answers moto cannot give, from a `wiremock` stub standing in for SES: what the request
//! carries, throttling, 5xx, refusals, a server that never answers.

use std::time::{Duration, Instant};

use sesame_ports::{EmailSender, SendError};
use sesame_ses::SesConfig;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{config, email, recipient, sender};

const SEND_EMAIL: &str = "/v2/email/outbound-emails";
const FROM: &str = "no-reply@example.com";

/// An SES error as the REST-JSON protocol sends it: the code in a header, the message in the body.
fn ses_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", code)
        .set_body_raw(serde_json::json!({ "message": message }).to_string(), "application/json")
}

async fn stub(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(SEND_EMAIL)).respond_with(response).mount(&server).await;
    server
}

async fn send_with(config: SesConfig) -> Result<sesame_ports::DeliveryReceipt, SendError> {
    sender(&config).await.send(&email(&recipient(), "Your login code", "Code 1", None)).await
}

#[tokio::test]
async fn the_request_has_utf8_text_and_html_parts_the_from_name_and_the_configuration_set() {
    let server = stub(ResponseTemplate::new(200).set_body_raw(r#"{"MessageId":"stub-42"}"#, "application/json")).await;
    let config = SesConfig {
        from_name: Some("Connexion Réseau".into()),
        configuration_set: Some("sesame-events".into()),
        ..config(&server.uri(), FROM)
    };
    let to = recipient();

    let receipt = sender(&config)
        .await
        .send(&email(&to, "Votre code", "Code : 482913", Some("<p>Code : <b>482913</b></p>")))
        .await
        .expect("sent");

    assert_eq!(receipt.provider_id.as_deref(), Some("stub-42"));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["FromEmailAddress"], "=?UTF-8?B?Q29ubmV4aW9uIFLDqXNlYXU=?= <no-reply@example.com>");
    assert_eq!(body["Destination"]["ToAddresses"], serde_json::json!([to.as_str()]));
    assert_eq!(body["ConfigurationSetName"], "sesame-events");
    let simple = &body["Content"]["Simple"];
    assert_eq!(simple["Subject"], serde_json::json!({ "Data": "Votre code", "Charset": "UTF-8" }));
    assert_eq!(simple["Body"]["Text"], serde_json::json!({ "Data": "Code : 482913", "Charset": "UTF-8" }));
    assert_eq!(
        simple["Body"]["Html"],
        serde_json::json!({ "Data": "<p>Code : <b>482913</b></p>", "Charset": "UTF-8" })
    );
}

#[tokio::test]
async fn a_subject_with_a_line_break_or_control_character_is_rejected_before_ses_is_called() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let sender = sender(&config(&server.uri(), FROM)).await;

    for subject in [
        "Your code\r\nBcc: victim@example.org",
        "Your code\nBcc: victim@example.org",
        "Your code\rX",
        "Your code\0",
        "Your\tcode",
        "Your code\u{2028}X",
        "Your code\u{85}X",
    ] {
        let result = sender.send(&email(&recipient(), subject, "Code 1", None)).await;
        assert!(matches!(&result, Err(SendError::Rejected(r)) if r.contains("subject")), "{subject:?}: {result:?}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_server_error_is_unavailable() {
    let server = stub(ses_error(500, "InternalFailure", "We encountered an internal error.")).await;
    let result = send_with(config(&server.uri(), FROM)).await;
    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn a_5xx_without_an_aws_body_is_unavailable() {
    let server = stub(ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html")).await;
    let result = send_with(config(&server.uri(), FROM)).await;
    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn throttling_is_unavailable() {
    for (status, code) in
        [(429, "TooManyRequestsException"), (400, "ThrottlingException"), (400, "LimitExceededException")]
    {
        let server = stub(ses_error(status, code, "Maximum sending rate exceeded.")).await;
        let result = send_with(config(&server.uri(), FROM)).await;
        assert!(matches!(result, Err(SendError::Unavailable(_))), "{code}: {result:?}");
    }
}

#[tokio::test]
async fn a_refusal_is_rejected_with_the_provider_code_and_message() {
    for code in
        ["MessageRejected", "MailFromDomainNotVerifiedException", "AccountSuspendedException", "BadRequestException"]
    {
        let server = stub(ses_error(400, code, "Email address is not verified.")).await;
        let result = send_with(config(&server.uri(), FROM)).await;
        match result {
            Err(SendError::Rejected(reason)) => assert_eq!(reason, format!("{code}: Email address is not verified.")),
            other => panic!("{code}: expected Rejected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn transient_failures_are_retried_by_the_sdk_up_to_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_EMAIL))
        .respond_with(ses_error(503, "ServiceUnavailable", "Service unavailable."))
        .expect(2)
        .mount(&server)
        .await;

    let result = send_with(SesConfig { max_attempts: 2, ..config(&server.uri(), FROM) }).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    server.verify().await;
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_EMAIL))
        .respond_with(ses_error(400, "MessageRejected", "Rejected."))
        .expect(1)
        .mount(&server)
        .await;

    let result = send_with(SesConfig { max_attempts: 3, ..config(&server.uri(), FROM) }).await;

    assert!(matches!(result, Err(SendError::Rejected(_))), "{result:?}");
    server.verify().await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_attempt_timeout() {
    let server = stub(ResponseTemplate::new(200).set_delay(Duration::from_secs(30))).await;
    let config = SesConfig { attempt_timeout_ms: 300, operation_timeout_ms: 1_000, ..config(&server.uri(), FROM) };
    let started = Instant::now();

    let result = send_with(config).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

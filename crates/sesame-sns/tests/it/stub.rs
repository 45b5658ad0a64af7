//! What moto does not keep (the message attributes) and the answers it cannot give, from a
//! `wiremock` stub standing in for SNS.

use std::time::{Duration, Instant};

use sesame_ports::{DeliveryReceipt, SendError, SmsSender};
use sesame_sns::SnsConfig;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{config, recipient, sender, sms};

const PUBLISHED: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult><MessageId>stub-7</MessageId></PublishResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</PublishResponse>"#;

/// An SNS error as the AWS query protocol sends it.
fn sns_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    let body = format!(
        r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>r-1</RequestId>
</ErrorResponse>"#
    );
    ResponseTemplate::new(status).set_body_raw(body, "text/xml")
}

async fn stub(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(response).mount(&server).await;
    server
}

async fn send_with(config: SnsConfig) -> Result<DeliveryReceipt, SendError> {
    sender(&config).await.send(&sms(&recipient(), "Code 1")).await
}

/// The form fields of the one request the stub received.
async fn form(server: &MockServer) -> Vec<(String, String)> {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    serde_urlencoded::from_bytes(&requests[0].body).unwrap()
}

/// The message attributes in a form: name → string value, after checking each is a `String`.
fn attributes(form: &[(String, String)]) -> Vec<(String, String)> {
    let field = |key: String| form.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
    let mut found = Vec::new();
    for i in 1.. {
        let Some(name) = field(format!("MessageAttributes.entry.{i}.Name")) else { break };
        assert_eq!(field(format!("MessageAttributes.entry.{i}.Value.DataType")).as_deref(), Some("String"), "{name}");
        found.push((name, field(format!("MessageAttributes.entry.{i}.Value.StringValue")).unwrap()));
    }
    found.sort();
    found
}

#[tokio::test]
async fn every_sms_is_transactional_and_carries_the_configured_sender() {
    let server = stub(ResponseTemplate::new(200).set_body_raw(PUBLISHED, "text/xml")).await;
    let config = SnsConfig {
        sender_id: Some("Sesame".into()),
        origination_number: Some("+15555550100".into()),
        ..config(&server.uri())
    };
    let to = recipient();

    let receipt = sender(&config).await.send(&sms(&to, "Votre code : 482913")).await.expect("sent");

    assert_eq!(receipt.provider_id.as_deref(), Some("stub-7"));
    let form = form(&server).await;
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(field("Action"), Some("Publish"));
    assert_eq!(field("PhoneNumber"), Some(to.e164()));
    assert_eq!(field("Message"), Some("Votre code : 482913"));
    assert_eq!(
        attributes(&form),
        [
            ("AWS.MM.SMS.OriginationNumber".to_owned(), "+15555550100".to_owned()),
            ("AWS.SNS.SMS.SMSType".to_owned(), "Transactional".to_owned()),
            ("AWS.SNS.SMS.SenderID".to_owned(), "Sesame".to_owned()),
        ]
    );
}

#[tokio::test]
async fn without_a_configured_sender_only_the_sms_type_is_sent() {
    let server = stub(ResponseTemplate::new(200).set_body_raw(PUBLISHED, "text/xml")).await;

    send_with(config(&server.uri())).await.expect("sent");

    assert_eq!(attributes(&form(&server).await), [("AWS.SNS.SMS.SMSType".to_owned(), "Transactional".to_owned())]);
}

#[tokio::test]
async fn a_server_error_is_unavailable() {
    for (status, code) in [(500, "InternalError"), (500, "InternalFailure"), (503, "ServiceUnavailable")] {
        let server = stub(sns_error(status, code, "Internal error.")).await;
        let result = send_with(config(&server.uri())).await;
        assert!(matches!(result, Err(SendError::Unavailable(_))), "{code}: {result:?}");
    }
}

#[tokio::test]
async fn a_5xx_without_an_aws_body_is_unavailable() {
    let server = stub(ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html")).await;
    let result = send_with(config(&server.uri())).await;
    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn throttling_is_unavailable() {
    for (status, code) in [(400, "Throttling"), (400, "ThrottlingException"), (429, "Throttled")] {
        let server = stub(sns_error(status, code, "Rate exceeded.")).await;
        let result = send_with(config(&server.uri())).await;
        assert!(matches!(result, Err(SendError::Unavailable(_))), "{code}: {result:?}");
    }
}

#[tokio::test]
async fn a_refused_number_is_rejected_with_the_provider_code_and_message() {
    for code in ["InvalidParameter", "ParameterValueInvalid", "OptedOut"] {
        let server = stub(sns_error(400, code, "Invalid parameter: PhoneNumber Reason: unsupported destination")).await;
        let result = send_with(config(&server.uri())).await;
        match result {
            Err(SendError::Rejected(reason)) => {
                assert_eq!(reason, format!("{code}: Invalid parameter: PhoneNumber Reason: unsupported destination"));
            }
            other => panic!("{code}: expected Rejected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn transient_failures_are_retried_by_the_sdk_up_to_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sns_error(500, "InternalError", "Internal error."))
        .expect(2)
        .mount(&server)
        .await;

    let result = send_with(SnsConfig { max_attempts: 2, ..config(&server.uri()) }).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    server.verify().await;
}

#[tokio::test]
async fn a_refused_number_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sns_error(400, "InvalidParameter", "Invalid parameter"))
        .expect(1)
        .mount(&server)
        .await;

    let result = send_with(SnsConfig { max_attempts: 3, ..config(&server.uri()) }).await;

    assert!(matches!(result, Err(SendError::Rejected(_))), "{result:?}");
    server.verify().await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_attempt_timeout() {
    let server =
        stub(ResponseTemplate::new(200).set_body_raw(PUBLISHED, "text/xml").set_delay(Duration::from_secs(30))).await;
    let config = SnsConfig { attempt_timeout_ms: 300, operation_timeout_ms: 1_000, ..config(&server.uri()) };
    let started = Instant::now();

    let result = send_with(config).await;

    assert!(matches!(result, Err(SendError::Unavailable(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

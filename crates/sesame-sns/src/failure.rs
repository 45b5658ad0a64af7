//! Sorting SNS failures into "retry later" and "give up".

use aws_sdk_sns::config::http::HttpResponse;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sesame_ports::SendError;

/// Whether a failed send is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Throttling, 5xx, timeouts, no connection, credentials that could not be loaded.
    Transient,
    /// SNS refuses this number or message and will keep refusing it.
    Permanent,
}

/// How far a call got before it failed: the shape of `SdkError`, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The request could not be built (a missing or invalid field): retrying builds it again.
    Construction,
    /// A connect, attempt or operation timeout fired.
    Timeout,
    /// No response: connection refused or reset, DNS, TLS, or credentials that failed to load.
    Dispatch,
    /// A response came that could not be read.
    Response,
    /// SNS answered with an error.
    Service,
}

/// Codes that mean "later": throttling, server trouble. Credential and permission errors are
/// here too (`AuthorizationError` is an IAM policy, `InvalidSecurity` an unsigned request): they
/// come from the deployment, not the message, and a message should not be thrown away while an
/// operator fixes a role. Compared without an `Exception` suffix.
const TRANSIENT_CODES: &[&str] = &[
    "Throttled",
    "Throttling",
    "TooManyRequests",
    "RequestLimitExceeded",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestExpired",
    "AuthorizationError",
    "InvalidSecurity",
    "AccessDenied",
    "ExpiredToken",
    "InvalidClientTokenId",
    "UnrecognizedClient",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

/// Codes that mean "never": SNS refuses the number or the message (`InvalidParameter` covers a
/// malformed or unsupported number and a too long text; `ParameterValueInvalid` is the code of
/// `InvalidParameterValueException`).
const PERMANENT_CODES: &[&str] = &[
    "InvalidParameter",
    "InvalidParameterValue",
    "ParameterValueInvalid",
    "OptedOut",
    "EndpointDisabled",
    "NotFound",
    "BadRequest",
    "Validation",
    "ValidationError",
];

/// Decides from what is known about a failure: where it happened, the AWS error code and the
/// HTTP status. A known code decides first (SNS throttles with a 400 and the code `Throttling`); then the
/// status: 408, 429 and 5xx are transient, any other 4xx permanent.
pub(crate) fn classify(stage: Stage, code: Option<&str>, status: Option<u16>) -> Verdict {
    match stage {
        Stage::Construction => return Verdict::Permanent,
        Stage::Timeout | Stage::Dispatch => return Verdict::Transient,
        Stage::Response | Stage::Service => {}
    }
    if let Some(code) = code {
        let code = code.strip_suffix("Exception").unwrap_or(code);
        if TRANSIENT_CODES.contains(&code) {
            return Verdict::Transient;
        }
        if PERMANENT_CODES.contains(&code) {
            return Verdict::Permanent;
        }
    }
    match (stage, status) {
        (_, Some(408 | 429)) => Verdict::Transient,
        (Stage::Service, Some(400..=499)) => Verdict::Permanent,
        _ => Verdict::Transient,
    }
}

/// Turns an SDK error into the port's error. Traces only the code and status: the caller logs
/// the error once, and the provider's message may quote the recipient.
pub(crate) fn send_error<E>(err: SdkError<E, HttpResponse>) -> SendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let stage = match &err {
        SdkError::ConstructionFailure(_) => Stage::Construction,
        SdkError::TimeoutError(_) => Stage::Timeout,
        SdkError::DispatchFailure(_) => Stage::Dispatch,
        SdkError::ResponseError(_) => Stage::Response,
        _ => Stage::Service,
    };
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    let verdict = classify(stage, code.as_deref(), status);
    tracing::debug!(?stage, code, status, ?verdict, "SNS Publish failed");
    match verdict {
        Verdict::Transient => SendError::Unavailable(anyhow::Error::new(err).context("SNS Publish")),
        Verdict::Permanent => SendError::Rejected(provider_message(&err, code.as_deref(), status)),
    }
}

/// `MessageRejected: Email address is not verified.`, or the best that is known.
fn provider_message<E>(err: &SdkError<E, HttpResponse>, code: Option<&str>, status: Option<u16>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (code, err.message(), status) {
        (Some(code), Some(message), _) => format!("{code}: {message}"),
        (Some(code), None, _) => code.to_owned(),
        (None, Some(message), _) => message.to_owned(),
        (None, None, Some(status)) => format!("SNS answered HTTP {status}"),
        (None, None, None) => format!("SNS request failed: {}", DisplayErrorContext(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> Verdict {
        classify(Stage::Service, Some(code), Some(status))
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        for (code, status) in [
            ("Throttling", 400),
            ("ThrottlingException", 400),
            ("Throttled", 429),
            ("TooManyRequestsException", 429),
            ("InternalError", 500),
            ("InternalFailure", 500),
            ("ServiceUnavailable", 503),
            ("RequestTimeout", 408),
        ] {
            assert_eq!(service(code, status), Verdict::Transient, "{code} {status}");
        }
    }

    #[test]
    fn credential_and_permission_errors_are_transient() {
        for code in [
            "AuthorizationError",
            "InvalidSecurity",
            "AccessDenied",
            "ExpiredToken",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ] {
            assert_eq!(service(code, 403), Verdict::Transient, "{code}");
        }
    }

    #[test]
    fn refusals_of_the_number_or_message_are_permanent() {
        for code in [
            "InvalidParameter",
            "InvalidParameterException",
            "InvalidParameterValue",
            "ParameterValueInvalid",
            "OptedOut",
            "OptedOutException",
            "EndpointDisabled",
            "NotFound",
            "NotFoundException",
            "BadRequestException",
            "ValidationException",
        ] {
            assert_eq!(service(code, 400), Verdict::Permanent, "{code}");
        }
    }

    #[test]
    fn a_known_code_wins_over_the_status() {
        assert_eq!(service("InvalidParameter", 500), Verdict::Permanent);
        assert_eq!(service("Throttling", 400), Verdict::Transient);
    }

    #[test]
    fn without_a_known_code_the_status_decides() {
        assert_eq!(service("SomethingNew", 400), Verdict::Permanent);
        assert_eq!(service("SomethingNew", 404), Verdict::Permanent);
        assert_eq!(service("SomethingNew", 429), Verdict::Transient);
        assert_eq!(service("SomethingNew", 502), Verdict::Transient);
        assert_eq!(classify(Stage::Service, None, Some(500)), Verdict::Transient);
        assert_eq!(classify(Stage::Service, None, Some(400)), Verdict::Permanent);
        assert_eq!(classify(Stage::Service, None, None), Verdict::Transient);
    }

    #[test]
    fn failures_before_an_answer_are_transient() {
        assert_eq!(classify(Stage::Timeout, None, None), Verdict::Transient);
        assert_eq!(classify(Stage::Dispatch, None, None), Verdict::Transient);
    }

    #[test]
    fn an_unreadable_answer_is_transient_unless_its_code_says_otherwise() {
        assert_eq!(classify(Stage::Response, None, Some(400)), Verdict::Transient);
        assert_eq!(classify(Stage::Response, None, Some(502)), Verdict::Transient);
        assert_eq!(classify(Stage::Response, Some("InvalidParameter"), Some(400)), Verdict::Permanent);
    }

    #[test]
    fn a_request_that_cannot_be_built_is_permanent() {
        assert_eq!(classify(Stage::Construction, None, None), Verdict::Permanent);
    }
}

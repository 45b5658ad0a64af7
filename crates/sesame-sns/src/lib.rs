//! [`sesame_ports::SmsSender`] over Amazon SNS (`Publish` to a phone number).
//!
//! # Client
//!
//! [`SnsSmsSender::connect`] loads the standard AWS chain (`aws_config::defaults`): credentials
//! from the environment, profile, web identity, container or instance role, and the region when
//! [`SnsConfig::region`] is not set. [`SnsConfig::endpoint_url`] points the client elsewhere, such
//! as a local emulator; it then still takes credentials from the chain (for an emulator, static
//! ones in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`). [`SnsSmsSender::from_sdk_config`]
//! builds on an `SdkConfig` the caller has loaded, so SES and SNS can share one, and tests can
//! pass their own credentials. Every send is bounded by the connect, attempt and operation
//! timeouts of the config: the SDK has no operation timeout of its own.
//!
//! # Message
//!
//! Every SMS is published with `AWS.SNS.SMS.SMSType = Transactional` (a login code is
//! time-critical: SNS routes it for reliability, not cost), plus `AWS.SNS.SMS.SenderID` and
//! `AWS.MM.SMS.OriginationNumber` when configured. The text holds a code and is never logged;
//! the number appears in traces masked (`+1415***2671`).
//!
//! # Failures
//!
//! Throttling, 5xx, timeouts, connection and credential problems are [`SendError::Unavailable`]
//! (the outbox retries); refusals of the number or message (`InvalidParameter`,
//! `ParameterValueInvalid`, `OptedOut`, `EndpointDisabled`, `NotFound`, other 4xx) are
//! [`SendError::Rejected`] with the provider's code and message, which the API may show the
//! caller as Auth0's `sms_provider_error`.

mod config;
mod failure;

use anyhow::{Context as _, ensure};
use async_trait::async_trait;
use aws_sdk_sns::config::Region;
use aws_sdk_sns::types::MessageAttributeValue;
use sesame_ports::{DeliveryReceipt, OutgoingSms, SendError, SmsSender};

pub use config::SnsConfig;

/// The SNS message attribute that selects the SMS route.
pub const SMS_TYPE_ATTRIBUTE: &str = "AWS.SNS.SMS.SMSType";
/// The SNS message attribute that names the alphanumeric sender.
pub const SENDER_ID_ATTRIBUTE: &str = "AWS.SNS.SMS.SenderID";
/// The SNS message attribute that names the number to send from.
pub const ORIGINATION_NUMBER_ATTRIBUTE: &str = "AWS.MM.SMS.OriginationNumber";

/// Sends Sesame's SMS through SNS. Cheap to clone: the client is shared.
#[derive(Clone)]
pub struct SnsSmsSender {
    client: aws_sdk_sns::Client,
    /// The message attributes every SMS carries, built and checked once.
    attributes: Vec<(&'static str, MessageAttributeValue)>,
    sender_id: Option<String>,
    origination_number: Option<String>,
}

impl SnsSmsSender {
    /// Loads the AWS chain (credentials, and the region unless the config names one) and builds
    /// the sender. No request is made: credentials are first resolved by the first send.
    ///
    /// # Errors
    /// When the config is invalid (see [`from_sdk_config`](Self::from_sdk_config)) or no region
    /// is known.
    pub async fn connect(config: &SnsConfig) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(config.timeout_config())
            .retry_config(config.retry_config());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(&sdk, config)
    }

    /// Builds the sender on an already loaded `SdkConfig` (its credentials, HTTP client and
    /// region), with the region, endpoint, timeouts and retries of `config` on top.
    ///
    /// # Errors
    /// When `sender_id` is not 1 to 11 letters and digits with a letter among them,
    /// `origination_number` is not an E.164 number or short code, `endpoint_url` is not an
    /// http(s) URL, or no region is known.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, config: &SnsConfig) -> anyhow::Result<Self> {
        let mut attributes = vec![(SMS_TYPE_ATTRIBUTE, string_attribute("Transactional")?)];
        if let Some(id) = &config.sender_id {
            ensure!(
                config::is_valid_sender_id(id),
                "sns.sender_id {id:?} must be 1 to 11 letters and digits, at least one a letter"
            );
            attributes.push((SENDER_ID_ATTRIBUTE, string_attribute(id)?));
        }
        if let Some(number) = &config.origination_number {
            ensure!(
                config::is_valid_origination_number(number),
                "sns.origination_number {number:?} must be an E.164 number (+15555550100) or a short code"
            );
            attributes.push((ORIGINATION_NUMBER_ATTRIBUTE, string_attribute(number)?));
        }

        let mut builder = aws_sdk_sns::config::Builder::from(sdk)
            .timeout_config(config.timeout_config())
            .retry_config(config.retry_config());
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            let url =
                url::Url::parse(endpoint).with_context(|| format!("sns.endpoint_url {endpoint:?} is not a URL"))?;
            ensure!(matches!(url.scheme(), "http" | "https"), "sns.endpoint_url {endpoint:?} is not an http(s) URL");
            builder = builder.endpoint_url(endpoint);
        }
        let service_config = builder.build();
        ensure!(service_config.region().is_some(), "no AWS region for SNS: set sns.region or AWS_REGION");

        Ok(Self {
            client: aws_sdk_sns::Client::from_conf(service_config),
            attributes,
            sender_id: config.sender_id.clone(),
            origination_number: config.origination_number.clone(),
        })
    }
}

impl std::fmt::Debug for SnsSmsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsSmsSender")
            .field("sender_id", &self.sender_id)
            .field("origination_number", &self.origination_number)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SmsSender for SnsSmsSender {
    #[tracing::instrument(name = "sns.publish", skip_all, fields(to = %sms.to.masked(), provider_id))]
    async fn send(&self, sms: &OutgoingSms) -> Result<DeliveryReceipt, SendError> {
        let mut request = self.client.publish().phone_number(sms.to.e164()).message(&sms.text);
        for (name, value) in &self.attributes {
            request = request.message_attributes(*name, value.clone());
        }
        let output = request.send().await.map_err(failure::send_error)?;
        if let Some(id) = output.message_id() {
            tracing::Span::current().record("provider_id", id);
        }
        tracing::debug!("SNS accepted the SMS");
        Ok(DeliveryReceipt { provider_id: output.message_id })
    }
}

fn string_attribute(value: &str) -> anyhow::Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .context("building an SNS message attribute")
}

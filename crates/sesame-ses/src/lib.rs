//! [`sesame_ports::EmailSender`] over Amazon SES (API v2, `SendEmail` with simple content).
//!
//! # Client
//!
//! [`SesEmailSender::connect`] loads the standard AWS chain (`aws_config::defaults`): credentials
//! from the environment, profile, web identity, container or instance role, and the region when
//! [`SesConfig::region`] is not set. [`SesConfig::endpoint_url`] points the client elsewhere, such
//! as a local emulator; it then still takes credentials from the chain (for an emulator, static
//! ones in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`). [`SesEmailSender::from_sdk_config`]
//! builds on an `SdkConfig` the caller has loaded, so SES and SNS can share one, and tests can
//! pass their own credentials. Every send is bounded by the connect, attempt and operation
//! timeouts of the config: the SDK has no operation timeout of its own.
//!
//! # Message
//!
//! One recipient, UTF-8 subject, a text part and, when the email has one, an HTML part; SES
//! builds the MIME message. `From` is the configured address, with the display name quoted or
//! RFC 2047 encoded. A subject or display name holding a control character (CR and LF above all)
//! is refused before SES is called, so no header can be injected even if a template lets one
//! through. The bodies hold a code or link and are never logged; the recipient appears in
//! traces masked (`j***@example.com`).
//!
//! # Failures
//!
//! Throttling, quotas, 5xx, timeouts, connection and credential problems are
//! [`SendError::Unavailable`] (the outbox retries); refusals of the message, sender or recipient
//! (`MessageRejected`, `MailFromDomainNotVerifiedException`, `AccountSuspendedException`,
//! `BadRequestException`, `NotFoundException`, other 4xx) are [`SendError::Rejected`] with the
//! provider's code and message.

mod config;
mod failure;
mod header;

use anyhow::{Context as _, bail, ensure};
use async_trait::async_trait;
use aws_sdk_sesv2::config::Region;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use sesame_ports::{DeliveryReceipt, EmailSender, OutgoingEmail, SendError};

pub use config::SesConfig;

/// Sends Sesame's emails through SES. Cheap to clone: the client is shared.
#[derive(Clone)]
pub struct SesEmailSender {
    client: aws_sdk_sesv2::Client,
    /// The whole `From` header value, checked and encoded once.
    from: String,
    configuration_set: Option<String>,
}

impl SesEmailSender {
    /// Loads the AWS chain (credentials, and the region unless the config names one) and builds
    /// the sender. No request is made: credentials are first resolved by the first send.
    ///
    /// # Errors
    /// When the config is invalid (see [`from_sdk_config`](Self::from_sdk_config)) or no region
    /// is known.
    pub async fn connect(config: &SesConfig) -> anyhow::Result<Self> {
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
    /// When `from_address` is not a plain ASCII address, `from_name` holds a control character,
    /// `endpoint_url` is not an http(s) URL, `configuration_set` is blank, or no region is known.
    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, config: &SesConfig) -> anyhow::Result<Self> {
        let address =
            sesame_domain::Email::parse(&config.from_address).ok().filter(|a| a.as_str().is_ascii()).with_context(
                || format!("ses.from_address {:?} is not a plain ASCII email address", config.from_address),
            )?;
        let from = match header::from_header(address.as_str(), config.from_name.as_deref()) {
            Ok(from) => from,
            Err(reason) => bail!("ses.from_name: {reason}"),
        };
        if let Some(set) = &config.configuration_set {
            ensure!(
                !set.trim().is_empty() && header::is_header_safe(set),
                "ses.configuration_set must be a configuration set name"
            );
        }

        let mut builder = aws_sdk_sesv2::config::Builder::from(sdk)
            .timeout_config(config.timeout_config())
            .retry_config(config.retry_config());
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            let url =
                url::Url::parse(endpoint).with_context(|| format!("ses.endpoint_url {endpoint:?} is not a URL"))?;
            ensure!(matches!(url.scheme(), "http" | "https"), "ses.endpoint_url {endpoint:?} is not an http(s) URL");
            builder = builder.endpoint_url(endpoint);
        }
        let service_config = builder.build();
        ensure!(service_config.region().is_some(), "no AWS region for SES: set ses.region or AWS_REGION");

        Ok(Self {
            client: aws_sdk_sesv2::Client::from_conf(service_config),
            from,
            configuration_set: config.configuration_set.clone(),
        })
    }

    /// The `From` header value the emails carry.
    pub fn from_header(&self) -> &str {
        &self.from
    }
}

impl std::fmt::Debug for SesEmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesEmailSender")
            .field("from", &self.from)
            .field("configuration_set", &self.configuration_set)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EmailSender for SesEmailSender {
    #[tracing::instrument(name = "ses.send_email", skip_all, fields(to = %email.to.masked(), provider_id))]
    async fn send(&self, email: &OutgoingEmail) -> Result<DeliveryReceipt, SendError> {
        if !header::is_header_safe(&email.subject) {
            tracing::warn!("refused an email whose subject contains a control character or line break");
            return Err(SendError::Rejected("the subject contains a control character or line break".to_owned()));
        }
        let content = EmailContent::builder().simple(message(email).map_err(construction)?).build();
        let mut request = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(email.to.as_str()).build())
            .content(content);
        if let Some(set) = &self.configuration_set {
            request = request.configuration_set_name(set);
        }
        let output = request.send().await.map_err(failure::send_error)?;
        if let Some(id) = output.message_id() {
            tracing::Span::current().record("provider_id", id);
        }
        tracing::debug!("SES accepted the email");
        Ok(DeliveryReceipt { provider_id: output.message_id })
    }
}

fn message(email: &OutgoingEmail) -> Result<Message, aws_sdk_sesv2::error::BuildError> {
    let utf8 = |data: &str| Content::builder().data(data).charset("UTF-8").build();
    let mut body = Body::builder().text(utf8(&email.text)?);
    if let Some(html) = &email.html {
        body = body.html(utf8(html)?);
    }
    Ok(Message::builder().subject(utf8(&email.subject)?).body(body.build()).build())
}

/// A request that cannot be built now cannot be built later either.
fn construction(err: aws_sdk_sesv2::error::BuildError) -> SendError {
    SendError::Rejected(format!("could not build the SES request: {err}"))
}

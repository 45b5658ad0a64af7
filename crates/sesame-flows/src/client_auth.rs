//! Client authentication (spec §3): none, `client_secret_post`, `client_secret_basic`.

use sesame_domain::{AuthMethod, Client, ClientId};
use sesame_ports::{AssertionCheck, StoreError};

/// RFC 7523's `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

use crate::Sesame;

/// What a request carried to say which client it is.
#[derive(Default)]
pub struct Credentials {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// From `Authorization: Basic`.
    pub basic: Option<(String, String)>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// Why a client was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error("client_id missing")]
    MissingClientId,
    #[error("unknown client")]
    UnknownClient,
    /// A confidential client sent no credentials.
    #[error("client authentication is required")]
    AuthenticationRequired,
    /// Wrong secret, a client_id that disagrees with the Basic header, an unsupported method.
    #[error("invalid client credentials")]
    InvalidCredentials,
    /// A secret and an assertion together, or an assertion of an unknown type.
    #[error("ambiguous or malformed client authentication")]
    Malformed(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Sesame {
    /// Finds the client and checks its credentials.
    ///
    /// # Errors
    /// See `ClientAuthError`.
    pub async fn authenticate_client(&self, creds: &Credentials) -> Result<Client, ClientAuthError> {
        let id = match (&creds.client_id, &creds.basic) {
            (Some(body), Some((basic, _))) if body != basic => {
                return Err(ClientAuthError::InvalidCredentials);
            }
            (Some(id), _) | (None, Some((id, _))) => id.clone(),
            (None, None) => return Err(ClientAuthError::MissingClientId),
        };
        if creds.client_assertion.is_some() && (creds.client_secret.is_some() || creds.basic.is_some()) {
            return Err(ClientAuthError::Malformed("use either a client secret or a client assertion, not both"));
        }
        let client = self.ports.clients.find(&ClientId::new(id)).await?.ok_or(ClientAuthError::UnknownClient)?;
        let presented = creds.basic.as_ref().map(|(_, s)| s.as_str()).or(creds.client_secret.as_deref());
        match client.auth_method {
            // A public client cannot keep a secret; one sent anyway proves nothing and is ignored.
            AuthMethod::None => Ok(client),
            AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic => {
                let Some(secret) = presented else {
                    return Err(if creds.client_assertion.is_some() {
                        ClientAuthError::InvalidCredentials
                    } else {
                        ClientAuthError::AuthenticationRequired
                    });
                };
                let given = self.secrets().token_hash("client_secret", secret);
                // SecretHash equality is constant-time.
                match client.secret_hash {
                    Some(stored) if stored == given => Ok(client),
                    _ => Err(ClientAuthError::InvalidCredentials),
                }
            }
            AuthMethod::PrivateKeyJwt => {
                let Some(assertion) = &creds.client_assertion else {
                    return Err(if presented.is_some() {
                        ClientAuthError::InvalidCredentials
                    } else {
                        ClientAuthError::AuthenticationRequired
                    });
                };
                if creds.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                    return Err(ClientAuthError::Malformed(
                        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ));
                }
                let issuer = &self.settings.issuer;
                let audiences = [issuer.clone(), format!("{issuer}oauth/token")];
                let now = self.ports.clock.now();
                let check = AssertionCheck {
                    client_id: client.id.as_str(),
                    public_keys: &client.public_keys,
                    audiences: &audiences,
                    now,
                };
                let verified = self.ports.assertions.verify(assertion, &check).map_err(|e| {
                    tracing::info!(client_id = client.id.as_str(), reason = %e, "client assertion refused");
                    ClientAuthError::InvalidCredentials
                })?;
                // Single use: the jti is remembered until the assertion could no longer pass.
                let key = format!("jti:{}:{}", client.id.as_str(), verified.jti);
                match self.ports.replay.first_use(&key, verified.remember_until, now).await {
                    Ok(true) => Ok(client),
                    Ok(false) => {
                        tracing::info!(client_id = client.id.as_str(), "client assertion replayed");
                        Err(ClientAuthError::InvalidCredentials)
                    }
                    // Without the replay guard an assertion could be replayed: fail closed.
                    Err(e) => Err(ClientAuthError::Store(StoreError::Unavailable(anyhow::Error::new(e)))),
                }
            }
        }
    }

    /// The stored form of a client secret.
    pub fn hash_client_secret(&self, secret: &str) -> sesame_domain::SecretHash {
        self.secrets().token_hash("client_secret", secret)
    }
}

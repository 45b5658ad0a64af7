//! Client authentication (spec §3): none, `client_secret_post`, `client_secret_basic`.

use sesame_domain::{AuthMethod, Client, ClientId};
use sesame_ports::StoreError;

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
                if creds.client_assertion.is_none() {
                    return Err(ClientAuthError::AuthenticationRequired);
                }
                // Assertion verification arrives with private_key_jwt support; until then no
                // assertion is accepted.
                Err(ClientAuthError::InvalidCredentials)
            }
        }
    }

    /// The stored form of a client secret.
    pub fn hash_client_secret(&self, secret: &str) -> sesame_domain::SecretHash {
        self.secrets().token_hash("client_secret", secret)
    }
}

//! The magic link (spec §7.1). The texts around it are in `templates`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sesame_domain::{AuthParams, ChallengeKey, Identifier};

/// Everything but RFC 3986 unreserved characters is encoded, so spaces become `%20`,
/// `@` becomes `%40` and `+` becomes `%2B`, as in Auth0's links.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn enc(s: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(s, COMPONENT)
}

/// `{base}/passwordless/verify_redirect?{authParams in order}&verification_code=…&connection=…&client_id=…&email=…`.
/// `base` comes from configuration (the issuer), never from the request's Host.
pub fn magic_link(base: &str, key: &ChallengeKey, params: &AuthParams, verification_code: &str) -> String {
    let mut query: Vec<String> = params
        .pairs()
        .filter(|(k, _)| !matches!(*k, "verification_code" | "connection" | "client_id" | "email" | "phone_number"))
        .map(|(k, v)| format!("{}={}", enc(k), enc(&v)))
        .collect();
    query.push(format!("verification_code={}", enc(verification_code)));
    query.push(format!("connection={}", enc(key.connection.as_str())));
    query.push(format!("client_id={}", enc(key.client_id.as_str())));
    let id_param = match key.identifier {
        Identifier::Email(_) => "email",
        Identifier::Phone(_) => "phone_number",
    };
    query.push(format!("{id_param}={}", enc(key.identifier.as_str())));
    format!("{}/passwordless/verify_redirect?{}", base.trim_end_matches('/'), query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_domain::{ClientId, ConnectionName, Email};

    #[test]
    fn link_follows_auth0_order_and_encoding() {
        let key = ChallengeKey {
            client_id: ClientId::new("abc"),
            connection: ConnectionName::new("email"),
            identifier: Identifier::Email(Email::parse("a+b@example.com").unwrap_or_else(|_| unreachable!())),
        };
        let params: AuthParams = serde_json::from_str(
            r#"{"scope":"openid profile email","response_type":"token id_token","redirect_uri":"https://login2.example/callback","state":"x y","nonce":"n-1","email":"evil@x.com"}"#,
        )
        .unwrap_or_else(|_| unreachable!());
        let link = magic_link("https://auth.example.com/", &key, &params, "TOKEN");
        assert_eq!(
            link,
            "https://auth.example.com/passwordless/verify_redirect?scope=openid%20profile%20email&response_type=token%20id_token&redirect_uri=https%3A%2F%2Flogin2.example%2Fcallback&state=x%20y&nonce=n-1&verification_code=TOKEN&connection=email&client_id=abc&email=a%2Bb%40example.com"
        );
    }
}

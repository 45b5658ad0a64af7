//! What the user receives: the magic link (spec §7.1) and the rendered email or SMS.
//! Templates per connection and language come with the delivery work; these are the defaults.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sesame_domain::{AuthParams, ChallengeKey, Identifier, Send};

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

/// A rendered message, sealed into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// What the templates may use.
#[derive(Debug)]
pub struct MessageVars<'a> {
    pub code: &'a str,
    pub link: &'a str,
    pub send: Send,
    pub application_name: &'a str,
    pub minutes: u64,
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The default email: the code always (as a fallback), and the link when a link was asked for.
pub fn render_email(v: &MessageVars<'_>) -> Rendered {
    let app = v.application_name.replace(['\r', '\n'], " ");
    let (code, minutes) = (v.code, v.minutes);
    if v.send.is_link() {
        let link = v.link;
        Rendered {
            subject: Some(format!("Sign in to {app}")),
            text: format!(
                "Open this link to sign in to {app}:\n\n{link}\n\nOr enter this code: {code}\n\nThe link and the code expire in {minutes} minutes. If you did not ask for them, ignore this message.\n"
            ),
            html: Some(format!(
                "<p>Open this link to sign in to {app_h}:</p><p><a href=\"{link_h}\">Sign in to {app_h}</a></p><p>Or enter this code: <strong>{code}</strong></p><p>The link and the code expire in {minutes} minutes. If you did not ask for them, ignore this message.</p>",
                app_h = escape_html(&app),
                link_h = escape_html(link),
            )),
        }
    } else {
        Rendered {
            subject: Some(format!("Your verification code for {app}")),
            text: format!(
                "Your verification code for {app} is:\n\n{code}\n\nIt expires in {minutes} minutes. If you did not ask for it, ignore this message.\n"
            ),
            html: Some(format!(
                "<p>Your verification code for {app_h} is:</p><p><strong>{code}</strong></p><p>It expires in {minutes} minutes. If you did not ask for it, ignore this message.</p>",
                app_h = escape_html(&app),
            )),
        }
    }
}

/// The default SMS (Auth0's text), with the link for native-app links.
pub fn render_sms(v: &MessageVars<'_>) -> Rendered {
    let text = match v.send {
        Send::LinkIos | Send::LinkAndroid => {
            format!("Your verification code is: {} {}", v.code, v.link)
        }
        Send::Code | Send::Link => format!("Your verification code is: {}", v.code),
    };
    Rendered { subject: None, text, html: None }
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

    #[test]
    fn html_escapes_application_name() {
        let v = MessageVars {
            code: "123456",
            link: "https://x/?a=1&b=2",
            send: Send::Link,
            application_name: "<b>App</b>",
            minutes: 3,
        };
        let r = render_email(&v);
        let html = r.html.unwrap_or_default();
        assert!(html.contains("&lt;b&gt;App&lt;/b&gt;"));
        assert!(html.contains("href=\"https://x/?a=1&amp;b=2\""));
        assert!(r.text.contains("123456") && r.text.contains("https://x/?a=1&b=2"));
    }
}

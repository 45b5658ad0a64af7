//! Message templates: Liquid (Auth0's syntax, through the `liquid` crate), per connection and
//! optionally per client, in several languages. English, French, German and Spanish ship
//! built in. Every template is compiled and test-rendered when the settings load, so a typo or
//! an unknown variable stops the start-up instead of a login.
//!
//! Variables: `code` (alias `password`), `link`, `send`, `request_language`, `operation`,
//! `connection.name`, `application.name`, `user.email` / `user.phone_number`, and `minutes`
//! (the code's lifetime). The SMS macros `@@password@@`, `@@code@@` and `@@application.name@@`
//! work too. In HTML bodies every value is HTML-escaped.

use std::collections::HashMap;

use liquid::ObjectView as _;

/// One configured email template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    /// The connection it is for; all email connections when absent.
    #[serde(default)]
    pub connection: Option<String>,
    /// The client it is for; every client when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    pub language: String,
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub html: Option<String>,
}

/// One configured SMS template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmsTemplate {
    #[serde(default)]
    pub connection: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    pub language: String,
    pub text: String,
}

/// The `[templates]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSettings {
    /// Used when the request names no language we have (default `en`).
    pub default_language: Option<String>,
    pub email: Vec<EmailTemplate>,
    pub sms: Vec<SmsTemplate>,
}

/// A template setting that does not compile or render.
#[derive(Debug, thiserror::Error)]
#[error("template {which}: {message}")]
pub struct TemplateError {
    pub which: String,
    pub message: String,
}

struct CompiledEmail {
    subject: liquid::Template,
    text: liquid::Template,
    html: Option<liquid::Template>,
}

/// (connection, client, language); `None` matches any.
type Scope = (Option<String>, Option<String>, String);

/// Compiled templates, ready to render.
pub struct Templates {
    email: HashMap<Scope, CompiledEmail>,
    sms: HashMap<Scope, liquid::Template>,
    default_language: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("email", &self.email.len())
            .field("sms", &self.sms.len())
            .field("default_language", &self.default_language)
            .finish()
    }
}

/// What a message is rendered from.
#[derive(Debug, Clone)]
pub struct MessageContext<'a> {
    pub code: &'a str,
    pub link: &'a str,
    pub send: &'a str,
    pub request_language: Option<&'a str>,
    pub connection: &'a str,
    pub application: &'a str,
    pub email: Option<&'a str>,
    pub phone_number: Option<&'a str>,
    pub minutes: u64,
}

/// A rendered message (sealed into the outbox).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub language: String,
}

/// Escapes text for HTML content and quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut plain = 0;
    // The five characters are ASCII, so byte offsets around them are char boundaries.
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        out.push_str(entity);
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out
}

/// A template's variables, borrowed from the message context: no map is built per message.
#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct Globals<'a, U: liquid::ObjectView + liquid::ValueView> {
    code: &'a str,
    password: &'a str,
    link: &'a str,
    send: &'a str,
    request_language: Option<&'a str>,
    operation: Option<&'a str>,
    minutes: i64,
    application: Named<'a>,
    connection: Named<'a>,
    user: U,
}

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct Named<'a> {
    name: &'a str,
}

/// `user` of an email message: only `email` exists (an SMS template naming it fails its
/// test render at load, as it should).
#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct EmailUser<'a> {
    email: &'a str,
}

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct PhoneUser<'a> {
    phone_number: &'a str,
}

#[derive(Debug, liquid::ObjectView, liquid::ValueView)]
struct NoUser {}

/// Renders `t` with the variables of `c`, HTML-escaped when `escape`.
fn render(t: &liquid::Template, c: &MessageContext<'_>, escape: bool) -> Result<String, liquid::Error> {
    let escaped;
    let c = if escape {
        escaped = Escaped::of(c);
        &escaped.context()
    } else {
        c
    };
    fn with<U: liquid::ObjectView + liquid::ValueView>(
        t: &liquid::Template,
        c: &MessageContext<'_>,
        user: U,
    ) -> Result<String, liquid::Error> {
        t.render(&Globals {
            code: c.code,
            password: c.code,
            link: c.link,
            send: c.send,
            request_language: c.request_language,
            operation: None,
            minutes: i64::try_from(c.minutes).unwrap_or(i64::MAX),
            application: Named { name: c.application },
            connection: Named { name: c.connection },
            user,
        })
    }
    match (c.email, c.phone_number) {
        (Some(email), _) => with(t, c, EmailUser { email }),
        (None, Some(phone_number)) => with(t, c, PhoneUser { phone_number }),
        (None, None) => with(t, c, NoUser {}),
    }
}

/// HTML-escaped copies of a context's values.
struct Escaped {
    code: String,
    link: String,
    send: String,
    request_language: Option<String>,
    connection: String,
    application: String,
    email: Option<String>,
    phone_number: Option<String>,
    minutes: u64,
}

impl Escaped {
    fn of(c: &MessageContext<'_>) -> Self {
        Self {
            code: escape_html(c.code),
            link: escape_html(c.link),
            send: escape_html(c.send),
            request_language: c.request_language.map(escape_html),
            connection: escape_html(c.connection),
            application: escape_html(c.application),
            email: c.email.map(escape_html),
            phone_number: c.phone_number.map(escape_html),
            minutes: c.minutes,
        }
    }

    fn context(&self) -> MessageContext<'_> {
        MessageContext {
            code: &self.code,
            link: &self.link,
            send: &self.send,
            request_language: self.request_language.as_deref(),
            connection: &self.connection,
            application: &self.application,
            email: self.email.as_deref(),
            phone_number: self.phone_number.as_deref(),
            minutes: self.minutes,
        }
    }
}

/// Auth0's `md_with_macros` SMS placeholders, as Liquid.
fn macros(text: &str) -> String {
    text.replace("@@password@@", "{{ password }}")
        .replace("@@code@@", "{{ code }}")
        .replace("@@application.name@@", "{{ application.name }}")
}

fn parser() -> Result<liquid::Parser, TemplateError> {
    liquid::ParserBuilder::with_stdlib()
        .build()
        .map_err(|e| TemplateError { which: "parser".into(), message: e.to_string() })
}

fn sample(email: bool) -> MessageContext<'static> {
    MessageContext {
        code: "123456",
        link: "https://auth.example.com/passwordless/verify_redirect?verification_code=x&connection=email",
        send: "link",
        request_language: Some("en"),
        connection: "email",
        application: "App",
        email: email.then_some("user@example.com"),
        phone_number: (!email).then_some("+14155552671"),
        minutes: 3,
    }
}

fn compile(parser: &liquid::Parser, which: &str, text: &str, email: bool) -> Result<liquid::Template, TemplateError> {
    let t =
        parser.parse(&macros(text)).map_err(|e| TemplateError { which: which.to_owned(), message: e.to_string() })?;
    // A test render with every variable set: an unknown variable fails here, not at a login.
    for send in ["code", "link"] {
        let ctx = MessageContext { send, ..sample(email) };
        render(&t, &ctx, false).map_err(|e| TemplateError { which: which.to_owned(), message: e.to_string() })?;
    }
    Ok(t)
}

/// One control character anywhere in a subject could start a new mail header.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

impl Templates {
    /// Compiles the built-in templates and the configured ones.
    ///
    /// # Errors
    /// When a template does not parse, or uses an unknown variable or filter.
    pub fn compile(settings: &TemplateSettings) -> Result<Self, TemplateError> {
        let parser = parser()?;
        let mut email = HashMap::new();
        let mut sms = HashMap::new();
        let builtin_email = builtin::EMAIL.iter().map(|(lang, subject, text, html)| EmailTemplate {
            connection: None,
            client_id: None,
            language: (*lang).to_owned(),
            subject: (*subject).to_owned(),
            text: (*text).to_owned(),
            html: Some((*html).to_owned()),
        });
        for t in builtin_email.chain(settings.email.iter().cloned()) {
            let which = format!(
                "email {}/{}/{}",
                t.connection.as_deref().unwrap_or("*"),
                t.client_id.as_deref().unwrap_or("*"),
                t.language
            );
            let compiled = CompiledEmail {
                subject: compile(&parser, &format!("{which} subject"), &t.subject, true)?,
                text: compile(&parser, &format!("{which} text"), &t.text, true)?,
                html: t.html.as_deref().map(|h| compile(&parser, &format!("{which} html"), h, true)).transpose()?,
            };
            email.insert((t.connection, t.client_id, t.language.to_ascii_lowercase()), compiled);
        }
        let builtin_sms = builtin::SMS.iter().map(|(lang, text)| SmsTemplate {
            connection: None,
            client_id: None,
            language: (*lang).to_owned(),
            text: (*text).to_owned(),
        });
        for t in builtin_sms.chain(settings.sms.iter().cloned()) {
            let which = format!(
                "sms {}/{}/{}",
                t.connection.as_deref().unwrap_or("*"),
                t.client_id.as_deref().unwrap_or("*"),
                t.language
            );
            let compiled = compile(&parser, &which, &t.text, false)?;
            sms.insert((t.connection, t.client_id, t.language.to_ascii_lowercase()), compiled);
        }
        let default_language = settings.default_language.clone().unwrap_or_else(|| "en".into()).to_ascii_lowercase();
        Ok(Self { email, sms, default_language })
    }

    /// The built-in templates only.
    pub fn builtin() -> Self {
        #[expect(clippy::expect_used, reason = "the built-in templates are compiled by a unit test")]
        Self::compile(&TemplateSettings::default()).expect("built-in templates compile")
    }

    fn languages<T>(map: &HashMap<Scope, T>, connection: &str, client: &str) -> Vec<String> {
        let mut langs: Vec<String> = map
            .keys()
            .filter(|(c, k, _)| {
                c.as_deref().is_none_or(|c| c == connection) && k.as_deref().is_none_or(|k| k == client)
            })
            .map(|(_, _, l)| l.clone())
            .collect();
        langs.sort();
        langs.dedup();
        langs
    }

    /// The language to use: the first of `requested` (an `x-request-language` value or an
    /// `Accept-Language` header, q-values respected) that a template exists for, matched
    /// exactly or by primary subtag; else the default.
    fn pick_language(&self, available: &[String], requested: Option<&str>) -> String {
        if let Some(raw) = requested {
            for tag in requested_languages(raw) {
                let primary = tag.split('-').next().unwrap_or("").to_owned();
                if let Some(found) =
                    available.iter().find(|a| **a == tag).or_else(|| available.iter().find(|a| **a == primary))
                {
                    return found.clone();
                }
            }
        }
        self.default_language.clone()
    }

    fn find<'a, T>(map: &'a HashMap<Scope, T>, connection: &str, client: &str, lang: &str) -> Option<&'a T> {
        let (conn, cli, lang) = (Some(connection.to_owned()), Some(client.to_owned()), lang.to_owned());
        map.get(&(conn.clone(), cli.clone(), lang.clone()))
            .or_else(|| map.get(&(conn.clone(), None, lang.clone())))
            .or_else(|| map.get(&(None, cli, lang.clone())))
            .or_else(|| map.get(&(None, None, lang)))
    }

    fn render_one(t: &liquid::Template, ctx: &MessageContext<'_>, escape: bool) -> anyhow::Result<String> {
        render(t, ctx, escape).map_err(|e| anyhow::anyhow!("rendering a template: {e}"))
    }

    /// Renders the email for `client_id` on `ctx.connection`.
    ///
    /// # Errors
    /// Only if a compiled template fails to render (they were test-rendered at load).
    pub fn render_email(&self, client_id: &str, ctx: &MessageContext<'_>) -> anyhow::Result<Rendered> {
        let available = Self::languages(&self.email, ctx.connection, client_id);
        let lang = self.pick_language(&available, ctx.request_language);
        let t = Self::find(&self.email, ctx.connection, client_id, &lang)
            .or_else(|| Self::find(&self.email, ctx.connection, client_id, &self.default_language))
            .or_else(|| Self::find(&self.email, ctx.connection, client_id, "en"))
            .ok_or_else(|| anyhow::anyhow!("no email template"))?;
        let html = t.html.as_ref().map(|h| Self::render_one(h, ctx, true)).transpose()?;
        Ok(Rendered {
            subject: Some(one_line(&Self::render_one(&t.subject, ctx, false)?)),
            text: Self::render_one(&t.text, ctx, false)?,
            html,
            language: lang,
        })
    }

    /// Renders the SMS for `client_id` on `ctx.connection`.
    ///
    /// # Errors
    /// Only if a compiled template fails to render.
    pub fn render_sms(&self, client_id: &str, ctx: &MessageContext<'_>) -> anyhow::Result<Rendered> {
        let available = Self::languages(&self.sms, ctx.connection, client_id);
        let lang = self.pick_language(&available, ctx.request_language);
        let t = Self::find(&self.sms, ctx.connection, client_id, &lang)
            .or_else(|| Self::find(&self.sms, ctx.connection, client_id, &self.default_language))
            .or_else(|| Self::find(&self.sms, ctx.connection, client_id, "en"))
            .ok_or_else(|| anyhow::anyhow!("no SMS template"))?;
        let text = Self::render_one(t, ctx, false)?.trim().to_owned();
        Ok(Rendered { subject: None, text, html: None, language: lang })
    }
}

mod builtin {
    //! The shipped defaults. The code stands alone on its line (the dev mailbox and people both
    //! find it there); links are offered only when a link was asked for.

    /// (language, subject, text, html)
    pub(super) const EMAIL: &[(&str, &str, &str, &str)] = &[
        (
            "en",
            "{% if send == 'code' %}Your verification code for {{ application.name }}{% else %}Sign in to {{ application.name }}{% endif %}",
            "{% if send == 'code' %}Your verification code for {{ application.name }} is:\n\n{{ code }}\n\nIt expires in {{ minutes }} minutes.{% else %}Open this link to sign in to {{ application.name }}:\n\n{{ link }}\n\nOr enter this code: {{ code }}\n\nThe link and the code expire in {{ minutes }} minutes.{% endif %} If you did not ask for this, ignore this message.\n",
            "{% if send == 'code' %}<p>Your verification code for {{ application.name }} is:</p><p><strong>{{ code }}</strong></p><p>It expires in {{ minutes }} minutes.</p>{% else %}<p>Open this link to sign in to {{ application.name }}:</p><p><a href=\"{{ link }}\">Sign in to {{ application.name }}</a></p><p>Or enter this code: <strong>{{ code }}</strong></p><p>The link and the code expire in {{ minutes }} minutes.</p>{% endif %}<p>If you did not ask for this, ignore this message.</p>",
        ),
        (
            "fr",
            "{% if send == 'code' %}Votre code de vérification pour {{ application.name }}{% else %}Connexion à {{ application.name }}{% endif %}",
            "{% if send == 'code' %}Votre code de vérification pour {{ application.name }} est :\n\n{{ code }}\n\nIl expire dans {{ minutes }} minutes.{% else %}Ouvrez ce lien pour vous connecter à {{ application.name }} :\n\n{{ link }}\n\nOu saisissez ce code : {{ code }}\n\nLe lien et le code expirent dans {{ minutes }} minutes.{% endif %} Si vous n'avez rien demandé, ignorez ce message.\n",
            "{% if send == 'code' %}<p>Votre code de vérification pour {{ application.name }} est :</p><p><strong>{{ code }}</strong></p><p>Il expire dans {{ minutes }} minutes.</p>{% else %}<p>Ouvrez ce lien pour vous connecter à {{ application.name }} :</p><p><a href=\"{{ link }}\">Se connecter à {{ application.name }}</a></p><p>Ou saisissez ce code : <strong>{{ code }}</strong></p><p>Le lien et le code expirent dans {{ minutes }} minutes.</p>{% endif %}<p>Si vous n'avez rien demandé, ignorez ce message.</p>",
        ),
        (
            "de",
            "{% if send == 'code' %}Ihr Bestätigungscode für {{ application.name }}{% else %}Bei {{ application.name }} anmelden{% endif %}",
            "{% if send == 'code' %}Ihr Bestätigungscode für {{ application.name }} lautet:\n\n{{ code }}\n\nEr läuft in {{ minutes }} Minuten ab.{% else %}Öffnen Sie diesen Link, um sich bei {{ application.name }} anzumelden:\n\n{{ link }}\n\nOder geben Sie diesen Code ein: {{ code }}\n\nLink und Code laufen in {{ minutes }} Minuten ab.{% endif %} Wenn Sie nichts angefordert haben, ignorieren Sie diese Nachricht.\n",
            "{% if send == 'code' %}<p>Ihr Bestätigungscode für {{ application.name }} lautet:</p><p><strong>{{ code }}</strong></p><p>Er läuft in {{ minutes }} Minuten ab.</p>{% else %}<p>Öffnen Sie diesen Link, um sich bei {{ application.name }} anzumelden:</p><p><a href=\"{{ link }}\">Bei {{ application.name }} anmelden</a></p><p>Oder geben Sie diesen Code ein: <strong>{{ code }}</strong></p><p>Link und Code laufen in {{ minutes }} Minuten ab.</p>{% endif %}<p>Wenn Sie nichts angefordert haben, ignorieren Sie diese Nachricht.</p>",
        ),
        (
            "es",
            "{% if send == 'code' %}Tu código de verificación para {{ application.name }}{% else %}Inicia sesión en {{ application.name }}{% endif %}",
            "{% if send == 'code' %}Tu código de verificación para {{ application.name }} es:\n\n{{ code }}\n\nCaduca en {{ minutes }} minutos.{% else %}Abre este enlace para iniciar sesión en {{ application.name }}:\n\n{{ link }}\n\nO introduce este código: {{ code }}\n\nEl enlace y el código caducan en {{ minutes }} minutos.{% endif %} Si no lo has pedido, ignora este mensaje.\n",
            "{% if send == 'code' %}<p>Tu código de verificación para {{ application.name }} es:</p><p><strong>{{ code }}</strong></p><p>Caduca en {{ minutes }} minutos.</p>{% else %}<p>Abre este enlace para iniciar sesión en {{ application.name }}:</p><p><a href=\"{{ link }}\">Iniciar sesión en {{ application.name }}</a></p><p>O introduce este código: <strong>{{ code }}</strong></p><p>El enlace y el código caducan en {{ minutes }} minutos.</p>{% endif %}<p>Si no lo has pedido, ignora este mensaje.</p>",
        ),
    ];

    /// (language, text). A link only for native-app links (`link_ios`, `link_android`).
    pub(super) const SMS: &[(&str, &str)] = &[
        (
            "en",
            "Your verification code is: {{ code }}{% if send == 'link_ios' or send == 'link_android' %} {{ link }}{% endif %}",
        ),
        (
            "fr",
            "Votre code de vérification est : {{ code }}{% if send == 'link_ios' or send == 'link_android' %} {{ link }}{% endif %}",
        ),
        (
            "de",
            "Ihr Bestätigungscode lautet: {{ code }}{% if send == 'link_ios' or send == 'link_android' %} {{ link }}{% endif %}",
        ),
        (
            "es",
            "Tu código de verificación es: {{ code }}{% if send == 'link_ios' or send == 'link_android' %} {{ link }}{% endif %}",
        ),
    ];
}

/// The languages of an `x-request-language` value or an `Accept-Language` header (RFC 9110
/// §12.5.4), best first: q-values read as thousandths, entries with `q=0` (not acceptable), a
/// bad q-value or `*` dropped, ties kept in the sender's order. Integers, so no NaN can break
/// the sort (the `accept-language` crate's did: found by `fuzz/accept_language`).
pub fn requested_languages(raw: &str) -> Vec<String> {
    let mut tags: Vec<(u16, String)> = raw
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let tag = parts.next()?.trim().to_ascii_lowercase();
            if tag.is_empty() || tag == "*" || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return None;
            }
            let mut q = 1000u16;
            for param in parts {
                let (name, value) = param.split_once('=')?;
                if name.trim().eq_ignore_ascii_case("q") {
                    q = thousandths(value.trim())?;
                }
            }
            (q > 0).then_some((q, tag))
        })
        .collect();
    tags.sort_by_key(|t| std::cmp::Reverse(t.0));
    tags.into_iter().map(|(_, tag)| tag).collect()
}

/// A q-value (`0`, `0.5`, `1.000`, at most three decimals) as thousandths; anything else is None.
fn thousandths(value: &str) -> Option<u16> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    let q = whole + frac_value;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_is_read_without_panics_and_q_zero_is_refused() {
        // fuzz/corpus/accept_language/seed-regression-*: a NaN q-value made the sort panic.
        assert!(requested_languages(";,,,;=nan,,,,,,,,,,,,,,,,,").is_empty());
        assert_eq!(requested_languages("fr;q=0, p"), vec!["p".to_owned()]);
        assert_eq!(requested_languages("de-DE,de;q=0.9,en;q=0.95,*;q=0.1"), vec!["de-de", "en", "de"]);
        assert_eq!(requested_languages("fr;q=nan, es;q=1.5, it;q=0.5000, pt;q=0.5"), vec!["pt".to_owned()]);
    }

    fn ctx<'a>(send: &'a str, lang: Option<&'a str>) -> MessageContext<'a> {
        MessageContext {
            code: "482913",
            link: "https://auth.example.com/passwordless/verify_redirect?a=1&b=2",
            send,
            request_language: lang,
            connection: "email",
            application: "Acme <b>\"Shop\"</b>",
            email: Some("jane@example.com"),
            phone_number: None,
            minutes: 3,
        }
    }

    #[test]
    fn every_shipped_language_renders_both_channels_and_both_sends() {
        let t = Templates::builtin();
        for lang in ["en", "fr", "de", "es"] {
            for send in ["code", "link"] {
                let r = t.render_email("c", &ctx(send, Some(lang))).unwrap_or_else(|e| panic!("{lang} {send}: {e}"));
                assert_eq!(r.language, lang);
                assert!(r.text.contains("482913"), "{lang} {send}: {}", r.text);
                assert_eq!(r.text.contains("https://auth.example.com"), send == "link", "{lang} {send}");
                assert!(r.subject.as_deref().is_some_and(|s| !s.is_empty()));
            }
            let sms = t
                .render_sms("c", &MessageContext { connection: "sms", ..ctx("code", Some(lang)) })
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(sms.text.ends_with("482913"), "{lang}: {}", sms.text);
        }
    }

    #[test]
    fn escape_html_replaces_the_five_characters_and_keeps_the_rest() {
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("plain é ✓"), "plain é ✓");
        assert_eq!(escape_html("<a href='x'>\"&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
        assert_eq!(escape_html("é&é"), "é&amp;é");
        assert_eq!(escape_html("&&"), "&amp;&amp;");
    }

    #[test]
    fn html_values_are_escaped_and_text_values_are_not() {
        let r = Templates::builtin().render_email("c", &ctx("link", None)).unwrap_or_else(|e| panic!("{e}"));
        let html = r.html.unwrap_or_default();
        assert!(html.contains("Acme &lt;b&gt;&quot;Shop&quot;&lt;/b&gt;"), "{html}");
        assert!(html.contains("href=\"https://auth.example.com/passwordless/verify_redirect?a=1&amp;b=2\""), "{html}");
        assert!(r.text.contains("Acme <b>\"Shop\"</b>"));
    }

    #[test]
    fn language_follows_the_request_with_q_values_then_the_default() {
        let t = Templates::builtin();
        let pick = |raw: Option<&str>| t.render_email("c", &ctx("code", raw)).map(|r| r.language).unwrap_or_default();
        assert_eq!(pick(Some("fr-FR")), "fr");
        assert_eq!(pick(Some("it-IT,de;q=0.5,es;q=0.9")), "es");
        assert_eq!(pick(Some("en-GB,en-US;q=0.9,en;q=0.8")), "en");
        assert_eq!(pick(Some("ja")), "en");
        assert_eq!(pick(None), "en");
        let t = Templates::compile(&TemplateSettings { default_language: Some("de".into()), ..Default::default() })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.render_email("c", &ctx("code", Some("ja"))).map(|r| r.language).unwrap_or_default(), "de");
    }

    #[test]
    fn configured_templates_win_by_client_then_connection_and_sms_macros_work() {
        let settings = TemplateSettings {
            default_language: None,
            email: vec![
                EmailTemplate {
                    connection: Some("email".into()),
                    client_id: None,
                    language: "en".into(),
                    subject: "Conn {{ code }}".into(),
                    text: "conn".into(),
                    html: None,
                },
                EmailTemplate {
                    connection: Some("email".into()),
                    client_id: Some("vip".into()),
                    language: "en".into(),
                    subject: "VIP".into(),
                    text: "vip {{ user.email }}".into(),
                    html: None,
                },
            ],
            sms: vec![SmsTemplate {
                connection: None,
                client_id: None,
                language: "en".into(),
                text: "@@application.name@@: @@password@@".into(),
            }],
        };
        let t = Templates::compile(&settings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.render_email("vip", &ctx("code", None)).map(|r| r.text).unwrap_or_default(),
            "vip jane@example.com"
        );
        assert_eq!(
            t.render_email("other", &ctx("code", None))
                .and_then(|r| r.subject.ok_or_else(|| anyhow::anyhow!("no subject")))
                .unwrap_or_default(),
            "Conn 482913"
        );
        let sms = t
            .render_sms("c", &MessageContext { connection: "sms", application: "Acme", ..ctx("code", None) })
            .map(|r| r.text)
            .unwrap_or_default();
        assert_eq!(sms, "Acme: 482913");
    }

    #[test]
    fn unknown_variables_and_bad_syntax_fail_at_load() {
        let bad = |text: &str| TemplateSettings {
            sms: vec![SmsTemplate { connection: None, client_id: None, language: "en".into(), text: text.into() }],
            ..Default::default()
        };
        assert!(Templates::compile(&bad("{{ cod }}")).is_err(), "typo in a variable");
        assert!(Templates::compile(&bad("{% if code %}")).is_err(), "unclosed tag");
        assert!(Templates::compile(&bad("{{ code | no_such_filter }}")).is_err(), "unknown filter");
        assert!(Templates::compile(&bad("{{ code }} {{ user.phone_number }}")).is_ok());
    }

    #[test]
    fn subjects_cannot_carry_header_breaks() {
        let r = Templates::builtin()
            .render_email("c", &MessageContext { application: "App\r\nBcc: evil@example.com", ..ctx("code", None) })
            .unwrap_or_else(|e| panic!("{e}"));
        let subject = r.subject.unwrap_or_default();
        assert!(!subject.contains('\r') && !subject.contains('\n'), "{subject:?}");
    }
}

//! The hosted passwordless login page behind `GET /authorize`: enter an email or a phone
//! number, get a code (and, by email, a link), enter the code or open the link, and go back to
//! the app with an authorization code.
//!
//! Server-rendered, works without JavaScript (a script only polls for an opened link), strict
//! CSP with a per-response nonce, no third-party assets, a CSRF token (double submit: cookie
//! and form field, compared in constant time, plus `Origin` when the browser sends it) on every
//! POST, localised like the message templates, brandable per client from `[hosted]`.
//!
//! A magic link opened in the browser that asked completes the login there at once, and the
//! waiting page continues; opened anywhere else it first asks for a confirmation that names the
//! browser and time of the request, and only then approves the login for that browser — the
//! session is made in the browser that asked, never in the one that clicked.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;
use sesame_domain::{AuthParams, Client, ConnectionName, Send, Strategy};
use sesame_flows::authorize::{
    Authorization, AuthorizationResponse, AuthorizeError, LinkCompletion, ProveError, ResponseMode, ResponseType,
};
use sesame_flows::crypto::random_b64;
use sesame_flows::exchange::ExchangeError;
use sesame_flows::hosted::PendingLogin;
use sesame_flows::start::{StartError, StartRequest};
use sesame_flows::templates::escape_html as escape;
use subtle::ConstantTimeEq as _;

use crate::config::{BrandingSettings, HostedSettings};
use crate::routes::AppState;
use crate::wire;

const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub const SESSION_COOKIE: &str = "sesame_session";
pub const CSRF_COOKIE: &str = "sesame_csrf";
pub const LOGIN_COOKIE: &str = "sesame_login";
/// How long a started login waits for its code or link (the longest code lifetime allowed).
const PENDING_SECS: i64 = 900;

/// The authorization request's parameters, as the pages carry them from form to form.
const CARRIED: &[&str] = &[
    "client_id",
    "response_type",
    "response_mode",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "audience",
    "code_challenge",
    "code_challenge_method",
    "ui_locales",
];

/// What the page needs beyond the flows: cookies, lifetimes, looks.
#[derive(Debug, Clone)]
pub struct Hosted {
    pub remember_login: bool,
    pub session_lifetime: time::Duration,
    pub branding: HashMap<String, BrandingSettings>,
    /// Cookies are `Secure` when the issuer is https.
    pub secure: bool,
}

impl Hosted {
    /// Over https a cookie is `__Host-` prefixed: the browser then refuses one set by another
    /// subdomain, or over plain http, or for another path.
    pub fn cookie_name(&self, name: &str) -> String {
        if self.secure { format!("__Host-{name}") } else { name.to_owned() }
    }

    pub fn new(settings: &HostedSettings, issuer: &str) -> Self {
        Self {
            remember_login: settings.remember_login,
            session_lifetime: time::Duration::seconds(
                i64::try_from(settings.session_lifetime_secs).unwrap_or(i64::MAX),
            ),
            branding: settings.branding.iter().map(|b| (b.client_id.clone(), b.clone())).collect(),
            secure: issuer.starts_with("https://"),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/u/start", web::post().to(start))
        .route("/u/verify", web::post().to(verify))
        .route("/u/continue", web::post().to(resume))
        .route("/u/status", web::get().to(status));
}

// --- cookies --------------------------------------------------------------------------------

/// A cookie of the request (no `cookie` crate needed for three names).
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for one of ours: HttpOnly, SameSite=Lax, Path=/, Secure over https.
pub fn set_cookie(hosted: &Hosted, name: &str, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        hosted.cookie_name(name),
        if hosted.secure { "; Secure" } else { "" }
    )
}

/// One of our cookies, by its unprefixed name.
fn read_cookie(hosted: &Hosted, req: &HttpRequest, name: &str) -> Option<String> {
    cookie(req, &hosted.cookie_name(name))
}

pub fn clear_cookie(hosted: &Hosted, name: &str) -> String {
    set_cookie(hosted, name, "", 0)
}

// --- languages ------------------------------------------------------------------------------

/// The page's words in one language (the message templates' languages).
struct Texts {
    lang: &'static str,
    sign_in_to: &'static str,
    email_or_phone: &'static str,
    email: &'static str,
    phone: &'static str,
    send_code: &'static str,
    check_email: &'static str,
    check_phone: &'static str,
    sent_to: &'static str,
    link_hint: &'static str,
    code_label: &'static str,
    verify: &'static str,
    opened_link: &'static str,
    other_address: &'static str,
    wrong_code: &'static str,
    expired: &'static str,
    exhausted: &'static str,
    limited: &'static str,
    blocked: &'static str,
    bad_email: &'static str,
    bad_phone: &'static str,
    not_allowed: &'static str,
    not_yet: &'static str,
    page_expired: &'static str,
    signed_in: &'static str,
    signed_in_here: &'static str,
    continue_here: &'static str,
    confirm_title: &'static str,
    confirm_text: &'static str,
    confirm_button: &'static str,
    confirm_warning: &'static str,
    approved_title: &'static str,
    approved_text: &'static str,
}

const EN: Texts = Texts {
    lang: "en",
    sign_in_to: "Sign in to",
    email_or_phone: "Email address or phone number",
    email: "Email address",
    phone: "Phone number (with country code, e.g. +44 7700 900123)",
    send_code: "Continue",
    check_email: "Check your email",
    check_phone: "Check your phone",
    sent_to: "We sent a code to",
    link_hint: "You can also open the link in the email, in this browser or on another device.",
    code_label: "Verification code",
    verify: "Sign in",
    opened_link: "I opened the link",
    other_address: "Use another address",
    wrong_code: "That code is not right. Check it and try again.",
    expired: "That code has expired. Ask for a new one.",
    exhausted: "Too many wrong codes. Ask for a new one.",
    limited: "Too many attempts. Please wait a moment and try again.",
    blocked: "This account is blocked.",
    bad_email: "Enter a valid email address.",
    bad_phone: "Enter a valid phone number, with its country code (e.g. +44 7700 900123).",
    not_allowed: "This application does not accept that kind of address.",
    not_yet: "The link has not been opened yet. Open it, or enter the code.",
    page_expired: "This page has expired. Please start again.",
    signed_in: "You are signed in",
    signed_in_here: "Go back to the tab where you started: it continues by itself. Or continue here.",
    continue_here: "Continue here",
    confirm_title: "Sign in on another device?",
    confirm_text: "This sign-in was requested from",
    confirm_button: "Yes, it was me: approve",
    confirm_warning: "If you did not ask to sign in, close this page: nothing happens.",
    approved_title: "Sign-in approved",
    approved_text: "Go back to the browser where you asked to sign in: it continues there.",
};

const FR: Texts = Texts {
    lang: "fr",
    sign_in_to: "Connexion à",
    email_or_phone: "Adresse e-mail ou numéro de téléphone",
    email: "Adresse e-mail",
    phone: "Numéro de téléphone (avec l'indicatif du pays, p. ex. +33 6 12 34 56 78)",
    send_code: "Continuer",
    check_email: "Consultez vos e-mails",
    check_phone: "Consultez votre téléphone",
    sent_to: "Nous avons envoyé un code à",
    link_hint: "Vous pouvez aussi ouvrir le lien de l'e-mail, dans ce navigateur ou sur un autre appareil.",
    code_label: "Code de vérification",
    verify: "Se connecter",
    opened_link: "J'ai ouvert le lien",
    other_address: "Utiliser une autre adresse",
    wrong_code: "Ce code n'est pas le bon. Vérifiez-le et réessayez.",
    expired: "Ce code a expiré. Demandez-en un nouveau.",
    exhausted: "Trop de codes erronés. Demandez-en un nouveau.",
    limited: "Trop de tentatives. Patientez un instant puis réessayez.",
    blocked: "Ce compte est bloqué.",
    bad_email: "Saisissez une adresse e-mail valide.",
    bad_phone: "Saisissez un numéro de téléphone valide, avec l'indicatif du pays (p. ex. +33 6 12 34 56 78).",
    not_allowed: "Cette application n'accepte pas ce type d'adresse.",
    not_yet: "Le lien n'a pas encore été ouvert. Ouvrez-le, ou saisissez le code.",
    page_expired: "Cette page a expiré. Veuillez recommencer.",
    signed_in: "Vous êtes connecté",
    signed_in_here: "Revenez à l'onglet de départ : il continue tout seul. Ou continuez ici.",
    continue_here: "Continuer ici",
    confirm_title: "Se connecter sur un autre appareil ?",
    confirm_text: "Cette connexion a été demandée depuis",
    confirm_button: "Oui, c'était moi : approuver",
    confirm_warning: "Si vous n'avez rien demandé, fermez cette page : rien ne se passera.",
    approved_title: "Connexion approuvée",
    approved_text: "Revenez au navigateur où vous avez demandé la connexion : elle continue là-bas.",
};

const DE: Texts = Texts {
    lang: "de",
    sign_in_to: "Anmelden bei",
    email_or_phone: "E-Mail-Adresse oder Telefonnummer",
    email: "E-Mail-Adresse",
    phone: "Telefonnummer (mit Ländervorwahl, z. B. +49 151 23456789)",
    send_code: "Weiter",
    check_email: "Sehen Sie in Ihre E-Mails",
    check_phone: "Sehen Sie auf Ihr Telefon",
    sent_to: "Wir haben einen Code gesendet an",
    link_hint: "Sie können auch den Link in der E-Mail öffnen, in diesem Browser oder auf einem anderen Gerät.",
    code_label: "Bestätigungscode",
    verify: "Anmelden",
    opened_link: "Ich habe den Link geöffnet",
    other_address: "Andere Adresse verwenden",
    wrong_code: "Dieser Code stimmt nicht. Prüfen Sie ihn und versuchen Sie es erneut.",
    expired: "Dieser Code ist abgelaufen. Fordern Sie einen neuen an.",
    exhausted: "Zu viele falsche Codes. Fordern Sie einen neuen an.",
    limited: "Zu viele Versuche. Bitte warten Sie einen Moment.",
    blocked: "Dieses Konto ist gesperrt.",
    bad_email: "Geben Sie eine gültige E-Mail-Adresse ein.",
    bad_phone: "Geben Sie eine gültige Telefonnummer mit Ländervorwahl ein (z. B. +49 151 23456789).",
    not_allowed: "Diese Anwendung akzeptiert diese Art von Adresse nicht.",
    not_yet: "Der Link wurde noch nicht geöffnet. Öffnen Sie ihn oder geben Sie den Code ein.",
    page_expired: "Diese Seite ist abgelaufen. Bitte beginnen Sie erneut.",
    signed_in: "Sie sind angemeldet",
    signed_in_here: "Kehren Sie zum Tab zurück, in dem Sie begonnen haben: Er macht von selbst weiter. Oder fahren Sie hier fort.",
    continue_here: "Hier fortfahren",
    confirm_title: "Auf einem anderen Gerät anmelden?",
    confirm_text: "Diese Anmeldung wurde angefordert von",
    confirm_button: "Ja, das war ich: bestätigen",
    confirm_warning: "Wenn Sie keine Anmeldung angefordert haben, schließen Sie diese Seite: Es passiert nichts.",
    approved_title: "Anmeldung bestätigt",
    approved_text: "Kehren Sie zu dem Browser zurück, in dem Sie die Anmeldung angefordert haben: Dort geht es weiter.",
};

const ES: Texts = Texts {
    lang: "es",
    sign_in_to: "Inicia sesión en",
    email_or_phone: "Correo electrónico o número de teléfono",
    email: "Correo electrónico",
    phone: "Número de teléfono (con el prefijo del país, p. ej. +34 612 34 56 78)",
    send_code: "Continuar",
    check_email: "Revisa tu correo",
    check_phone: "Revisa tu teléfono",
    sent_to: "Hemos enviado un código a",
    link_hint: "También puedes abrir el enlace del correo, en este navegador o en otro dispositivo.",
    code_label: "Código de verificación",
    verify: "Iniciar sesión",
    opened_link: "He abierto el enlace",
    other_address: "Usar otra dirección",
    wrong_code: "Ese código no es correcto. Revísalo e inténtalo de nuevo.",
    expired: "Ese código ha caducado. Pide uno nuevo.",
    exhausted: "Demasiados códigos erróneos. Pide uno nuevo.",
    limited: "Demasiados intentos. Espera un momento e inténtalo de nuevo.",
    blocked: "Esta cuenta está bloqueada.",
    bad_email: "Escribe un correo electrónico válido.",
    bad_phone: "Escribe un número de teléfono válido, con el prefijo del país (p. ej. +34 612 34 56 78).",
    not_allowed: "Esta aplicación no acepta ese tipo de dirección.",
    not_yet: "El enlace aún no se ha abierto. Ábrelo o escribe el código.",
    page_expired: "Esta página ha caducado. Vuelve a empezar.",
    signed_in: "Has iniciado sesión",
    signed_in_here: "Vuelve a la pestaña donde empezaste: continúa sola. O continúa aquí.",
    continue_here: "Continuar aquí",
    confirm_title: "¿Iniciar sesión en otro dispositivo?",
    confirm_text: "Este inicio de sesión se pidió desde",
    confirm_button: "Sí, fui yo: aprobar",
    confirm_warning: "Si no pediste iniciar sesión, cierra esta página: no pasará nada.",
    approved_title: "Inicio de sesión aprobado",
    approved_text: "Vuelve al navegador donde pediste iniciar sesión: continúa allí.",
};

const LANGUAGES: &[&Texts] = &[&EN, &FR, &DE, &ES];

/// `ui_locales` (space-separated, OIDC) first, then `Accept-Language`; English otherwise.
fn texts(req: &HttpRequest, ui_locales: Option<&str>) -> &'static Texts {
    let from_ui = ui_locales.map(|l| l.split_whitespace().collect::<Vec<_>>().join(","));
    let header = req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    for raw in [from_ui, header].into_iter().flatten() {
        for tag in sesame_flows::templates::requested_languages(&raw) {
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(t) = LANGUAGES.iter().find(|t| t.lang == primary) {
                return t;
            }
        }
    }
    &EN
}

// --- the page -------------------------------------------------------------------------------

/// What a page shows besides its body.
struct Frame<'a> {
    texts: &'static Texts,
    title: &'a str,
    brand: Brand<'a>,
    /// Origins forms may post to (and be redirected to) besides our own.
    form_origin: Option<String>,
    /// A script for the page (runs under the page's nonce).
    script: Option<String>,
}

/// The looks of the page for one client.
struct Brand<'a> {
    name: &'a str,
    logo: Option<&'a str>,
    primary: &'a str,
    background: &'a str,
}

fn brand<'a>(hosted: &'a Hosted, client: &'a Client) -> Brand<'a> {
    let b = hosted.branding.get(client.id.as_str());
    Brand {
        name: b.and_then(|b| b.name.as_deref()).unwrap_or(&client.name),
        logo: b.and_then(|b| b.logo_url.as_deref()),
        primary: b.and_then(|b| b.primary_color.as_deref()).unwrap_or("#1d4ed8"),
        background: b.and_then(|b| b.background_color.as_deref()).unwrap_or("#f5f5f4"),
    }
}

/// The CSP source of a URL: `scheme://host` for http(s), `scheme:` for an app's private-use
/// scheme (`com.example.app:/callback`, RFC 8252 §7.1).
pub(crate) fn csp_source(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Some(format!("{scheme}:"));
    }
    let host = rest.strip_prefix("//")?.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains(['\'', ' ', ';', ',', '"'])).then(|| format!("{scheme}://{host}"))
}

fn render(status: StatusCode, frame: &Frame<'_>, body: &str) -> HttpResponse {
    let nonce = random_b64(&sesame_flows::OsRandom, 18);
    let img = frame.brand.logo.and_then(csp_source).unwrap_or_else(|| "'none'".into());
    let form_action = match &frame.form_origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".into(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src {img}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let logo = frame
        .brand
        .logo
        .map(|l| format!("<img class=\"logo\" src=\"{}\" alt=\"{}\">", escape(l), escape(frame.brand.name)))
        .unwrap_or_default();
    let script = frame.script.as_ref().map(|s| format!("<script nonce=\"{nonce}\">{s}</script>")).unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style nonce=\"{nonce}\">\
body{{font-family:system-ui,sans-serif;background:{bg};color:#1c1917;margin:0}}\
main{{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:.75rem;box-shadow:0 1px 4px #0002}}\
h1{{font-size:1.4rem;margin:0 0 1rem}}label{{display:block;font-weight:600;margin:.8rem 0 .3rem}}\
input{{box-sizing:border-box;width:100%;font-size:1.1rem;padding:.6rem;border:1px solid #78716c;border-radius:.4rem}}\
input:focus,button:focus,a:focus{{outline:3px solid {primary};outline-offset:2px}}\
button{{font-size:1.05rem;padding:.65rem 1.3rem;margin-top:1rem;border:0;border-radius:.4rem;background:{primary};color:#fff;cursor:pointer}}\
button.secondary{{background:#fff;color:{primary};border:1px solid {primary}}}\
a{{color:{primary}}}.error{{color:#b91c1c;font-weight:600}}.logo{{max-height:3rem;display:block;margin-bottom:1rem}}\
.muted{{color:#57534e}}\
</style></head><body><main>{logo}{body}</main>{script}</body></html>",
        lang = frame.texts.lang,
        title = escape(frame.title),
        bg = frame.brand.background,
        primary = frame.brand.primary,
    );
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Not `no-referrer`: a browser then sends `Origin: null` with the page's POSTs, and the
        // origin check could not tell them from a cross-site one. Nothing leaves for other sites.
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", csp))
        .body(html)
}

/// The authorization request as hidden fields (and as a query, for links back to the start).
fn carried(map: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    CARRIED.iter().filter_map(|k| map.get(*k).filter(|v| !v.is_empty()).map(|v| (*k, v.clone()))).collect()
}

fn hidden(fields: &[(&str, String)], csrf: &str) -> String {
    let mut out = format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(csrf));
    for (k, v) in fields {
        out.push_str(&format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)));
    }
    out
}

fn query(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, COMPONENT), utf8_percent_encode(v, COMPONENT)))
        .collect::<Vec<_>>()
        .join("&")
}

fn error_line(error: Option<&str>) -> String {
    error.map(|e| format!("<p id=\"error\" class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default()
}

fn invalid_attrs(error: Option<&str>) -> &'static str {
    if error.is_some() { " aria-invalid=\"true\" aria-describedby=\"error\"" } else { "" }
}

/// Which kinds of address the client's connections take.
async fn strategies(state: &AppState, client: &Client) -> Result<Vec<(Strategy, ConnectionName)>, HttpResponse> {
    let mut out = Vec::new();
    for name in &client.connections {
        match state.sesame.ports.connections.find(name).await {
            Ok(Some(c)) => {
                let provided = match c.strategy {
                    Strategy::Email => state.sesame.settings.email_enabled,
                    Strategy::Sms => state.sesame.settings.sms_enabled,
                };
                if provided && !out.iter().any(|(s, _)| *s == c.strategy) {
                    out.push((c.strategy, c.name));
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = ?e, "connection lookup failed");
                return Err(crate::links::unavailable_page());
            }
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    state: &'a AppState,
    req: &'a HttpRequest,
    client: Client,
    auth: Authorization,
    map: HashMap<String, String>,
    texts: &'static Texts,
}

impl Ctx<'_> {
    fn frame<'b>(&'b self, title: &'b str) -> Frame<'b> {
        Frame {
            texts: self.texts,
            title,
            brand: brand(&self.state.hosted, &self.client),
            form_origin: csp_source(&self.auth.redirect_uri),
            script: None,
        }
    }

    fn csrf(&self) -> String {
        read_cookie(&self.state.hosted, self.req, CSRF_COOKIE).unwrap_or_default()
    }
}

/// The first page: the address.
async fn identifier_page(ctx: &Ctx<'_>, status: StatusCode, error: Option<&str>, csrf: &str) -> HttpResponse {
    let t = ctx.texts;
    let kinds = match strategies(ctx.state, &ctx.client).await {
        Ok(k) => k,
        Err(page) => return page,
    };
    let (label, kind, autocomplete) = match kinds.as_slice() {
        [(Strategy::Email, _)] => (t.email, "email", "email"),
        [(Strategy::Sms, _)] => (t.phone, "tel", "tel"),
        _ => (t.email_or_phone, "text", "username"),
    };
    let hint = ctx.map.get("login_hint").map(String::as_str).unwrap_or_default();
    let title = format!("{} {}", t.sign_in_to, brand(&ctx.state.hosted, &ctx.client).name);
    let body = format!(
        "<h1>{title}</h1>{error}<form method=\"post\" action=\"/u/start\" novalidate>{hidden}<label for=\"identifier\">{label}</label><input id=\"identifier\" name=\"identifier\" type=\"{kind}\" autocomplete=\"{autocomplete}\" value=\"{hint}\" required autofocus{invalid}><button type=\"submit\" id=\"send\">{send}</button></form>",
        title = escape(&title),
        error = error_line(error),
        hidden = hidden(&carried(&ctx.map), csrf),
        label = escape(label),
        hint = escape(hint),
        invalid = invalid_attrs(error),
        send = escape(t.send_code),
    );
    let mut resp = render(status, &ctx.frame(&title), &body);
    if read_cookie(&ctx.state.hosted, ctx.req, CSRF_COOKIE).as_deref() != Some(csrf) {
        append_cookie(&mut resp, &set_cookie(&ctx.state.hosted, CSRF_COOKIE, csrf, 86_400));
    }
    resp
}

/// The second page: the code (and, by email, the link).
fn code_page(ctx: &Ctx<'_>, pending: &PendingLogin, error: Option<&str>) -> HttpResponse {
    let t = ctx.texts;
    let by_email = pending.identifier.contains('@');
    let title = if by_email { t.check_email } else { t.check_phone };
    let fields = carried(&ctx.map);
    let csrf = ctx.csrf();
    let link_part = if by_email {
        format!(
            "<p class=\"muted\">{hint}</p><form method=\"post\" action=\"/u/continue\" id=\"continue\">{hidden}<button type=\"submit\" class=\"secondary\" id=\"opened\">{opened}</button></form>",
            hint = escape(t.link_hint),
            hidden = hidden(&fields, &csrf),
            opened = escape(t.opened_link),
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1>{title}</h1><p>{sent} <strong>{to}</strong></p>{error}<form method=\"post\" action=\"/u/verify\" novalidate>{hidden}<label for=\"code\">{label}</label><input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" pattern=\"[0-9]*\" autocomplete=\"one-time-code\" required autofocus{invalid}><button type=\"submit\" id=\"verify\">{verify}</button></form>{link_part}<p><a href=\"/authorize?{back}&amp;prompt=login\" id=\"other\">{other}</a></p>",
        title = escape(title),
        sent = escape(t.sent_to),
        to = escape(&pending.identifier),
        error = error_line(error),
        hidden = hidden(&fields, &csrf),
        label = escape(t.code_label),
        invalid = invalid_attrs(error),
        verify = escape(t.verify),
        back = escape(&query(&fields)),
        other = escape(t.other_address),
    );
    let mut frame = ctx.frame(title);
    if by_email {
        // Only an improvement: without it, "I opened the link" does the same by hand.
        frame.script = Some(
            "(function(){var f=document.getElementById('continue');if(!f||!window.fetch)return;var t=setInterval(function(){fetch('/u/status',{credentials:'same-origin'}).then(function(r){return r.json()}).then(function(j){if(j.approved){clearInterval(t);f.submit()}}).catch(function(){})},2000)})();".into(),
        );
    }
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(status, &frame, &body)
}

fn append_cookie(resp: &mut HttpResponse, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A page for what cannot go back to the app (and is not the app's fault).
fn message_page(
    state: &AppState,
    client: &Client,
    texts: &'static Texts,
    status: StatusCode,
    title: &str,
    text: &str,
) -> HttpResponse {
    let frame = Frame { texts, title, brand: brand(&state.hosted, client), form_origin: None, script: None };
    render(status, &frame, &format!("<h1>{}</h1><p role=\"alert\">{}</p>", escape(title), escape(text)))
}

// --- GET /authorize -------------------------------------------------------------------------

/// `GET /authorize` without a login ticket: answer from the session, or show the page.
pub async fn authorize(
    state: &AppState,
    req: &HttpRequest,
    map: HashMap<String, String>,
    client: Client,
    auth: Authorization,
) -> HttpResponse {
    let texts = texts(req, map.get("ui_locales").map(String::as_str));
    let prompt: Vec<&str> = map.get("prompt").map(|p| p.split_whitespace().collect()).unwrap_or_default();
    let session = if state.hosted.remember_login && !prompt.contains(&"login") {
        read_cookie(&state.hosted, req, SESSION_COOKIE).and_then(|c| state.sesame.open_session(&c))
    } else {
        None
    };
    // `max_age=0` asks for a fresh login, as `prompt=login` does.
    let expired_by_max_age = match (map.get("max_age").and_then(|m| m.parse::<i64>().ok()), &session) {
        (Some(max), Some(s)) => max <= 0 || state.sesame.ports.clock.now().unix_timestamp() - s.auth_time >= max,
        _ => false,
    };
    if let Some(session) = session.filter(|_| !expired_by_max_age) {
        match state.sesame.session_user(&client, &session, &auth).await {
            Ok(Some(user)) => {
                let ip = wire::client_ip(req, &state.trusted_proxies);
                return answer(state.sesame.authorize_by_session(&client, &user, &auth, ip).await);
            }
            Ok(None) => {}
            Err(e) => return answer(Err(e)),
        }
    }
    if prompt.contains(&"none") {
        let r = sesame_flows::authorize::Redirectable {
            error: "login_required",
            description: "The user is not signed in (prompt=none)".into(),
        };
        return crate::links::respond(&AuthorizationResponse::error(&auth, &r));
    }
    let csrf = read_cookie(&state.hosted, req, CSRF_COOKIE).unwrap_or_else(|| random_b64(&sesame_flows::OsRandom, 24));
    let ctx = Ctx { state, req, client, auth, map, texts };
    identifier_page(&ctx, StatusCode::OK, None, &csrf).await
}

/// Sends an authorization result on: the response, an error for the app, or a page.
fn answer(result: Result<AuthorizationResponse, AuthorizeError>) -> HttpResponse {
    match result {
        Ok(resp) => crate::links::respond(&resp),
        Err(AuthorizeError::Redirect(r, auth)) => crate::links::respond(&AuthorizationResponse::error(&auth, &r)),
        Err(AuthorizeError::UntrustedRedirect) => {
            crate::links::error_page("The redirect_uri is not a registered callback of the application.")
        }
        Err(AuthorizeError::Unavailable(e) | AuthorizeError::Unexpected(e)) => {
            tracing::warn!(error = ?e, "hosted login failed");
            crate::links::unavailable_page()
        }
    }
}

// --- POSTs ----------------------------------------------------------------------------------

/// Reads a page's form, checks its CSRF token and `Origin`, and re-checks the authorization
/// request it carries. `Err` is the page to show.
async fn posted<'a>(state: &'a AppState, req: &'a HttpRequest, body: &[u8]) -> Result<Ctx<'a>, HttpResponse> {
    let map: HashMap<String, String> = match serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        Ok(pairs) if !pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) => pairs.into_iter().collect(),
        _ => return Err(crate::links::error_page("The form could not be read.")),
    };
    let texts = texts(req, map.get("ui_locales").map(String::as_str));
    let (client, auth) = crate::links::prepare(state, &map).await?;
    let origin_ok = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).is_none_or(|o| {
        let issuer = state.sesame.settings.issuer.trim_end_matches('/');
        o == issuer || csp_source(issuer).is_some_and(|i| i == o)
    });
    let sent = map.get("csrf").map(String::as_bytes).unwrap_or_default();
    let held = read_cookie(&state.hosted, req, CSRF_COOKIE).unwrap_or_default();
    let csrf_ok = !held.is_empty() && bool::from(held.as_bytes().ct_eq(sent));
    let ctx = Ctx { state, req, client, auth, map, texts };
    if !origin_ok || !csrf_ok {
        // The page again, with this browser's token (a new one if it had none).
        let csrf = if held.is_empty() { random_b64(&sesame_flows::OsRandom, 24) } else { held };
        return Err(identifier_page(&ctx, StatusCode::FORBIDDEN, Some(texts.page_expired), &csrf).await);
    }
    Ok(ctx)
}

/// A short name for the browser that asked (shown on another device's confirmation page).
pub fn browser_name(req: &HttpRequest) -> String {
    let ua = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        "a browser"
    };
    let os = if ua.contains("Android") {
        "Android"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    if os.is_empty() { browser.to_owned() } else { format!("{browser} on {os}") }
}

/// The authorization request, as the start stores it for its link (and the link carries).
fn link_params(auth: &Authorization, binding: &str, from: &str, at: &str) -> AuthParams {
    let mut m = serde_json::Map::new();
    let rt = match auth.response_type {
        ResponseType::Code => "code",
        ResponseType::Token => "token",
        ResponseType::IdToken => "id_token",
        ResponseType::TokenIdToken => "token id_token",
    };
    let mode = match auth.mode {
        ResponseMode::Query => "query",
        ResponseMode::Fragment => "fragment",
        ResponseMode::FormPost => "form_post",
    };
    m.insert("response_type".into(), json!(rt));
    m.insert("response_mode".into(), json!(mode));
    m.insert("redirect_uri".into(), json!(auth.redirect_uri));
    m.insert("scope".into(), json!(auth.scope));
    for (k, v) in [("state", &auth.state), ("nonce", &auth.nonce), ("audience", &auth.audience)] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(c) = &auth.code_challenge {
        m.insert("code_challenge".into(), json!(c));
        m.insert("code_challenge_method".into(), json!("S256"));
    }
    m.insert("sesame_login".into(), json!(binding));
    m.insert("sesame_from".into(), json!(from));
    m.insert("sesame_at".into(), json!(at));
    AuthParams(m)
}

/// `POST /u/start`: sends the code (and link), then shows the code page.
#[utoipa::path(post, path = "/u/start", tag = "hosted",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "The address page's form: the authorization request, `csrf` and `identifier`", example = json!({"client_id": "sesame-dev", "response_type": "code", "redirect_uri": "http://localhost:3000/callback", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256", "csrf": "not-this-browsers-token", "identifier": "jane@example.com", "code": "000000"})),
    responses(
        (status = 200, description = "The next page of the hosted login (or the page shown again, with its error announced)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "A page naming what is wrong (a bad address or code, an expired page), or an error page for a request that cannot go back to the app", content_type = "text/html"),
        (status = 403, description = "The CSRF token or `Origin` does not match (the page is shown again), or the user is blocked", content_type = "text/html"),
        (status = 429, description = "Too many attempts (the page says so)", content_type = "text/html"),
        (status = 503, description = "A dependency is unavailable", content_type = "text/html"),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn start(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let ctx = match posted(&state, &req, &body).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let t = ctx.texts;
    let csrf = ctx.csrf();
    let raw = ctx.map.get("identifier").map(|s| s.trim().to_owned()).unwrap_or_default();
    let kinds = match strategies(&state, &ctx.client).await {
        Ok(k) => k,
        Err(page) => return page,
    };
    let wanted = if raw.contains('@') { Strategy::Email } else { Strategy::Sms };
    let Some((strategy, connection)) = kinds.iter().find(|(s, _)| *s == wanted).cloned() else {
        let error = match (kinds.as_slice(), wanted) {
            ([(Strategy::Email, _)], _) => t.bad_email,
            ([(Strategy::Sms, _)], _) => t.bad_phone,
            _ => t.not_allowed,
        };
        return identifier_page(&ctx, StatusCode::BAD_REQUEST, Some(error), &csrf).await;
    };
    let mut pending =
        state.sesame.new_pending(&ctx.client, connection.as_str(), &raw, time::Duration::seconds(PENDING_SECS));
    let at = state
        .sesame
        .ports
        .clock
        .now()
        .format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_default();
    let request = StartRequest {
        client: ctx.client.clone(),
        connection,
        email: (strategy == Strategy::Email).then(|| raw.clone()),
        phone_number: (strategy == Strategy::Sms).then(|| raw.clone()),
        send: Some(if strategy == Strategy::Email { Send::Link } else { Send::Code }),
        auth_params: link_params(&ctx.auth, &state.sesame.login_binding(&pending.login_id), &browser_name(&req), &at),
        language: Some(t.lang.to_owned()),
        ip: wire::client_ip(&req, &state.trusted_proxies),
    };
    let outcome = state.sesame.start(request).await;
    match outcome.result {
        Ok(started) => {
            pending.identifier = started.identifier.as_str().to_owned();
            let sealed = state.sesame.seal_pending(&pending);
            let mut page = code_page(&ctx, &pending, None);
            append_cookie(&mut page, &set_cookie(&state.hosted, LOGIN_COOKIE, &sealed, PENDING_SECS));
            page
        }
        Err(e) => {
            let (error, status) = match e {
                StartError::EmailMissing | StartError::EmailInvalid(_) => (t.bad_email, StatusCode::BAD_REQUEST),
                StartError::PhoneMissing | StartError::PhoneInvalid(_) => (t.bad_phone, StatusCode::BAD_REQUEST),
                StartError::Blocked => (t.blocked, StatusCode::FORBIDDEN),
                StartError::RateLimited => (t.limited, StatusCode::TOO_MANY_REQUESTS),
                StartError::Unavailable(_) | StartError::Unexpected(_) => {
                    return crate::links::unavailable_page();
                }
                StartError::CostlyNumber(_)
                | StartError::CountryNotAllowed
                | StartError::SmsProviderError(_)
                | StartError::ConnectionNotFound
                | StartError::ConnectionDisabled
                | StartError::NoProvider(_)
                | StartError::SignupDisabled
                | StartError::BadAuthParams(_) => (t.not_allowed, StatusCode::BAD_REQUEST),
            };
            identifier_page(&ctx, status, Some(error), &csrf).await
        }
    }
}

/// A page's POST (as `posted`) of a browser that started a login for this client; without
/// one, the address page again.
async fn posted_pending<'a>(
    state: &'a AppState,
    req: &'a HttpRequest,
    body: &[u8],
) -> Result<(Ctx<'a>, PendingLogin), HttpResponse> {
    let ctx = posted(state, req, body).await?;
    let pending = read_cookie(&state.hosted, req, LOGIN_COOKIE)
        .and_then(|c| state.sesame.open_pending(&c))
        .filter(|p| p.client_id == ctx.client.id.0);
    match pending {
        Some(p) => Ok((ctx, p)),
        None => Err(identifier_page(&ctx, StatusCode::BAD_REQUEST, Some(ctx.texts.page_expired), &ctx.csrf()).await),
    }
}

/// Signs the browser in and sends it to the app.
fn signed_in(
    state: &AppState,
    user: &sesame_domain::User,
    result: Result<AuthorizationResponse, AuthorizeError>,
) -> HttpResponse {
    let ok = result.is_ok();
    let mut resp = answer(result);
    if ok {
        append_cookie(&mut resp, &clear_cookie(&state.hosted, LOGIN_COOKIE));
        if state.hosted.remember_login {
            let session = state.sesame.seal_session(&user.id, state.hosted.session_lifetime);
            let max_age = state.hosted.session_lifetime.whole_seconds();
            append_cookie(&mut resp, &set_cookie(&state.hosted, SESSION_COOKIE, &session, max_age));
        }
    }
    resp
}

/// `POST /u/verify`: the typed code.
#[utoipa::path(post, path = "/u/verify", tag = "hosted",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "The code page's form: the authorization request, `csrf` and `code`", example = json!({"client_id": "sesame-dev", "response_type": "code", "redirect_uri": "http://localhost:3000/callback", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256", "csrf": "not-this-browsers-token", "identifier": "jane@example.com", "code": "000000"})),
    responses(
        (status = 200, description = "The next page of the hosted login (or the page shown again, with its error announced)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "A page naming what is wrong (a bad address or code, an expired page), or an error page for a request that cannot go back to the app", content_type = "text/html"),
        (status = 403, description = "The CSRF token or `Origin` does not match (the page is shown again), or the user is blocked", content_type = "text/html"),
        (status = 429, description = "Too many attempts (the page says so)", content_type = "text/html"),
        (status = 503, description = "A dependency is unavailable", content_type = "text/html"),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn verify(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (ctx, pending) = match posted_pending(&state, &req, &body).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let t = ctx.texts;
    let by_email = pending.identifier.contains('@');
    let completion = LinkCompletion {
        client: ctx.client.clone(),
        connection: pending.connection.clone(),
        email: by_email.then(|| pending.identifier.clone()),
        phone_number: (!by_email).then(|| pending.identifier.clone()),
        verification_code: ctx.map.get("code").map(|c| c.trim().to_owned()).unwrap_or_default(),
        authorization: ctx.auth.clone(),
        ip: wire::client_ip(&req, &state.trusted_proxies),
    };
    match state.sesame.prove(completion, "hosted login").await {
        Ok(proven) => {
            let result = state.sesame.authorize_user(&ctx.client, &proven.user, &ctx.auth).await;
            signed_in(&state, &proven.user, result)
        }
        Err(ProveError::Refused(e)) => {
            let (error, restart, status) = match e {
                ExchangeError::WrongCode(_) => (t.wrong_code, false, StatusCode::BAD_REQUEST),
                ExchangeError::Expired => (t.expired, true, StatusCode::BAD_REQUEST),
                ExchangeError::Exhausted => (t.exhausted, true, StatusCode::BAD_REQUEST),
                ExchangeError::RateLimited | ExchangeError::TooManyAttempts => {
                    (t.limited, false, StatusCode::TOO_MANY_REQUESTS)
                }
                ExchangeError::Blocked => (t.blocked, true, StatusCode::FORBIDDEN),
                ExchangeError::Unavailable(_) | ExchangeError::Unexpected(_) => {
                    return crate::links::unavailable_page();
                }
                ExchangeError::RealmNotFound
                | ExchangeError::RealmDisabled
                | ExchangeError::GrantNotAllowed
                | ExchangeError::AudienceNotFound(_) => (t.not_allowed, true, StatusCode::BAD_REQUEST),
            };
            if restart {
                let mut page = identifier_page(&ctx, status, Some(error), &ctx.csrf()).await;
                append_cookie(&mut page, &clear_cookie(&state.hosted, LOGIN_COOKIE));
                page
            } else {
                let mut page = code_page(&ctx, &pending, Some(error));
                *page.status_mut() = status;
                page
            }
        }
        Err(ProveError::Authorize(e)) => answer(Err(e)),
    }
}

/// `POST /u/continue`: the link was opened (here or, after a confirmation, elsewhere).
#[utoipa::path(post, path = "/u/continue", tag = "hosted",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "The waiting page's form: the authorization request and `csrf`", example = json!({"client_id": "sesame-dev", "response_type": "code", "redirect_uri": "http://localhost:3000/callback", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256", "csrf": "not-this-browsers-token", "identifier": "jane@example.com", "code": "000000"})),
    responses(
        (status = 200, description = "The next page of the hosted login (or the page shown again, with its error announced)", content_type = "text/html"),
        (status = 302, description = "The authorization response, to the client's callback", headers(("location" = String))),
        (status = 400, description = "A page naming what is wrong (a bad address or code, an expired page), or an error page for a request that cannot go back to the app", content_type = "text/html"),
        (status = 403, description = "The CSRF token or `Origin` does not match (the page is shown again), or the user is blocked", content_type = "text/html"),
        (status = 503, description = "A dependency is unavailable", content_type = "text/html"),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn resume(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (ctx, pending) = match posted_pending(&state, &req, &body).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let t = ctx.texts;
    match state.sesame.take_approval(&ctx.client, &pending).await {
        Ok(Some(user)) if user.blocked => {
            identifier_page(&ctx, StatusCode::FORBIDDEN, Some(t.blocked), &ctx.csrf()).await
        }
        Ok(Some(user)) => {
            // The link's check recorded the login already.
            let result = state.sesame.authorize_user(&ctx.client, &user, &ctx.auth).await;
            signed_in(&state, &user, result)
        }
        Ok(None) => {
            let mut page = code_page(&ctx, &pending, Some(t.not_yet));
            *page.status_mut() = StatusCode::OK;
            page
        }
        Err(e) => answer(Err(e)),
    }
}

/// `GET /u/status`: whether this browser's pending login was approved by its link (the
/// waiting page's script asks; nothing changes).
#[utoipa::path(get, path = "/u/status", tag = "hosted",
    responses(
        (status = 200, description = "`{\"approved\": true}` once this browser's pending login was approved by its magic link", body = Object),
        (status = "4XX", description = "What the HTTP layer refuses by itself, in Auth0's error shape", body = crate::openapi::ErrorBody)))]
pub(crate) async fn status(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let pending = read_cookie(&state.hosted, &req, LOGIN_COOKIE).and_then(|c| state.sesame.open_pending(&c));
    let approved = match pending {
        Some(p) => match state.sesame.ports.clients.find(&sesame_domain::ClientId::new(p.client_id.clone())).await {
            Ok(Some(client)) => state.sesame.is_approved(&client, &p).await.unwrap_or(false),
            _ => false,
        },
        None => false,
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({ "approved": approved }))
}

// --- the magic link of a hosted login -------------------------------------------------------

/// Whether a link belongs to a hosted login (its start stored the login's binding).
pub fn is_hosted_link(map: &HashMap<String, String>) -> bool {
    map.get("sesame_login").is_some_and(|b| !b.is_empty())
}

/// `GET /passwordless/verify_redirect` of a hosted login. In the browser that asked: approve at
/// once and let the waiting page continue. Anywhere else: ask first, naming the browser that
/// asked.
pub async fn open_link(state: &AppState, req: &HttpRequest, map: HashMap<String, String>) -> HttpResponse {
    let (client, auth) = match crate::links::prepare(state, &map).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let texts = texts(req, None);
    let binding = map.get("sesame_login").cloned().unwrap_or_default();
    let here = read_cookie(&state.hosted, req, LOGIN_COOKIE)
        .and_then(|c| state.sesame.open_pending(&c))
        .is_some_and(|p| bool::from(state.sesame.login_binding(&p.login_id).as_bytes().ct_eq(binding.as_bytes())));
    if here {
        return approve(state, req, map, client, auth, texts, true).await;
    }
    let fields: String = map
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(k), escape(v)))
        .collect();
    let from = map.get("sesame_from").map(String::as_str).unwrap_or("a browser");
    let at = map.get("sesame_at").map(String::as_str).unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1><p>{text} <strong id=\"requested-by\">{from}</strong>{at}.</p><form method=\"post\" action=\"/passwordless/verify_redirect\">{fields}<button type=\"submit\" id=\"confirm\">{button}</button></form><p class=\"muted\">{warning}</p>",
        title = escape(texts.confirm_title),
        text = escape(texts.confirm_text),
        from = escape(from),
        at = if at.is_empty() { String::new() } else { format!(", {}", escape(at)) },
        button = escape(texts.confirm_button),
        warning = escape(texts.confirm_warning),
    );
    let frame = Frame {
        texts,
        title: texts.confirm_title,
        brand: brand(&state.hosted, &client),
        form_origin: None,
        script: None,
    };
    render(StatusCode::OK, &frame, &body)
}

/// `POST /passwordless/verify_redirect` of a hosted login: the confirmation on another device.
pub async fn confirm_link(state: &AppState, req: &HttpRequest, map: HashMap<String, String>) -> HttpResponse {
    let (client, auth) = match crate::links::prepare(state, &map).await {
        Ok(ok) => ok,
        Err(page) => return page,
    };
    let texts = texts(req, None);
    approve(state, req, map, client, auth, texts, false).await
}

/// Consumes the link and leaves its approval for the browser that asked.
async fn approve(
    state: &AppState,
    req: &HttpRequest,
    map: HashMap<String, String>,
    client: Client,
    auth: Authorization,
    texts: &'static Texts,
    here: bool,
) -> HttpResponse {
    let completion = LinkCompletion {
        client: client.clone(),
        connection: map.get("connection").cloned().unwrap_or_else(|| "email".into()),
        email: map.get("email").cloned(),
        phone_number: map.get("phone_number").cloned(),
        verification_code: map.get("verification_code").cloned().unwrap_or_default(),
        authorization: auth,
        ip: wire::client_ip(req, &state.trusted_proxies),
    };
    let proven = match state.sesame.prove(completion, "hosted login link").await {
        Ok(p) => p,
        Err(ProveError::Refused(e)) => {
            let text = match e {
                ExchangeError::Blocked => texts.blocked,
                ExchangeError::RateLimited | ExchangeError::TooManyAttempts => texts.limited,
                ExchangeError::Unavailable(_) | ExchangeError::Unexpected(_) => {
                    return crate::links::unavailable_page();
                }
                _ => texts.expired,
            };
            return message_page(state, &client, texts, StatusCode::BAD_REQUEST, texts.page_expired, text);
        }
        Err(ProveError::Authorize(e)) => return answer(Err(e)),
    };
    // The binding the start stored, not the one the link was opened with.
    let binding = proven.stored.get_str("sesame_login").unwrap_or_default();
    if let Err(e) = state.sesame.approve_login(&client, &binding, &proven.user).await {
        return answer(Err(e));
    }
    if !here {
        return message_page(state, &client, texts, StatusCode::OK, texts.approved_title, texts.approved_text);
    }
    // This browser asked: the waiting tab continues by itself; this one may continue too.
    let fields: Vec<(&str, String)> = CARRIED
        .iter()
        .filter_map(|k| {
            let v = if *k == "client_id" { Some(client.id.0.clone()) } else { proven.stored.get_str(k) };
            v.filter(|v| !v.is_empty()).map(|v| (*k, v))
        })
        .collect();
    let csrf = read_cookie(&state.hosted, req, CSRF_COOKIE).unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1><p>{text}</p><form method=\"post\" action=\"/u/continue\">{hidden}<button type=\"submit\" id=\"continue-here\">{button}</button></form>",
        title = escape(texts.signed_in),
        text = escape(texts.signed_in_here),
        hidden = hidden(&fields, &csrf),
        button = escape(texts.continue_here),
    );
    let frame = Frame {
        texts,
        title: texts.signed_in,
        brand: brand(&state.hosted, &client),
        form_origin: csp_source(&proven.authorization.redirect_uri),
        script: None,
    };
    render(StatusCode::OK, &frame, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_names_read_the_user_agent() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            ))
            .to_http_request();
        assert_eq!(browser_name(&req), "Chrome on Linux");
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::USER_AGENT, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"))
            .to_http_request();
        assert_eq!(browser_name(&req), "Safari on iOS");
    }

    #[test]
    fn csp_sources_of_web_and_app_callbacks() {
        assert_eq!(csp_source("https://app.example.com/cb?x=1").as_deref(), Some("https://app.example.com"));
        assert_eq!(csp_source("com.example.app:/oauth2redirect").as_deref(), Some("com.example.app:"));
        assert_eq!(csp_source("com.example.app://callback").as_deref(), Some("com.example.app:"));
        assert_eq!(csp_source("https://a.example;script-src x"), None);
        assert_eq!(csp_source("1bad:/x"), None);
    }

    #[test]
    fn cookies_are_read_by_name() {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::COOKIE, "a=1; sesame_csrf=xyz; b=2"))
            .to_http_request();
        assert_eq!(cookie(&req, CSRF_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&req, "none"), None);
    }
}

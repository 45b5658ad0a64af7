//! `verify_client_assertion`: private_key_jwt client assertions (RFC 7523), against a registered
//! EC P-256 key, with the signature made by the harness so that the claim checks are reached.
//!
//! Input: three lines, `mode`, JOSE header (JSON), claims (JSON); `{{now}}`, `{{now+N}}` and
//! `{{now-N}}` in the claims are the verifier's clock. Modes: `sign` (signed with the registered
//! key), `stranger` (signed with another key), `tamper` (signed, then one character of the
//! payload changed), `raw` (the second line is the whole assertion, as sent).
//!
//! Properties:
//! - only `sign` can pass; `stranger`, `tamper` and `raw` never do;
//! - what passes keeps every rule of the module documentation, checked here by a separate model
//!   of the claims (`iss` = `sub` = client, `aud`, `exp`/`iat`/`nbf` windows, `jti`), with the
//!   header's `alg` ES256 and no `crit`; and its `jti`, `exp`, `remember_until` are the model's;
//! - an assertion the model accepts, under a plain header (`alg` ES256, `typ` JWT, the key's `kid`
//!   or none), passes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use sesame_fuzz::signer::Signer;
use sesame_jwt::assertion::{AssertionRules, ClientPublicKey, verify_client_assertion};

const NOW: i64 = 1_800_000_000;
const CLIENT: &str = "jwt-app";

struct Keys {
    ours: Signer,
    stranger: Signer,
    registered: Vec<ClientPublicKey>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let ours = Signer::generate();
    let registered = vec![ClientPublicKey::parse(ours.jwk()).expect("our key parses")];
    Keys { ours, stranger: Signer::generate(), registered }
});

fn audiences() -> Vec<String> {
    vec![sesame_fuzz::ISSUER.to_owned(), format!("{}oauth/token", sesame_fuzz::ISSUER)]
}

/// `{{now}}`, `{{now+N}}`, `{{now-N}}` replaced by numbers.
fn fill_now(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{now") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 5..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let offset = after[..end].replace(' ', "");
        let delta = match offset.as_bytes().first() {
            None => Some(0),
            Some(b'+') => offset[1..].parse::<i64>().ok(),
            Some(b'-') => offset[1..].parse::<i64>().ok().map(|n| -n),
            _ => None,
        };
        match delta {
            Some(d) => out.push_str(&NOW.saturating_add(d).to_string()),
            None => out.push_str(&rest[i..i + 5 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = sesame_fuzz::text(data) else { return };
    let mut lines = input.splitn(3, '\n');
    let (mode, header, claims) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let claims = fill_now(claims);
    let keys = &*KEYS;
    let assertion = match mode.trim() {
        "sign" => keys.ours.sign(header.as_bytes(), claims.as_bytes()),
        "stranger" => keys.stranger.sign(header.as_bytes(), claims.as_bytes()),
        "tamper" => {
            let signed = keys.ours.sign(header.as_bytes(), claims.as_bytes());
            tamper(&signed, claims.len())
        }
        _ => header.to_owned(),
    };
    let audiences = audiences();
    let rules = AssertionRules::new(CLIENT, &audiences, NOW);
    let result = verify_client_assertion(&assertion, &keys.registered, &rules);
    let model = model_claims(&claims, &rules);
    if sesame_fuzz::debug() {
        eprintln!("{mode}: {result:?}; model {model:?}");
    }
    if let Ok(v) = &result {
        assert_eq!(mode.trim(), "sign", "an assertion not signed by the registered key passed");
        let h: Value = serde_json::from_str(header).expect("a header that passed is JSON");
        assert_eq!(h["alg"], "ES256", "passed with alg {}", h["alg"]);
        assert!(h.get("crit").is_none_or(Value::is_null), "passed with crit");
        let (jti, exp) = model.as_ref().unwrap_or_else(|e| panic!("passed, but the model refuses it: {e}"));
        assert_eq!((&v.jti, v.exp), (jti, *exp));
        assert_eq!(v.remember_until, exp.saturating_add(rules.leeway_secs).saturating_add(1));
        assert_eq!(v.key_id, keys.registered[0].kid());
    }
    if mode.trim() == "sign" && model.is_ok() && plain_header(header, keys.registered[0].kid()) {
        assert!(assertion.len() > rules.max_len || result.is_ok(), "a valid assertion was refused: {result:?}");
    }
});

/// Changes one base64url character of the payload (so the signed bytes change).
fn tamper(signed: &str, salt: usize) -> String {
    let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
    let payload = parts[1].as_bytes().to_vec();
    if payload.is_empty() {
        return format!("{signed}x");
    }
    let i = salt % payload.len();
    let mut p = payload;
    p[i] = if p[i] == b'A' { b'B' } else { b'A' };
    parts[1] = String::from_utf8(p).expect("base64url is ASCII");
    parts.join(".")
}

fn plain_header(header: &str, kid: &str) -> bool {
    let Ok(Value::Object(h)) = serde_json::from_str::<Value>(header) else { return false };
    let keys_ok = h.keys().all(|k| k == "alg" || k == "typ" || k == "kid");
    let dup_free = header.matches("\"alg\"").count() == 1
        && header.matches("\"typ\"").count() <= 1
        && header.matches("\"kid\"").count() <= 1;
    keys_ok
        && dup_free
        && h["alg"] == "ES256"
        && h.get("typ").is_none_or(|t| t == "JWT")
        && h.get("kid").is_none_or(|k| k == kid)
}

/// The claims the module reads; duplicates refused (as the verifier's own struct does).
#[derive(Deserialize)]
struct Claims {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    jti: Option<Value>,
}

fn date(v: &Option<Value>) -> Result<Option<i64>, String> {
    match v {
        None => Ok(None),
        Some(v) => {
            if let Some(n) = v.as_i64() {
                Ok(Some(n))
            } else if v.is_u64() {
                Ok(Some(i64::MAX))
            } else if let Some(f) = v.as_f64().filter(|f| f.is_finite()) {
                Ok(Some(f.floor() as i64))
            } else {
                Err(format!("not a NumericDate: {v}"))
            }
        }
    }
}

fn short_string<'a>(v: &'a Option<Value>, name: &str) -> Result<&'a str, String> {
    let s = v.as_ref().and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(format!("{name} missing"))?;
    if s.chars().count() > 64 {
        return Err(format!("{name} too long"));
    }
    Ok(s)
}

/// The module's claim rules, written again from its documentation.
fn model_claims(claims: &str, rules: &AssertionRules<'_>) -> Result<(String, i64), String> {
    let c: Claims = serde_json::from_str(claims).map_err(|e| format!("claims: {e}"))?;
    if short_string(&c.iss, "iss")? != CLIENT || short_string(&c.sub, "sub")? != CLIENT {
        return Err("iss/sub".into());
    }
    let accepted = |a: &str| rules.audiences.iter().any(|x| x == a);
    let aud_ok = match &c.aud {
        Some(Value::String(a)) => accepted(a),
        Some(Value::Array(items)) => {
            if !items.iter().all(Value::is_string) {
                return Err("aud item".into());
            }
            items.iter().filter_map(Value::as_str).any(accepted)
        }
        _ => false,
    };
    if !aud_ok {
        return Err("aud".into());
    }
    let (now, leeway, max) = (rules.now, rules.leeway_secs, rules.max_lifetime_secs);
    let exp = date(&c.exp)?.ok_or("exp missing")?;
    if (exp as i128) + (leeway as i128) < now as i128 || (exp as i128) - (now as i128) > (max + leeway) as i128 {
        return Err("exp window".into());
    }
    if let Some(iat) = date(&c.iat)? {
        let (iat, now, exp) = (iat as i128, now as i128, exp as i128);
        if iat > now + leeway as i128 || now - iat > (max + leeway) as i128 || exp - iat > max as i128 {
            return Err("iat window".into());
        }
    }
    if let Some(nbf) = date(&c.nbf)? {
        if nbf as i128 > (now + leeway) as i128 {
            return Err("nbf".into());
        }
    }
    Ok((short_string(&c.jti, "jti")?.to_owned(), exp))
}

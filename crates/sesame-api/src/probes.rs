//! Probes for load balancers and orchestrators: `/healthz` (the process answers, no I/O) and
//! `/readyz` (this replica can serve a login now; 503 when it cannot). `/health`, the
//! probe of earlier releases, stays as `/healthz`.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use sesame_flows::health::{Check, Readiness};

use crate::routes::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/health", web::get().to(health));
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers (no I/O)", body = Object)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"status": "ok"}))
}

/// `/healthz` under the name of earlier releases.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "As /healthz", body = Object)))]
pub(crate) async fn health() -> HttpResponse {
    healthz().await
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "This replica can serve a login (`ok` or `degraded`)", body = Object),
        (status = 503, description = "It cannot: the store is down or no signing key is published", body = Object)))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let r = state.sesame.readiness().await;
    for (name, check) in [("store", &r.store), ("limiter", &r.limiter)] {
        if let Check::Down { reason } = check {
            tracing::warn!(dependency = name, reason, "readiness: dependency down");
        }
    }
    let body = body(&r);
    let mut resp = if r.ready() { HttpResponse::Ok() } else { HttpResponse::ServiceUnavailable() };
    resp.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

fn check(c: &Check) -> Value {
    match c {
        Check::Up { ms } => json!({"status": "up", "ms": (ms * 10.0).round() / 10.0}),
        // The reason goes to the log only: it can name hosts and users.
        Check::Down { .. } => json!({"status": "down"}),
    }
}

fn breaker(holding: Option<std::time::Duration>) -> Value {
    match holding {
        None => json!({"status": "closed"}),
        Some(d) => json!({"status": "open", "retry_in_ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX)}),
    }
}

fn body(r: &Readiness) -> Value {
    let status = match (r.ready(), r.degraded()) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    json!({
        "status": status,
        "checks": {
            "store": check(&r.store),
            "limiter": check(&r.limiter),
            "email_provider": breaker(r.email_breaker),
            "sms_provider": breaker(r.sms_breaker),
            "signing_keys": {"status": if r.signing_keys > 0 { "up" } else { "down" }, "published": r.signing_keys},
        },
    })
}

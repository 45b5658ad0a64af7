//! Prometheus metrics at `GET /metrics`: the `metrics` facade, recorded by
//! `metrics-exporter-prometheus`. The recorder is process-wide and installed once, by the first
//! server that wants it; counters only ever go up, so tests compare before and after.
//!
//! HTTP requests are counted here (route pattern, method, status); the use cases count starts,
//! exchanges, deliveries, refusals and dependency errors (`sesame_flows::measures`); what is a
//! state rather than an event (outbox backlog, signing key age) is read when scraped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sesame_flows::Sesame;
use sesame_jwt::keyring::KeyRing;

/// Request latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first call. `None` when another recorder was installed
/// first (an embedder's): then `/metrics` is not served.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("sesame_http_request_duration_seconds".into()), &LATENCY_BUCKETS)
                .map(PrometheusBuilder::install_recorder);
            match installed {
                Ok(Ok(handle)) => {
                    describe();
                    upkeep(handle.clone());
                    Some(handle)
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is off");
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until something drains it; `/metrics` does, but
/// nobody may scrape (metrics on, no Prometheus yet): then a few samples per request would pile
/// up for ever (`cargo xtask soak` saw about 100 bytes per login). A thread drains them.
fn upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; histograms drain only at scrape");
    }
}

/// Whether this process records metrics (so the request middleware need not work for nothing).
pub fn recording() -> bool {
    RECORDER.get().is_some_and(Option::is_some)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("sesame_http_requests_total", "HTTP requests answered, by route pattern, method and status.");
    describe_histogram!(
        "sesame_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route pattern and method."
    );
    describe_counter!("sesame_starts_total", "Starts that stored a challenge and queued its message.");
    describe_counter!("sesame_exchanges_total", "Code and link checks, by outcome and proof (code or link).");
    describe_counter!("sesame_deliveries_total", "Delivery attempts, by channel and outcome.");
    describe_counter!("sesame_rate_limit_refusals_total", "Requests refused by the rate limiter, by rule.");
    describe_counter!(
        "sesame_limiter_failures_total",
        "Checks the shared limiter could not answer, by what was done (open: local floor; closed: refused)."
    );
    describe_counter!("sesame_dependency_errors_total", "Errors from a dependency: store, limiter, email, sms.");
    describe_gauge!("sesame_outbox_pending", "Messages waiting in the outbox (read at scrape).");
    describe_gauge!(
        "sesame_outbox_oldest_pending_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest message waiting in the outbox; 0 when none (read at scrape)."
    );
    describe_gauge!(
        "sesame_signing_key_age_seconds",
        metrics::Unit::Seconds,
        "Age of the active signing key (read at scrape)."
    );
}

/// Counts one answered request. `route` is the matched pattern (`None`: no route matched), so
/// no path parameter, identifier or query string becomes a label.
pub fn request(route: Option<String>, method: &actix_web::http::Method, status: u16, took: Duration) {
    use actix_web::http::Method;
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    counter!("sesame_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!("sesame_http_request_duration_seconds", "route" => route, "method" => method).record(took.as_secs_f64());
}

/// What a scrape reads.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub handle: &'static PrometheusHandle,
    pub sesame: Sesame,
    pub keys: Arc<KeyRing>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format (on `listen` unless `metrics_listen` is set)", content_type = "text/plain")))]
pub(crate) async fn scrape(scrape: web::Data<Scrape>) -> HttpResponse {
    let now = scrape.sesame.ports.clock.now();
    match scrape.sesame.ports.outbox.backlog().await {
        Ok(b) => {
            gauge!("sesame_outbox_pending").set(b.pending as f64);
            let age = b.oldest.map_or(0.0, |t| (now - t).as_seconds_f64().max(0.0));
            gauge!("sesame_outbox_oldest_pending_seconds").set(age);
        }
        Err(e) => {
            counter!("sesame_dependency_errors_total", "adapter" => "store").increment(1);
            tracing::warn!(error = %e, "metrics: outbox backlog unreadable");
        }
    }
    match scrape.keys.list().await {
        Ok(keys) => {
            if let Some(active) = keys.iter().find(|k| k.state == "active") {
                gauge!("sesame_signing_key_age_seconds").set((now - active.created_at).as_seconds_f64().max(0.0));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: signing keys unreadable"),
    }
    scrape.handle.run_upkeep();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(scrape.handle.render())
}

//! `GET /metrics`: the Prometheus text exposition of the app's registry.

use actix_web::{web, HttpResponse};

use super::AppState;

/// Registers the metrics route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

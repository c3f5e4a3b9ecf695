//! `GET /healthz` (the process is alive) and `GET /readyz` (accepting work; 503 while
//! draining so load balancers stop sending traffic before the streams close, and in
//! cluster mode while NATS is unreachable, when publishes are refused).

use actix_web::{web, HttpResponse};

use super::{ApiError, AppState};

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "the server is shutting down",
        ));
    }
    if !state.restored.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::unavailable(
            "restoring",
            "the node is restoring what its data directory keeps",
        ));
    }
    if state.backbone.as_ref().is_some_and(|b| !b.ready()) {
        return Err(ApiError::unavailable(
            "backbone_unavailable",
            "the cluster's NATS server is unreachable, or this node is not reading its stream yet",
        ));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

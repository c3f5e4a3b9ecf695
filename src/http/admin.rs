//! `GET /v1/Admin/Topology` (docs/api.md §8): the live shards and proxies, for operators.
//! Basic credentials `admin:<admin_token>`; with no `admin_token` configured the
//! admin endpoints are off and say so (403 `admin_disabled`), since no credentials
//! could pass.

use std::time::Duration;

use actix_web::http::header::{self, CacheDirective};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, AppState};

/// How long each shard and proxy has to say what it holds.
const DESCRIBE_DEADLINE: Duration = Duration::from_secs(1);

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/Admin/Topology", web::get().to(topology));
}

async fn topology(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.config.admin_token.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints are off: set admin_token in the configuration",
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::auth::admin(&state.config.admin_token, authorization)
        .map_err(|error| state.auth_failed(error))?;
    let view = state.topology.describe(DESCRIBE_DEADLINE).await;
    Ok(HttpResponse::Ok()
        .insert_header(header::CacheControl(vec![CacheDirective::NoStore]))
        .json(view))
}

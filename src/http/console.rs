//! `/console`: the web console (docs/api.md §9): the account's calls, live, with
//! buttons that drive the simulated network (§7). A page of plain HTML, CSS and
//! JavaScript compiled into the binary, so a server with no files beside it still
//! serves it; see `src/http/console/` for the page itself.
//!
//! The page holds the account's token only in a JavaScript variable and sends it
//! only as Basic auth to this origin; everything it watches or steers goes through
//! short-lived signed URLs it asks the server for. The headers here are what keep
//! it that way in a browser:
//!
//! - a strict `Content-Security-Policy`: scripts, styles and connections from this
//!   origin only, no inline script or style, no plugins, no `<base>`, no form
//!   submissions (a form posted by a broken script cannot put the token in a URL),
//!   and no framing (no clickjacking of the hang-up button);
//! - `X-Content-Type-Options: nosniff`, so each file is only ever what its
//!   `Content-Type` says;
//! - `Referrer-Policy: no-referrer`, so no request the page makes names the page.
//!
//! Caching: the files change only with the binary, but their names do not, so each
//! response carries a strong `ETag` (a hash of the file, computed at compile time)
//! and `Cache-Control: no-cache`: a browser may keep a copy but asks every time,
//! and an unchanged file costs a `304` with no body.

use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::{guard, web, HttpMessage, HttpRequest, HttpResponse};

/// The policy described in the module documentation.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// One file of the page, embedded in the binary.
struct Asset {
    /// The `Content-Type` it is served with.
    content_type: &'static str,
    /// The file itself.
    body: &'static str,
    /// Its strong validator: a hash of `body`, computed at compile time (a cache
    /// validator only needs to change when the file does).
    etag: u64,
}

impl Asset {
    const fn new(content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            content_type,
            body,
            etag: crate::hash::fnv1a_64(body.as_bytes()),
        }
    }
}

/// The page, served at `/console` and `/console/`. It names the other two by
/// absolute path, so both of its addresses find them.
static INDEX: Asset = Asset::new(
    "text/html; charset=utf-8",
    include_str!("console/index.html"),
);

/// The script.
static APP_JS: Asset = Asset::new(
    "text/javascript; charset=utf-8",
    include_str!("console/app.js"),
);

/// The style sheet.
static APP_CSS: Asset = Asset::new("text/css; charset=utf-8", include_str!("console/app.css"));

/// Every file, by path.
static ASSETS: [(&str, &Asset); 4] = [
    ("/console", &INDEX),
    ("/console/", &INDEX),
    ("/console/app.js", &APP_JS),
    ("/console/app.css", &APP_CSS),
];

/// Registers the console's routes (`GET` and `HEAD`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, asset) in &ASSETS {
        let asset: &'static Asset = asset;
        cfg.route(
            path,
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(move |req: HttpRequest| async move { serve(&req, asset) }),
        );
    }
}

/// The file, or `304 Not Modified` when the request already holds this version.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let tag = EntityTag::new_strong(format!("{:016x}", asset.etag));
    let unchanged = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        // If-None-Match compares weakly (RFC 9110 §13.1.2).
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&tag)),
        None => false,
    };
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(header::ETag(tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if unchanged {
        response.finish()
    } else {
        response
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    fn asset(path: &str) -> &'static Asset {
        ASSETS
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no asset at {path}"))
    }

    fn header(response: &HttpResponse, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[test]
    fn every_file_is_served_with_its_type_and_the_security_headers() {
        let types = [
            ("/console", "text/html; charset=utf-8"),
            ("/console/", "text/html; charset=utf-8"),
            ("/console/app.js", "text/javascript; charset=utf-8"),
            ("/console/app.css", "text/css; charset=utf-8"),
        ];
        assert_eq!(ASSETS.len(), types.len());
        for (path, content_type) in types {
            let asset = asset(path);
            let response = serve(&TestRequest::get().uri(path).to_http_request(), asset);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(
                header(&response, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(header(&response, header::REFERRER_POLICY), "no-referrer");
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
            let body = response.into_body().try_into_bytes().expect("a whole body");
            assert_eq!(body, asset.body.as_bytes(), "{path}");
        }
    }

    #[test]
    fn the_page_names_its_files_by_the_paths_they_are_served_at() {
        for path in ["/console/app.js", "/console/app.css"] {
            assert!(
                INDEX.body.contains(&format!("\"{path}\"")),
                "index.html must load {path} by that absolute path"
            );
            asset(path);
        }
    }

    #[test]
    fn an_unchanged_file_is_a_304_with_no_body() {
        let asset = &APP_JS;
        let tag = format!("\"{:016x}\"", asset.etag);
        for if_none_match in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"x\", {tag}"),
            "*".into(),
        ] {
            let req = TestRequest::get()
                .insert_header((header::IF_NONE_MATCH, if_none_match.as_str()))
                .to_http_request();
            let response = serve(&req, asset);
            assert_eq!(
                response.status(),
                StatusCode::NOT_MODIFIED,
                "{if_none_match}"
            );
            assert_eq!(header(&response, header::ETAG), tag);
            assert!(response
                .into_body()
                .try_into_bytes()
                .expect("no body")
                .is_empty());
        }
        let req = TestRequest::get()
            .insert_header((header::IF_NONE_MATCH, "\"0000000000000000\""))
            .to_http_request();
        assert_eq!(serve(&req, asset).status(), StatusCode::OK);
    }

    #[actix_rt::test]
    async fn the_routes_answer_get_and_head_only() {
        use actix_web::test::{call_service, init_service};
        let app = init_service(actix_web::App::new().configure(configure)).await;
        for (path, _) in &ASSETS {
            let response = call_service(&app, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            let response = call_service(
                &app,
                TestRequest::default()
                    .method(actix_web::http::Method::HEAD)
                    .uri(path)
                    .to_request(),
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK, "HEAD {path}");
            let response = call_service(&app, TestRequest::post().uri(path).to_request()).await;
            assert!(response.status().is_client_error(), "POST {path}");
        }
    }

    #[test]
    fn the_validator_changes_with_the_file() {
        assert_eq!(INDEX.etag, crate::hash::fnv1a_64(INDEX.body.as_bytes()));
        assert_ne!(INDEX.etag, APP_JS.etag);
        assert_ne!(APP_JS.etag, APP_CSS.etag);
    }
}

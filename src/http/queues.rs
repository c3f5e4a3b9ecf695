//! The Queues resource of the Twilio-compatible REST API (docs/api.md §7):
//! `…/Queues.json` (create with `FriendlyName` and `MaxSize`, list),
//! `…/Queues/{QueueSid}.json` (fetch, with `current_size` and `average_wait_time`;
//! update; delete when nobody waits), and its Members (list, fetch, and dequeue
//! `Front` or a `CallSid` to a `Url`), shaped as Twilio's so its helper libraries
//! work against it.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};

use super::twilio::{
    authenticate, form, list, method, non_empty, read, resource_sid, router, Reply, TwilioError,
};
use super::AppState;
use crate::account::AccountIdx;
use crate::callrouter::queueing::MemberView;
use crate::callrouter::queues::{Take, DEFAULT_MAX_SIZE, MAX_MAX_SIZE};
use crate::callrouter::{CallRouter, RouterError};
use crate::twiml::MAX_QUEUE_NAME_CHARS;

/// Registers the routes under `base` (`/2010-04-01/Accounts/{account_sid}`).
pub fn configure(cfg: &mut web::ServiceConfig, base: &str) {
    cfg.route(&format!("{base}/Queues.json"), web::get().to(list_queues))
        .route(&format!("{base}/Queues.json"), web::post().to(create_queue))
        .route(&format!("{base}/Queues/{{sid}}"), web::get().to(read_queue))
        .route(
            &format!("{base}/Queues/{{sid}}"),
            web::post().to(update_queue),
        )
        .route(
            &format!("{base}/Queues/{{sid}}"),
            web::delete().to(delete_queue),
        )
        .route(
            &format!("{base}/Queues/{{sid}}/Members.json"),
            web::get().to(list_members),
        )
        .route(
            &format!("{base}/Queues/{{sid}}/Members/{{member}}"),
            web::get().to(read_member),
        )
        .route(
            &format!("{base}/Queues/{{sid}}/Members/{{member}}"),
            web::post().to(dequeue_member),
        );
}

/// `FriendlyName`, if given: 1 to 64 characters, as Twilio checks it.
fn friendly_name(params: &HashMap<String, String>) -> Result<Option<String>, TwilioError> {
    let Some(name) = non_empty(params, "FriendlyName") else {
        return Ok(None);
    };
    if name.chars().count() > MAX_QUEUE_NAME_CHARS {
        return Err(TwilioError::new(
            20001,
            400,
            format!("FriendlyName is longer than {MAX_QUEUE_NAME_CHARS} characters"),
        ));
    }
    Ok(Some(name))
}

/// `MaxSize`, if given: 1 to 5000, as Twilio checks it.
fn max_size(params: &HashMap<String, String>) -> Result<Option<u32>, TwilioError> {
    let Some(text) = non_empty(params, "MaxSize") else {
        return Ok(None);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_MAX_SIZE).contains(n))
        .map(Some)
        .ok_or_else(|| {
            TwilioError::new(
                20001,
                400,
                format!("MaxSize must be a whole number from 1 to {MAX_MAX_SIZE}"),
            )
        })
}

/// `FriendlyName` (required) and `MaxSize` (default 1000).
async fn create_queue(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let account = authenticate(&req, &state, &path)?;
    let params = form(payload).await?;
    let name =
        friendly_name(&params)?.ok_or_else(|| TwilioError::missing(20001, "FriendlyName"))?;
    let max_size = max_size(&params)?.unwrap_or(DEFAULT_MAX_SIZE);
    let queue = router(&state).create_queue(account, &name, max_size)?;
    Ok(HttpResponse::Created().json(queue.json(&path)))
}

/// Renames the queue (`FriendlyName`) or changes its `MaxSize`: a size below the
/// callers it holds refuses new ones until enough have left, as Twilio's.
async fn update_queue(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, segment) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    let queue = resource_sid(&segment)?;
    let params = form(payload).await?;
    let (name, max_size) = (friendly_name(&params)?, max_size(&params)?);
    let queue = router(&state).update_queue(account, queue, name.as_deref(), max_size)?;
    Ok(HttpResponse::Ok().json(queue.json(&sid)))
}

/// Deletes a queue nobody waits in: `204`; callers or agents waiting: `400`.
async fn delete_queue(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, segment) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    router(&state).delete_queue(account, resource_sid(&segment)?)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_queues(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Reply {
    list(&req, &state, &path, "queues", |router, account, sid| {
        router.queues(account).iter().map(|q| q.json(sid)).collect()
    })
}

async fn read_queue(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    read(
        &req,
        &state,
        path.into_inner(),
        |router, account, sid, queue| router.queue(account, queue).map(|q| q.json(sid)),
    )
}

async fn list_members(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, queue) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    let members = router(&state)
        .queue_members(account, &queue)
        .ok_or_else(|| RouterError::not_found(&queue))?;
    let items = members.iter().map(|m| m.json(&sid)).collect();
    super::twilio::page(&req, "queue_members", items)
}

/// `{CallSid}.json` or `Front.json`.
fn which(segment: &str) -> Result<Take, TwilioError> {
    Ok(match resource_sid(segment)? {
        "Front" => Take::Front,
        call => Take::Call(call.to_owned()),
    })
}

/// The member `which` names in the account's queue `queue`.
fn member(
    router: &CallRouter,
    account: AccountIdx,
    queue: &str,
    which: &Take,
) -> Result<MemberView, TwilioError> {
    let members = router
        .queue_members(account, queue)
        .ok_or_else(|| RouterError::not_found(queue))?;
    let found = match which {
        Take::Front => members.into_iter().next(),
        Take::Call(call) => members.into_iter().find(|m| &m.call_sid == call),
    };
    found.ok_or_else(|| RouterError::not_found("queue member").into())
}

async fn read_member(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, queue, segment) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    let member = member(router(&state), account, &queue, &which(&segment)?)?;
    Ok(HttpResponse::Ok().json(member.json(&sid)))
}

/// Dequeues the member: it leaves the queue and runs `Url` (required; `Method`
/// GET or POST).
async fn dequeue_member(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Reply {
    let (sid, queue, segment) = path.into_inner();
    let account = authenticate(&req, &state, &sid)?;
    let which = which(&segment)?;
    let params = form(payload).await?;
    let url = non_empty(&params, "Url").ok_or_else(|| TwilioError::missing(21205, "Url"))?;
    let method = method(&params, "Method")?;
    let router = router(&state);
    router.app().check("Url", &url)?;
    let member = router.dequeue_member(account, &queue, &which, url, method)?;
    Ok(HttpResponse::Ok().json(member.json(&sid)))
}

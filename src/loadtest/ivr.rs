//! The IVR application the calls scenario points its number at, served by the tool
//! itself on 127.0.0.1: a `<Gather>` with a `<Say>`, then on its action a `<Say>` and
//! `<Hangup/>`. It records when each call first asked for its document (the call
//! was answered) and which digits it gathered, on the shared [`Board`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Largest request the IVR reads (the router's are a few hundred bytes).
const MAX_REQUEST: usize = 64 * 1024;
/// How long an application connection may sit idle before the IVR closes it.
const IDLE: Duration = Duration::from_secs(60);

/// What is known about one call, from the IVR and from the event stream.
#[derive(Debug, Default)]
pub struct CallState {
    /// When the router first fetched the call's document.
    pub answered: Option<Instant>,
    /// The digits the `<Gather>` action received.
    pub gathered: Option<String>,
    /// The `status` of its `call.end` event.
    pub ended: Option<String>,
    /// Woken at each change.
    pub notify: Arc<Notify>,
}

/// Calls in progress by sid, shared by the IVR, the event reader and the callers.
#[derive(Default)]
pub struct Board {
    calls: Mutex<HashMap<String, CallState>>,
}

impl Board {
    /// Applies `change` to the call's state (created if new) and wakes its caller.
    pub fn update(&self, sid: &str, change: impl FnOnce(&mut CallState)) {
        let mut calls = self.calls.lock();
        let state = calls.entry(sid.to_owned()).or_default();
        change(state);
        state.notify.notify_one();
    }

    /// Reads the call's state (created if new) and its waker.
    pub fn read<T>(&self, sid: &str, read: impl FnOnce(&CallState) -> T) -> (T, Arc<Notify>) {
        let mut calls = self.calls.lock();
        let state = calls.entry(sid.to_owned()).or_default();
        (read(state), state.notify.clone())
    }

    /// Forgets a finished call, so the board stays as small as the calls in flight.
    pub fn forget(&self, sid: &str) {
        self.calls.lock().remove(sid);
    }

    /// Waits until `done` holds for the call or `within` passes; whether it held.
    pub async fn wait(
        &self,
        sid: &str,
        within: Duration,
        done: impl Fn(&CallState) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (ready, notify) = self.read(sid, &done);
            if ready {
                return true;
            }
            if tokio::time::timeout_at(deadline, notify.notified())
                .await
                .is_err()
            {
                return self.read(sid, &done).0;
            }
        }
    }
}

/// The running IVR; stops when dropped.
pub struct Ivr {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Ivr {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ivr {
    /// Listens on 127.0.0.1:0 and serves documents gathering `digits.len()` keys.
    pub async fn start(board: Arc<Board>, digits: usize) -> std::io::Result<Ivr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let board = board.clone();
                connections.spawn(serve(stream, board, addr, digits));
                // Reap finished connections so the set stays bounded.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Ivr { addr, task })
    }

    /// The voice URL to give the number.
    pub fn voice_url(&self) -> String {
        format!("http://{}/voice", self.addr)
    }
}

/// Serves one keep-alive connection from the router until it closes, goes idle or
/// sends something this IVR does not read.
async fn serve(mut stream: TcpStream, board: Arc<Board>, addr: SocketAddr, digits: usize) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let (path, body) = loop {
            match parse_request(&buf) {
                Ok(Some((path, body, used))) => {
                    buf.drain(..used);
                    break (path, body);
                }
                Ok(None) if buf.len() < MAX_REQUEST => {}
                _ => return,
            }
            match tokio::time::timeout(IDLE, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let params: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let sid = params.get("CallSid").cloned().unwrap_or_default();
        let document = if path.starts_with("/gathered") {
            let got = params.get("Digits").cloned().unwrap_or_default();
            board.update(&sid, |s| s.gathered = Some(got));
            "<Response><Say>Thank you</Say><Hangup/></Response>".to_owned()
        } else {
            board.update(&sid, |s| {
                s.answered.get_or_insert_with(Instant::now);
            });
            format!(
                "<Response><Gather numDigits=\"{digits}\" timeout=\"10\" action=\"http://{addr}/gathered\" method=\"POST\"><Say>Please enter your code</Say></Gather><Say>Nothing entered</Say><Hangup/></Response>"
            )
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{document}",
            document.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A complete request at the start of `buf`: its path, its body and its length.
fn parse_request(buf: &[u8]) -> Result<Option<(String, Vec<u8>, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(())
        })
        .transpose()?
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return Err(());
    }
    if buf.len() < head + length {
        return Ok(None);
    }
    let path = request.path.unwrap_or("/").to_owned();
    Ok(Some((
        path,
        buf[head..head + length].to_vec(),
        head + length,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_whole_or_wait() {
        let raw = b"POST /voice HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nCallSid=CGET /";
        let (path, body, used) = parse_request(raw).unwrap().unwrap();
        assert_eq!(path, "/voice");
        assert_eq!(body, b"CallSid=C");
        assert_eq!(&raw[used..], b"GET /");
        assert_eq!(parse_request(&raw[..40]).unwrap(), None);
        assert!(parse_request(b"\x00\x01 nonsense\r\n\r\n").is_err());
    }
}

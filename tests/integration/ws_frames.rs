//! Issue #8 point 12, replayed with raw frames: fragmented WebSocket messages
//! were dropped silently. docs/api.md §6: they are reassembled, and a message over
//! 64 KiB, fragmented or not, closes the socket with 1009.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{TestServer, WAIT};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer, client: &str) -> Socket {
    let url = format!(
        "ws://{}{}?client={client}&types=nothing.here",
        server.addr,
        server.stream_path(0)
    );
    let mut req = url.into_client_request().expect("ws request");
    let (sid, token) = (server.sid(0), server.token(0));
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{sid}:{token}"),
    );
    req.headers_mut()
        .insert("Authorization", format!("Basic {basic}").parse().unwrap());
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .expect("handshake");
    socket
}

/// One raw frame: `first` says text opcode (else continuation), `fin` ends it.
fn fragment(bytes: &[u8], first: bool, fin: bool) -> Message {
    let opcode = if first {
        OpCode::Data(Data::Text)
    } else {
        OpCode::Data(Data::Continue)
    };
    Message::Frame(Frame::message(bytes.to_vec(), opcode, fin))
}

async fn send(socket: &mut Socket, message: Message) {
    tokio::time::timeout(WAIT, socket.send(message))
        .await
        .expect("send in time")
        .expect("send");
}

/// Reads until the server's close frame and returns its code.
async fn close_code(socket: &mut Socket) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("no close frame within {WAIT:?}"),
            Ok(Some(Ok(Message::Close(Some(frame))))) => return u16::from(frame.code),
            Ok(Some(Ok(Message::Close(None)))) => panic!("a close frame without a code"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => panic!("transport error before the close frame: {err}"),
            Ok(None) => panic!("closed without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_fragmented_client_event_is_reassembled_and_published() {
    let server = TestServer::start(|_| {});
    let (mut sse, _) = server.stream_basic(0, "types=client.*").await;
    let mut socket = connect(&server, "frag1").await;
    let text = json!({"type": "client.note", "data": {"n": "fragmented"}}).to_string();
    let (a, rest) = text.as_bytes().split_at(7);
    let (b, c) = rest.split_at(9);
    send(&mut socket, fragment(a, true, false)).await;
    // A ping between fragments is allowed and answered.
    send(&mut socket, Message::Ping(b"hi".to_vec())).await;
    send(&mut socket, fragment(b, false, false)).await;
    send(&mut socket, fragment(c, false, true)).await;
    let got = sse.until_marker("fragmented", WAIT).await;
    let event = got.last().expect("the client event");
    assert_eq!(event.ty(), "client.note");
    assert_eq!(event.data["data"]["client"], json!("frag1"));
}

#[tokio::test]
async fn a_message_over_64_kib_closes_with_1009_fragmented_or_not() {
    let server = TestServer::start(|_| {});
    // 70 KiB in five fragments of 14 KiB.
    let mut socket = connect(&server, "frag2").await;
    let piece = vec![b'a'; 14 * 1024];
    for i in 0..5 {
        send(&mut socket, fragment(&piece, i == 0, i == 4)).await;
    }
    assert_eq!(close_code(&mut socket).await, 1009);

    // One unfragmented frame of 70 KiB.
    let mut socket = connect(&server, "frag3").await;
    send(&mut socket, Message::Text("a".repeat(70 * 1024))).await;
    assert_eq!(close_code(&mut socket).await, 1009);
    crate::common::channels::eventually_metrics(&server, "two closes for size", |s| {
        s.value(
            "switchboard_ws_closed_total",
            &[("reason", "message_too_large")],
        ) == 2.0
    })
    .await;

    // The server is still serving WebSockets after both.
    let mut socket = connect(&server, "frag4").await;
    let open = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("stream.open in time");
    assert!(matches!(open, Some(Ok(Message::Text(t))) if t.contains("stream.open")));
}

/// A header announcing a 1 GiB frame, followed by a few bytes of it: the server
/// must close with 1009 at once, not buffer until the gigabyte has arrived.
#[tokio::test]
async fn a_frame_announcing_a_gigabyte_is_closed_at_its_header() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(|_| {});
    let mut socket = connect(&server, "frag5").await;
    let mut raw = vec![0x81, 0x80 | 127];
    raw.extend_from_slice(&(1u64 << 30).to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]); // the mask
    raw.extend_from_slice(&[b'a' ^ 1; 1024]);
    match socket.get_mut() {
        MaybeTlsStream::Plain(tcp) => {
            tokio::time::timeout(WAIT, tcp.write_all(&raw))
                .await
                .expect("write in time")
                .expect("write");
        }
        _ => unreachable!("ws:// is plain TCP"),
    }
    assert_eq!(close_code(&mut socket).await, 1009);
}

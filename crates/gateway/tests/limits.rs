//! The gateway's bounds on what a client sends: every route that reads a
//! body refuses one over its limit with a `413` of ours, actix's extractors
//! answer in the same JSON, and a client trickling its body in is cut off
//! after `SLIPWAY_REQUEST_TIMEOUT` while other requests are answered.
//! Nothing here reaches the orchestrator, so it is pointed at a dead port.

use std::time::Duration;

use gateway::{Gateway, Settings};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const TOKEN: &str = "limits-token";

/// A gateway alone, with small limits; stops when the sender drops.
async fn gateway(request_timeout: &str) -> (String, oneshot::Sender<()>) {
    let gateway = Gateway::build(Settings {
        http_addr: "127.0.0.1:0".parse().expect("address"),
        orchestrator_url: "http://127.0.0.1:9".to_owned(),
        api_token: TOKEN.to_owned(),
        github_secret: "github-secret".to_owned(),
        webhook_max_bytes: 2048,
        api_max_bytes: 1024,
        request_timeout: request_timeout.to_owned(),
        log: "warn".to_owned(),
        // No spool: these gateways never reach an orchestrator.
        webhook_spool_bytes: "0".to_owned(),
        ..Settings::default()
    })
    .expect("gateway starts");
    let addr = gateway.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(gateway.run(async move {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = request.send().await.expect("the gateway answers");
    let status = resp.status();
    let text = resp.text().await.expect("a body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_a_body_refuses_one_over_its_limit() {
    let (http, _stop) = gateway("30s").await;
    let client = reqwest::Client::new();
    let big = "x".repeat(1500);
    let api = [
        ("POST", "/api/workflows"),
        ("PUT", "/api/workflows/1"),
        ("POST", "/api/workflows/1/run"),
        ("PUT", "/api/workflows/1/secrets/TOKEN"),
        ("POST", "/api/workflows/1/environments/prod/rollback"),
        ("POST", "/api/tasks/1/deploy"),
    ];
    for (method, path) in api {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = send(
            client
                .request(method, format!("{http}{path}"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(format!("{{\"value\": \"{big}\"}}")),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert_eq!(body["error"], "body larger than 1024 bytes", "{path}");
    }

    // Without a length up front: chunked, refused once past the limit.
    let addr = http.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let mut request = format!(
        "POST /api/workflows HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..4 {
        request += &format!("200\r\n{}\r\n", "x".repeat(512));
    }
    request += "0\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = vec![0; 1024];
    let n = stream.read(&mut answer).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The dashboard's forms, read by actix's extractor: the same answer.
    for path in ["/login", "/logout", "/tasks/1/retry", "/tasks/1/deploy"] {
        let (status, body) = send(
            client
                .post(format!("{http}{path}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={big}")),
        )
        .await;
        // The session comes first on the pages behind the login.
        let expected = if path == "/login" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = send(
        client
            .post(format!("{http}/login"))
            .header("content-type", "text/plain")
            .body("token=x"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid form")),
        "{body}"
    );

    let (status, body) = send(
        client
            .post(format!("{http}/api/webhooks/github"))
            .header("x-github-event", "push")
            .header("x-github-delivery", "big")
            .body("y".repeat(4096)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "body larger than 2048 bytes");
}

/// Starts a request that announces `length` bytes of body and sends one
/// byte every 100 ms until the gateway answers or hangs up; returns what it
/// answered.
async fn trickle(addr: &str, head: &str, length: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = format!(
        "{head}\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..length {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    // Deadline of the whole exchange, well past the gateway's own.
    let read_all = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer));
    let _ = read_all.await.expect("the gateway ends the exchange");
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_is_cut_off_and_others_are_served() {
    let (http, _stop) = gateway("2s").await;
    let addr = http.trim_start_matches("http://").to_owned();
    // More slow clients than the gateway has workers.
    let mut slow = Vec::new();
    for i in 0..6 {
        let addr = addr.clone();
        let head = match i % 3 {
            0 => "POST /api/workflows HTTP/1.1",
            1 => "PUT /api/workflows/1/secrets/TOKEN HTTP/1.1",
            _ => "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        };
        slow.push(tokio::spawn(async move { trickle(&addr, head, 900).await }));
    }
    // Meanwhile every other request is answered at once.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    for _ in 0..10 {
        let resp = client
            .get(format!("{http}/healthz"))
            .send()
            .await
            .expect("healthz answers while slow clients are connected");
        assert_eq!(resp.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for answer in slow {
        let answer = answer.await.expect("the slow client ran");
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a slow body is cut off with a 408: {answer}"
        );
        assert!(
            answer.contains("the request body did not arrive in time"),
            "{answer}"
        );
    }
}

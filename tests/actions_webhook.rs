//! Webhooks against real HTTP receivers on 127.0.0.1: the payloads each format sends, retries
//! on 5xx and 429 but not on other refusals, timeouts that hold up nothing else, and a full
//! queue that drops notices instead of making anyone wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use logjail::action::{
    ActionCounts, ActionOutcome, Notice, Notifier, NotifierHandle, NotifierOptions, NotifyKind,
};
use logjail::config::action::{NotifyConfig, NotifyEvent, NotifyOn, WebhookConfig, WebhookFormat};
use logjail::duration::BanTime;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Read the request, then never answer.
    Hang,
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// A tiny HTTP/1 server that answers with `script` in order, then with `then`, and reports
/// every request it reads.
struct Receiver {
    address: SocketAddr,
    requests: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start(script: Vec<Reply>, then: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (sender, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let sender = sender.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let sender = sender.clone();
                        let script = script.clone();
                        async move {
                            let path = request.uri().path().to_string();
                            let headers = request.headers().clone();
                            let bytes = request.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let _ = sender.send(Received {
                                path,
                                headers,
                                body,
                            });
                            let reply = script.lock().unwrap().pop_front().unwrap_or(then);
                            match reply {
                                Reply::Status(code) => {
                                    let mut response =
                                        Response::new(Full::new(Bytes::from("receiver says no")));
                                    *response.status_mut() = StatusCode::from_u16(code).unwrap();
                                    Ok::<_, Infallible>(response)
                                }
                                Reply::Hang => std::future::pending().await,
                            }
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { address, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.requests.recv())
            .await
            .expect("no request within 10 s")
            .expect("receiver stopped")
    }
}

fn hook(url: String, format: WebhookFormat) -> NotifyConfig {
    let mut config = WebhookConfig::new(url, format);
    config.timeout = Duration::from_secs(5);
    NotifyConfig::Webhook(config)
}

fn notice(event: NotifyEvent, actions: Vec<NotifyConfig>) -> Notice {
    Notice {
        event,
        jail: "sshd".to_string(),
        host: "203.0.113.7".parse().unwrap(),
        failures: 5,
        bantime: BanTime::Finite(Duration::from_secs(600)),
        ban_count: 1,
        matches: vec![
            "Failed password for root from 203.0.113.7 port 22 ssh2".to_string(),
            "Failed password for @everyone <https://evil.example|click> from 203.0.113.7"
                .to_string(),
        ],
        origin: Some("file /var/log/auth.log".to_string()),
        time: Utc.with_ymd_and_hms(2026, 11, 26, 7, 0, 1).unwrap(),
        dry_run: false,
        actions: Arc::from(actions),
    }
}

/// Short waits between tries, so that retries take milliseconds.
fn quick() -> NotifierOptions {
    NotifierOptions {
        backoff: Duration::from_millis(20),
        ..NotifierOptions::default()
    }
}

async fn next_outcome(outcomes: &mut broadcast::Receiver<ActionOutcome>) -> ActionOutcome {
    tokio::time::timeout(Duration::from_secs(20), outcomes.recv())
        .await
        .expect("no outcome within 20 s")
        .unwrap()
}

fn webhook_counts(handle: &NotifierHandle) -> ActionCounts {
    handle
        .counts()
        .into_iter()
        .find(|c| c.kind == NotifyKind::Webhook)
        .unwrap()
}

#[tokio::test]
async fn each_format_posts_its_own_json() {
    let mut receiver = Receiver::start(Vec::new(), Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();
    let mut generic = WebhookConfig::new(receiver.url("/generic"), WebhookFormat::Generic);
    generic.headers = vec![("Authorization".to_string(), "Bearer t0ken".to_string())];
    handle.notify(notice(
        NotifyEvent::Ban,
        vec![
            NotifyConfig::Webhook(generic),
            hook(receiver.url("/slack"), WebhookFormat::Slack),
            hook(receiver.url("/discord"), WebhookFormat::Discord),
        ],
    ));

    let mut bodies = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let request = receiver.next().await;
        assert_eq!(request.headers["content-type"], "application/json");
        assert!(
            request.headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("logjail/")
        );
        if request.path == "/generic" {
            assert_eq!(request.headers["authorization"], "Bearer t0ken");
        } else {
            assert!(!request.headers.contains_key("authorization"));
        }
        bodies.insert(request.path, request.body);
    }
    assert_eq!(
        bodies["/generic"],
        json!({
            "event": "ban",
            "jail": "sshd",
            "ip": "203.0.113.7",
            "failures": 5,
            "bantime_seconds": 600,
            "ban_count": 1,
            "origin": "file /var/log/auth.log",
            "time": "2026-11-26T07:00:01Z",
            "dry_run": false,
            "matches": [
                "Failed password for root from 203.0.113.7 port 22 ssh2",
                "Failed password for @everyone <https://evil.example|click> from 203.0.113.7",
            ],
        })
    );
    let sentence = "logjail: banned 203.0.113.7 in jail `sshd` for 10m after 5 failures.";
    assert_eq!(bodies["/slack"], json!({ "text": sentence }));
    assert_eq!(
        bodies["/discord"],
        json!({ "content": sentence, "allowed_mentions": { "parse": [] } })
    );

    for _ in 0..3 {
        let outcome = next_outcome(&mut outcomes).await;
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(outcome.tries, 1);
        assert_eq!(outcome.kind, NotifyKind::Webhook);
        assert_eq!(outcome.target, format!("http://{}", receiver.address));
    }
    assert_eq!(
        webhook_counts(&handle),
        ActionCounts {
            kind: NotifyKind::Webhook,
            sent: 3,
            failed: 0,
            dropped: 0
        }
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn unbans_go_only_where_on_says() {
    let mut receiver = Receiver::start(Vec::new(), Reply::Status(204)).await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();
    let mut bans_only = WebhookConfig::new(receiver.url("/bans"), WebhookFormat::Generic);
    bans_only.on = NotifyOn {
        ban: true,
        unban: false,
    };
    let actions = vec![
        NotifyConfig::Webhook(bans_only),
        hook(receiver.url("/both"), WebhookFormat::Generic),
    ];
    handle.notify(notice(NotifyEvent::Unban, actions));
    let request = receiver.next().await;
    assert_eq!(request.path, "/both");
    assert_eq!(request.body["event"], "unban");
    assert_eq!(next_outcome(&mut outcomes).await.result, Ok(()));
    // The bans-only hook was never started: nothing else arrives, nothing else is counted.
    let counts = webhook_counts(&handle);
    assert_eq!((counts.sent, counts.failed, counts.dropped), (1, 0, 0));
    shutdown.cancel();
    task.await.unwrap();
    assert!(receiver.requests.try_recv().is_err());
}

#[tokio::test]
async fn server_errors_are_tried_again_until_one_succeeds() {
    let mut receiver = Receiver::start(
        vec![Reply::Status(500), Reply::Status(503)],
        Reply::Status(200),
    )
    .await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();
    handle.notify(notice(
        NotifyEvent::Ban,
        vec![hook(receiver.url("/hook"), WebhookFormat::Slack)],
    ));
    let outcome = next_outcome(&mut outcomes).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.tries, 3);
    for _ in 0..3 {
        let request = receiver.next().await;
        assert!(
            request.body["text"]
                .as_str()
                .unwrap()
                .contains("203.0.113.7")
        );
    }
    let counts = webhook_counts(&handle);
    assert_eq!((counts.sent, counts.failed), (1, 0));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn too_many_requests_is_retried_but_other_refusals_are_not() {
    let mut receiver = Receiver::start(
        vec![Reply::Status(429), Reply::Status(200), Reply::Status(404)],
        Reply::Status(200),
    )
    .await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();
    let actions = vec![hook(receiver.url("/hook"), WebhookFormat::Generic)];

    handle.notify(notice(NotifyEvent::Ban, actions.clone()));
    let outcome = next_outcome(&mut outcomes).await;
    assert_eq!((outcome.tries, outcome.result), (2, Ok(())));

    handle.notify(notice(NotifyEvent::Unban, actions));
    let outcome = next_outcome(&mut outcomes).await;
    assert_eq!(outcome.tries, 1);
    let error = outcome.result.unwrap_err();
    assert!(error.contains("404"), "{error}");
    assert!(error.contains("receiver says no"), "{error}");

    for _ in 0..3 {
        receiver.next().await;
    }
    let counts = webhook_counts(&handle);
    assert_eq!((counts.sent, counts.failed), (1, 1));
    shutdown.cancel();
    task.await.unwrap();
    assert!(receiver.requests.try_recv().is_err(), "the 404 was retried");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_without_holding_up_others() {
    let hanging = Receiver::start(Vec::new(), Reply::Hang).await;
    let mut healthy = Receiver::start(Vec::new(), Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();

    let mut slow = WebhookConfig::new(hanging.url("/hook"), WebhookFormat::Generic);
    slow.timeout = Duration::from_millis(500);
    slow.retries = 1;
    handle.notify(notice(NotifyEvent::Ban, vec![NotifyConfig::Webhook(slow)]));
    handle.notify(notice(
        NotifyEvent::Ban,
        vec![hook(healthy.url("/hook"), WebhookFormat::Generic)],
    ));

    let started = Instant::now();
    healthy.next().await;
    let first = next_outcome(&mut outcomes).await;
    assert_eq!(first.target, format!("http://{}", healthy.address));
    assert_eq!(first.result, Ok(()));

    let second = next_outcome(&mut outcomes).await;
    assert_eq!(second.target, format!("http://{}", hanging.address));
    assert_eq!(second.tries, 2);
    let error = second.result.unwrap_err();
    assert!(error.contains("timed out"), "{error}");
    // Two tries of 0.5 s and one short wait: well under the 5 s a stuck client would take.
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(started.elapsed() < Duration::from_secs(5));

    let counts = webhook_counts(&handle);
    assert_eq!((counts.sent, counts.failed), (1, 1));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn errors_never_show_the_secret_part_of_the_url() {
    // Bound, then closed: connecting is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    let mut outcomes = handle.outcomes();
    let url = format!("http://user:pa55@{address}/services/T0/B0/S3CRET?token=S3CRET");
    let mut config = WebhookConfig::new(url, WebhookFormat::Slack);
    config.retries = 2;
    handle.notify(notice(
        NotifyEvent::Ban,
        vec![NotifyConfig::Webhook(config)],
    ));
    let outcome = next_outcome(&mut outcomes).await;
    assert_eq!(outcome.tries, 3);
    assert_eq!(outcome.target, format!("http://{address}"));
    let error = outcome.result.unwrap_err();
    assert!(error.contains("connect"), "{error}");
    assert!(
        !error.contains("S3CRET") && !error.contains("pa55"),
        "{error}"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_notices_and_notify_never_waits() {
    let mut hanging = Receiver::start(Vec::new(), Reply::Hang).await;
    let shutdown = CancellationToken::new();
    let options = NotifierOptions {
        queue: 4,
        concurrency: 1,
        ..quick()
    };
    let (handle, task) = Notifier::start_with(options, shutdown.clone());
    let mut stuck = WebhookConfig::new(hanging.url("/hook"), WebhookFormat::Generic);
    stuck.timeout = Duration::from_secs(600);
    let actions: Arc<[NotifyConfig]> = Arc::from(vec![NotifyConfig::Webhook(stuck)]);

    let started = Instant::now();
    for _ in 0..10_000 {
        let mut notice = notice(NotifyEvent::Ban, Vec::new());
        notice.actions = actions.clone();
        handle.notify(notice);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "notify took {elapsed:?}");

    // One is running (stuck), at most one waits for its turn, four are queued.
    hanging.next().await;
    let counts = webhook_counts(&handle);
    assert!(
        (9_994..10_000).contains(&counts.dropped),
        "dropped {}",
        counts.dropped
    );
    assert_eq!((counts.sent, counts.failed), (0, 0));

    // Shutdown ends the stuck request at once, although its timeout is ten minutes.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("notifier did not stop at shutdown")
        .unwrap();
    // Nothing is queued any more: new notices are dropped and counted, not lost silently.
    let before = webhook_counts(&handle).dropped;
    let mut late = notice(NotifyEvent::Unban, Vec::new());
    late.actions = actions.clone();
    handle.notify(late);
    assert_eq!(webhook_counts(&handle).dropped, before + 1);
}

#[tokio::test]
async fn dropping_every_handle_sends_what_is_queued_then_stops() {
    let mut receiver = Receiver::start(Vec::new(), Reply::Status(200)).await;
    let shutdown = CancellationToken::new();
    let (handle, task) = Notifier::start_with(quick(), shutdown.clone());
    for _ in 0..20 {
        handle.notify(notice(
            NotifyEvent::Ban,
            vec![hook(receiver.url("/hook"), WebhookFormat::Generic)],
        ));
    }
    let stats = handle.stats();
    drop(handle);
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("notifier did not stop")
        .unwrap();
    for _ in 0..20 {
        assert_eq!(receiver.next().await.path, "/hook");
    }
    assert_eq!(stats.counts()[0].kind, NotifyKind::Webhook);
    assert_eq!(stats.counts()[0].sent, 20);
}

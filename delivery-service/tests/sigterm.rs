//! The `confide-ds` binary itself stops on SIGTERM, even with a client
//! watching its health: the Watch stream reports NOT_SERVING and ends, and
//! the process exits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const WAIT: Duration = Duration::from_secs(10);

/// `confide-ds --store memory` in plaintext on a free loopback port, killed
/// if the test fails before it exits.
struct Ds {
    child: Child,
    listen: String,
}

impl Drop for Ds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Ds {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_confide-ds"))
        .args(["--store", "memory", "--listen", &listen])
        .env_remove("CONFIDE_CONFIG")
        .env("CONFIDE__PLAINTEXT", "true")
        .env("CONFIDE__SHUTDOWN_GRACE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("starting confide-ds");
    Ds { child, listen }
}

/// Polls until the DS answers on its port.
async fn connect(ds: &mut Ds) -> tonic::transport::Channel {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = ds.child.try_wait().expect("checking the DS") {
            panic!("confide-ds exited at start-up: {status}");
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", ds.listen))
            .expect("a valid endpoint");
        match endpoint.connect().await {
            Ok(channel) => return channel,
            Err(error) if Instant::now() > deadline => panic!("confide-ds never listened: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn the_binary_exits_on_sigterm_with_a_health_watch_open() {
    let mut ds = start();
    let channel = connect(&mut ds).await;
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watching health")
        .into_inner();
    let first = watch.message().await.expect("a status").expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    let killed = Command::new("kill")
        .args(["-TERM", &ds.child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success());

    let mut last = None;
    tokio::time::timeout(WAIT, async {
        while let Ok(Some(response)) = watch.message().await {
            last = Some(response.status());
        }
    })
    .await
    .expect("the Watch stream stayed open after SIGTERM");
    assert_eq!(last, Some(ServingStatus::NotServing));

    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = ds.child.try_wait().expect("checking the DS") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "confide-ds still runs after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "confide-ds exited with {status}");
}

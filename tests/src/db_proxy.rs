//! [`DbProxy`]: a TCP proxy between a DS and the test PostgreSQL that a test
//! can cut (every connection closed, new ones refused) and restore, so the
//! DS meets a dead database while PostgreSQL keeps serving the other tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use confide_ds::store::postgres::testing::admin_url;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;

pub struct DbProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DbProxy {
    /// A proxy on a loopback port to the PostgreSQL that `DATABASE_URL`
    /// names, passing connections through until [`DbProxy::cut`].
    pub async fn start() -> Self {
        let config: tokio_postgres::Config = admin_url().parse().expect("a valid DATABASE_URL");
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding port 0");
        let addr = listener.local_addr().expect("a bound address");
        let (cut, _) = watch::channel(false);
        let refused = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, target, cut.clone(), refused.clone()));
        Self {
            addr,
            cut,
            refused,
            task,
        }
    }

    /// `database_url` (a database on the proxied server) through this proxy.
    pub fn url(&self, database_url: &str) -> String {
        let config: tokio_postgres::Config = database_url.parse().expect("a valid database URL");
        let mut url = format!(
            "host={} port={} dbname={}",
            self.addr.ip(),
            self.addr.port(),
            config.get_dbname().expect("a database name")
        );
        if let Some(user) = config.get_user() {
            url.push_str(&format!(" user={user}"));
        }
        if let Some(password) = config.get_password() {
            url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
        }
        url
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Passes new connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    target: String,
    cut: watch::Sender<bool>,
    refused: Arc<AtomicU64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut cut = cut.subscribe();
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        });
    }
}

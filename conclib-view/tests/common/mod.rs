//! What the live view's tests share: the view served on a free port, and a GET.
#![allow(dead_code)] // each test file uses its part

use std::time::Duration;

/// A router served on a free port until the returned handle is stopped.
pub struct Served {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub async fn start(app: axum::Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(conclib_view::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Served { url, stop, server }
    }

    /// Stops the server and waits until it has ended.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// `GET url` (10 s at most): its status and body.
pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

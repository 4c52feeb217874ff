//! An HTTP/1.1 `CONNECT` proxy on loopback that lets a real client (the `ocync` binary with
//! `HTTPS_PROXY`) reach servers named like real cloud registries without DNS or internet.
//!
//! Every `CONNECT host:port` is looked up in a fixed route table and tunnelled to a loopback
//! address; anything else (unknown hosts, plain-HTTP absolute-form requests) is answered `403`
//! and the connection closed, so a misconfigured test can never reach the internet. The TLS
//! inside the tunnel is end to end between the client and the routed server, which therefore
//! needs a certificate for the requested name ([`TestCa::with_names`](super::TestCa::with_names)).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head (request line and headers) the proxy reads before refusing.
const MAX_HEAD: usize = 16 * 1024;

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// The method (`CONNECT`, or e.g. `GET` for a refused absolute-form request).
    pub method: String,
    /// The request target as sent: `host:port` for `CONNECT`, a URL otherwise.
    pub target: String,
    /// The status the proxy answered (`200` for an established tunnel).
    pub status: u16,
}

/// A running `CONNECT` proxy on a random `127.0.0.1` port. Dropping it stops accepting and
/// closes every open tunnel.
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<State>,
    handle: JoinHandle<()>,
}

struct State {
    routes: Mutex<Vec<(String, SocketAddr)>>,
    log: Mutex<Vec<ProxyRequest>>,
}

impl ConnectProxy {
    /// Start a proxy that tunnels `CONNECT host:port` to the address routed for `host:port`
    /// (host compared case-insensitively; a route without a port matches every port).
    pub async fn start(routes: Vec<(String, SocketAddr)>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random 127.0.0.1 port");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let state = Arc::new(State {
            routes: Mutex::new(routes),
            log: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let handle = tokio::spawn(async move {
            // The connections live in this set so that aborting the accept task (on drop)
            // also closes every tunnel.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                connections.spawn(handle_connection(stream, Arc::clone(&accept_state)));
            }
        });
        ConnectProxy {
            addr,
            state,
            handle,
        }
    }

    /// Route `CONNECT host_port` to `to` from now on (replacing an earlier route for it).
    pub fn add_route(&self, host_port: impl Into<String>, to: SocketAddr) {
        let host_port = host_port.into();
        let mut routes = lock(&self.state.routes);
        routes.retain(|(h, _)| !h.eq_ignore_ascii_case(&host_port));
        routes.push((host_port, to));
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the value for `HTTPS_PROXY` (or `reqwest::Proxy::https`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `host:port` of every `CONNECT` received, tunnelled or refused, oldest first.
    pub fn connects(&self) -> Vec<String> {
        lock(&self.state.log)
            .iter()
            .filter(|r| r.method == "CONNECT")
            .map(|r| r.target.clone())
            .collect()
    }

    /// The `host:port` of every `CONNECT` that was tunnelled, oldest first.
    pub fn tunnelled(&self) -> Vec<String> {
        lock(&self.state.log)
            .iter()
            .filter(|r| r.method == "CONNECT" && r.status == 200)
            .map(|r| r.target.clone())
            .collect()
    }

    /// Every request received (complete heads only), oldest first.
    pub fn requests(&self) -> Vec<ProxyRequest> {
        lock(&self.state.log).clone()
    }

    /// Forget the logged requests.
    pub fn clear(&self) {
        lock(&self.state.log).clear();
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .field("routes", &*lock(&self.state.routes))
            .finish_non_exhaustive()
    }
}

impl State {
    fn route(&self, target: &str) -> Option<SocketAddr> {
        let (host, _) = split_host_port(target)?;
        lock(&self.routes).iter().find_map(|(route, to)| {
            let matches = match split_host_port(route) {
                Some(_) => route.eq_ignore_ascii_case(target),
                None => route.eq_ignore_ascii_case(host),
            };
            matches.then_some(*to)
        })
    }

    fn record(&self, method: &str, target: &str, status: u16) {
        lock(&self.log).push(ProxyRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            status,
        });
    }
}

/// `host:port` (or `[v6]:port`) split into the host and the port; `None` without a port.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return None;
    }
    Some((host, port))
}

async fn handle_connection(mut client: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            let _ = refuse(&mut client, 431, "Request Header Fields Too Large").await;
            return;
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();

    if method != "CONNECT" {
        state.record(&method, &target, 403);
        let _ = refuse(&mut client, 403, "Forbidden").await;
        return;
    }
    let Some(to) = state.route(&target) else {
        state.record(&method, &target, 403);
        let _ = refuse(&mut client, 403, "Forbidden").await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        state.record(&method, &target, 502);
        let _ = refuse(&mut client, 502, "Bad Gateway").await;
        return;
    };
    state.record(&method, &target, 200);
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    // Bytes the client sent after the head (a TLS ClientHello sent without waiting) belong
    // to the tunnel.
    if buf.len() > head_len && upstream.write_all(&buf[head_len..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// The length of the request head including its final blank line, once complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn refuse(client: &mut TcpStream, status: u16, reason: &str) -> std::io::Result<()> {
    let body = format!("ocync test proxy: {status} {reason}\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(
            split_host_port("myreg.azurecr.io:443"),
            Some(("myreg.azurecr.io", 443))
        );
        assert_eq!(split_host_port("[::1]:8443"), Some(("[::1]", 8443)));
        assert_eq!(split_host_port("myreg.azurecr.io"), None);
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("host:http"), None);
    }

    #[tokio::test]
    async fn routes_match_exactly_or_by_host_and_refuse_everything_else() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let proxy = ConnectProxy::start(vec![
            ("Exact.example:443".to_owned(), a),
            ("any-port.example".to_owned(), b),
        ])
        .await;
        let state = &proxy.state;
        assert_eq!(state.route("exact.example:443"), Some(a));
        assert_eq!(state.route("exact.example:8443"), None);
        assert_eq!(state.route("any-port.example:5000"), Some(b));
        assert_eq!(state.route("any-port.example"), None);
        assert_eq!(state.route("example.com:443"), None);
        proxy.add_route("exact.example:443", b);
        assert_eq!(state.route("exact.example:443"), Some(b));
    }

    #[tokio::test]
    async fn absolute_form_and_garbage_are_refused() {
        let proxy = ConnectProxy::start(Vec::new()).await;
        for request in [
            "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ] {
            let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        }
        assert_eq!(proxy.connects(), ["example.com:443"]);
        assert!(proxy.tunnelled().is_empty());
        let requests = proxy.requests();
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].status, 403);
    }
}

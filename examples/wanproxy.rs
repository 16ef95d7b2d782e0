//! wanproxy: a TCP proxy that simulates a WAN link (one-way delay and a
//! rate cap per direction) in userspace, for bench/bench.sh. The proxy
//! itself is tests/common/wan.rs, shared with the integration tests; see
//! its documentation for what it models and what it does not.
//!
//! ```text
//! wanproxy --listen 127.0.0.1:0 --target 127.0.0.1:2222 --delay-ms 25 --rate 12.5M
//! ```
//!
//! Prints `listening 127.0.0.1:PORT` on stdout, then runs until killed.
//! "up" is client → server (towards --target), "down" the other way.

#[path = "../tests/common/wan.rs"]
mod wan;

use clap::Parser;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A userspace WAN link simulator: TCP proxy with one-way delay and rate cap.
#[derive(Parser, Debug)]
#[command(name = "wanproxy")]
struct Args {
    /// Address to listen on (port 0: any free port)
    #[arg(long)]
    listen: String,
    /// Address to forward to
    #[arg(long)]
    target: String,
    /// One-way delay in each direction, in ms
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Rate cap in each direction, bytes per second; k/M/G (10^3, 10^6,
    /// 10^9) or Ki/Mi/Gi suffixes, e.g. 12.5M for 100 Mbit/s; 0: unlimited
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// One-way delay client → server, in ms (overrides --delay-ms)
    #[arg(long)]
    delay_up_ms: Option<u64>,
    /// One-way delay server → client, in ms (overrides --delay-ms)
    #[arg(long)]
    delay_down_ms: Option<u64>,
    /// Rate cap of each connection on its own, both ways, on top of the
    /// shared link (what limits one TCP flow on a long fat pipe)
    #[arg(long, value_parser = parse_rate)]
    conn_rate: Option<u64>,
    /// Rate cap client → server (overrides --rate)
    #[arg(long, value_parser = parse_rate)]
    rate_up: Option<u64>,
    /// Rate cap server → client (overrides --rate)
    #[arg(long, value_parser = parse_rate)]
    rate_down: Option<u64>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s").trim_end_matches('B');
    let (num, mult) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64 * 1024.0),
        ("Gi", 1024f64 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1.0));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("not a rate (bytes per second, e.g. 12.5M): {s:?}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a rate: {s:?}"));
    }
    Ok((v * mult).round() as u64)
}

fn main() {
    let a = Args::parse();
    let target: SocketAddr = match a.target.to_socket_addrs().ok().and_then(|mut i| i.next()) {
        Some(t) => t,
        None => {
            eprintln!("wanproxy: cannot resolve --target {}", a.target);
            std::process::exit(2);
        }
    };
    let nonzero = |r: Option<u64>| r.filter(|&r| r > 0);
    let opts = wan::WanOpts {
        delay_up: Duration::from_millis(a.delay_up_ms.unwrap_or(a.delay_ms)),
        delay_down: Duration::from_millis(a.delay_down_ms.unwrap_or(a.delay_ms)),
        rate_up: nonzero(a.rate_up.or(a.rate)),
        rate_down: nonzero(a.rate_down.or(a.rate)),
        conn_rate_up: nonzero(a.conn_rate),
        conn_rate_down: nonzero(a.conn_rate),
        ..wan::WanOpts::default()
    };
    let proxy = match wan::WanProxy::start_on(&a.listen, target, opts.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wanproxy: cannot listen on {}: {e}", a.listen);
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {}", proxy.host_port());
    let _ = out.flush();
    drop(out);
    let rate = |r: Option<u64>| r.map_or("unlimited".to_string(), |r| format!("{r} B/s"));
    eprintln!(
        "wanproxy: {} -> {target}; up: {} ms, {}; down: {} ms, {}; per connection: {}",
        proxy.host_port(),
        opts.delay_up.as_millis(),
        rate(opts.rate_up),
        opts.delay_down.as_millis(),
        rate(opts.rate_down),
        rate(opts.conn_rate_up),
    );
    loop {
        std::thread::park();
    }
}

//! The WAN simulator (tests/common/wan.rs) itself, with plain TCP on
//! loopback: delay, rate, stall and cut behave as documented. Bounds are
//! generous (a shared 2-core machine), the whole file runs in a few seconds.

mod common;

use common::wan::{WanOpts, WanProxy};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// An echo server on 127.0.0.1:0: every connection gets its bytes back.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A sink on 127.0.0.1:0: counts what it receives (all connections) and,
/// at EOF, answers with the connection's byte count as 8 bytes LE.
fn sink_server() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let total = Arc::new(AtomicU64::new(0));
    let t = total.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let t = t.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut n = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            n += k as u64;
                            t.fetch_add(k as u64, Ordering::SeqCst);
                        }
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(&n.to_le_bytes());
            });
        }
    });
    (addr, total)
}

fn connect(p: &WanProxy) -> TcpStream {
    let s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `len` pseudo-random bytes, half-closes, and waits for the sink's
/// count; returns it.
fn push(s: &mut TcpStream, len: usize) -> u64 {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    s.write_all(&data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut n = [0u8; 8];
    s.read_exact(&mut n).unwrap();
    u64::from_le_bytes(n)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_way_delay_each_way() {
    let p = WanProxy::start(echo_server(), WanOpts::wan(50, 0));
    let mut s = connect(&p);
    // The first exchange includes the proxy's connect to the target.
    s.write_all(b"warm").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    for _ in 0..3 {
        let t0 = Instant::now();
        s.write_all(b"ping").unwrap();
        s.read_exact(&mut b).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(&b, b"ping");
        assert!(
            rtt >= Duration::from_millis(100) && rtt < Duration::from_millis(300),
            "round trip {rtt:?} through 50 ms + 50 ms"
        );
    }
    assert_eq!(p.bytes_up(), 16);
    assert_eq!(p.bytes_down(), 16);
    assert_eq!(p.connections(), 1);
}

#[test]
fn asymmetric_delay() {
    let opts = WanOpts {
        delay_up: Duration::from_millis(120),
        delay_down: Duration::from_millis(10),
        ..WanOpts::default()
    };
    let p = WanProxy::start(echo_server(), opts);
    let mut s = connect(&p);
    let t0 = Instant::now();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let rtt = t0.elapsed();
    assert!(
        rtt >= Duration::from_millis(130) && rtt < Duration::from_millis(400),
        "{rtt:?}"
    );
}

#[test]
fn rate_cap() {
    let (sink, _) = sink_server();
    let p = WanProxy::start(
        sink,
        WanOpts {
            rate_up: Some(1_000_000),
            ..WanOpts::default()
        },
    );
    let mut s = connect(&p);
    let t0 = Instant::now();
    assert_eq!(push(&mut s, 2 << 20), 2 << 20);
    let t = t0.elapsed().as_secs_f64();
    assert!((1.8..2.6).contains(&t), "2 MiB at 1 MB/s took {t:.3} s");
    assert_eq!(p.bytes_up(), 2 << 20);
    assert_eq!(p.bytes_down(), 8);
}

/// A per-connection cap holds each connection to it, while two together
/// get twice as far (the shared link is wider).
#[test]
fn per_connection_cap() {
    let (sink, total) = sink_server();
    let p = WanProxy::start(
        sink,
        WanOpts {
            rate_up: Some(10_000_000),
            conn_rate_up: Some(1_000_000),
            ..WanOpts::default()
        },
    );
    let mut one = connect(&p);
    let t0 = Instant::now();
    assert_eq!(push(&mut one, 1 << 20), 1 << 20);
    let t = t0.elapsed().as_secs_f64();
    assert!(
        (0.9..1.5).contains(&t),
        "1 MiB at 1 MB/s per connection took {t:.3} s"
    );
    let t0 = Instant::now();
    let both: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(&p);
            thread::spawn(move || push(&mut s, 1 << 20))
        })
        .collect();
    for h in both {
        assert_eq!(h.join().unwrap(), 1 << 20);
    }
    let t = t0.elapsed().as_secs_f64();
    assert!(
        (0.9..1.6).contains(&t),
        "two connections of 1 MiB each at 1 MB/s apiece took {t:.3} s"
    );
    assert_eq!(total.load(Ordering::SeqCst), 3 << 20);
}

/// A bulk stream through 25 ms / 12.5 MB/s runs at close to the rate: the
/// link is pipelined, not a sleep per chunk.
#[test]
fn bulk_reaches_the_rate_with_delay() {
    let (sink, _) = sink_server();
    let p = WanProxy::start(sink, WanOpts::wan(25, 12_500_000));
    let mut s = connect(&p);
    let len = 16usize << 20;
    let t0 = Instant::now();
    assert_eq!(push(&mut s, len), len as u64);
    let t = t0.elapsed().as_secs_f64();
    let ideal = len as f64 / 12.5e6 + 0.05;
    assert!(t >= ideal - 0.05, "faster than the link: {t:.3} s");
    assert!(
        t < ideal * 1.35,
        "16 MiB at 12.5 MB/s, 25 ms: {t:.3} s (ideal {ideal:.3} s)"
    );
}

#[test]
fn stall_up_after_then_unstall() {
    let (sink, received) = sink_server();
    let n = 300_000u64;
    let p = WanProxy::start(
        sink,
        WanOpts {
            delay_up: Duration::from_millis(5),
            delay_down: Duration::from_millis(5),
            stall_up_after: Some(n),
            ..WanOpts::default()
        },
    );
    let mut s = connect(&p);
    let len = 1usize << 20;
    let pusher = thread::spawn(move || push(&mut s, len));
    wait_until("the stall", Duration::from_secs(5), || p.stalled());
    wait_until("the sink to get N bytes", Duration::from_secs(5), || {
        received.load(Ordering::SeqCst) == n
    });
    thread::sleep(Duration::from_millis(300));
    assert!(p.stalled());
    assert_eq!(p.bytes_up(), n, "bytes_up moved while stalled");
    assert_eq!(received.load(Ordering::SeqCst), n);
    assert!(!pusher.is_finished());
    p.unstall();
    assert!(!p.stalled());
    assert_eq!(pusher.join().unwrap(), len as u64);
    assert_eq!(p.bytes_up(), len as u64);
    assert!(!p.stalled(), "the trigger fired again after unstall");
}

/// A stall stops both directions: an echo is not answered until unstall.
#[test]
fn stall_now_silences_both_directions() {
    let p = WanProxy::start(echo_server(), WanOpts::wan(5, 0));
    let mut s = connect(&p);
    let mut b = [0u8; 4];
    s.write_all(b"ping").unwrap();
    s.read_exact(&mut b).unwrap();
    p.stall_now();
    s.write_all(b"pong").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let e = s.read(&mut b).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(p.bytes_up(), 4);
    p.unstall();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pong");
}

/// The stall counted downwards: the server's answer stops at N bytes.
#[test]
fn stall_down_after() {
    let p = WanProxy::start(
        echo_server(),
        WanOpts {
            stall_down_after: Some(1000),
            ..WanOpts::default()
        },
    );
    let mut s = connect(&p);
    s.write_all(&[7u8; 5000]).unwrap();
    let mut got = 0;
    let mut b = [0u8; 5000];
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    while let Ok(k) = s.read(&mut b) {
        assert!(k > 0, "EOF while stalled");
        got += k;
    }
    assert_eq!(got, 1000);
    assert!(p.stalled());
    assert_eq!(p.bytes_down(), 1000);
    p.unstall();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut b[..4000]).unwrap();
    assert_eq!(p.bytes_down(), 5000);
}

#[test]
fn cut_after_resets_then_new_connections_work() {
    let p = WanProxy::start(
        echo_server(),
        WanOpts {
            cut_after: Some(100_000),
            ..WanOpts::default()
        },
    );
    let mut s = connect(&p);
    let mut w = s.try_clone().unwrap();
    // Writes may fail once the proxy resets the connection.
    let writer = thread::spawn(move || {
        let chunk = [1u8; 16384];
        for _ in 0..64 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let mut got = 0usize;
    let mut b = vec![0u8; 65536];
    let end = loop {
        match s.read(&mut b) {
            Ok(0) => break "eof",
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("unexpected error after {got} bytes: {e}"),
        }
    };
    writer.join().unwrap();
    assert!(
        got < 100_000,
        "{got} bytes came back through a cut link ({end})"
    );
    assert_eq!(p.bytes_up() + p.bytes_down(), 100_000);

    // The cut fired once: a new connection is forwarded normally.
    let mut s = connect(&p);
    let msg = vec![9u8; 200_000];
    let mut r = s.try_clone().unwrap();
    let echo = thread::spawn(move || {
        let mut back = vec![0u8; 200_000];
        r.read_exact(&mut back).map(|_| back)
    });
    s.write_all(&msg).unwrap();
    assert_eq!(echo.join().unwrap().unwrap(), msg);
    assert_eq!(p.connections(), 2);
}

#[test]
fn half_close_is_forwarded_after_the_data() {
    let (sink, _) = sink_server();
    let p = WanProxy::start(sink, WanOpts::wan(30, 0));
    let mut s = connect(&p);
    // The sink answers only at EOF, so this returns only if the FIN came
    // through, after all the data.
    assert_eq!(push(&mut s, 100_000), 100_000);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn drop_closes_connections() {
    let p = WanProxy::start(echo_server(), WanOpts::default());
    let mut s = connect(&p);
    s.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    drop(p);
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
}

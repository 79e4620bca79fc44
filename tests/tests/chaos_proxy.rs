//! Self-tests of the chaos proxy: real TCP over loopback, against a small echo server written
//! here, and once against the throwaway PostgreSQL. Bounds are generous (the machine is
//! loaded); nothing asserts that anything is fast.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use learning_tests::chaos_proxy::{ChaosProxy, Fate, FaultPlan, Mode, Trigger};
use learning_tests::TestDb;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);
/// Time triggers that never fire within a test.
const NEVER: Duration = Duration::from_secs(3600);

/// An echo server: every connection gets back what it sends, and a FIN after the client's FIN.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    addr
}

async fn connect(proxy: &ChaosProxy) -> TcpStream {
    timeout(SOON, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect within the bound")
        .expect("the proxy accepts")
}

/// Sends `msg` and reads as many bytes back (panics if that does not happen within SOON).
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    timeout(SOON, stream.read_exact(&mut back))
        .await
        .expect("echo within the bound")
        .expect("echo arrives");
    assert_eq!(back, msg);
}

/// Reads until EOF or an error (RST) within SOON; returns the bytes read before that.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(SOON, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection was not closed within {SOON:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `plan` with the first seed that gives its connection 0 a fate `wanted` accepts.
fn reseeded(plan: FaultPlan, wanted: impl Fn(Fate) -> bool) -> FaultPlan {
    (0..10_000)
        .map(|seed| FaultPlan {
            seed,
            ..plan.clone()
        })
        .find(|p| wanted(p.fate(0)))
        .expect("some seed gives the wanted fate")
}

#[tokio::test]
async fn a_healthy_plan_forwards_bytes_both_ways_intact() {
    let proxy = ChaosProxy::start(echo_server().await, FaultPlan::healthy()).await;
    let stream = connect(&proxy).await;
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = stream.into_split();
    let write = async {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let read = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = timeout(SOON, async { tokio::join!(write, read) })
        .await
        .expect("the transfer ends within the bound");
    assert!(
        got == sent,
        "echo differs: {} of {} bytes",
        got.len(),
        sent.len()
    );
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.passed), (1, 1));
    assert_eq!((stats.dropped, stats.stalled, stats.delayed), (0, 0, 0));
    assert_eq!(stats.bytes_to_upstream, sent.len() as u64);
    assert_eq!(stats.bytes_to_client, sent.len() as u64);
}

#[test]
fn fates_are_a_pure_function_of_seed_and_connection_number() {
    let fates = |plan: &FaultPlan| (0..10_000).map(|n| plan.fate(n)).collect::<Vec<_>>();
    let run = fates(&FaultPlan::chaotic(7));
    assert_eq!(run, fates(&FaultPlan::chaotic(7)), "same seed, same fates");
    assert_ne!(
        run,
        fates(&FaultPlan::chaotic(8)),
        "another seed, other fates"
    );
    assert!(fates(&FaultPlan::healthy())
        .iter()
        .all(|f| *f == Fate::Pass));

    let count = |p: fn(&Fate) -> bool| run.iter().filter(|f| p(f)).count();
    let drops = count(|f| matches!(f, Fate::Drop(_)));
    let stalls = count(|f| matches!(f, Fate::Stall(_)));
    let delays = count(|f| *f == Fate::Delay(Duration::from_millis(50)));
    // 10 %, 5 %, 20 % of 10,000, with room for chance (several standard deviations).
    assert!((800..1200).contains(&drops), "{drops} drops");
    assert!((350..650).contains(&stalls), "{stalls} stalls");
    assert!((1700..2300).contains(&delays), "{delays} delays");
    let triggers = run.iter().filter_map(|f| match f {
        Fate::Drop(t) | Fate::Stall(t) => Some(*t),
        _ => None,
    });
    let (mut bytes, mut after) = (0, 0);
    for t in triggers {
        match t {
            Trigger::Bytes(b) => {
                assert!(b <= 16 * 1024, "{b} bytes");
                bytes += 1;
            }
            Trigger::After(d) => {
                assert!(d <= Duration::from_secs(5), "{d:?}");
                after += 1;
            }
        }
    }
    assert!(
        bytes > 400 && after > 400,
        "{bytes} byte and {after} time triggers"
    );
}

#[tokio::test]
async fn the_proxy_gives_its_nth_connection_the_plans_nth_fate() {
    let plan = FaultPlan::chaotic(3)
        .with_faults(0.5, 0.0, 0.0)
        .with_triggers(0, Duration::ZERO);
    let proxy = ChaosProxy::start(echo_server().await, plan.clone()).await;
    let fates: Vec<Fate> = (0..12).map(|n| plan.fate(n)).collect();
    assert!(fates.contains(&Fate::Pass) && fates.iter().any(|f| matches!(f, Fate::Drop(_))));
    for (n, fate) in fates.iter().enumerate() {
        let mut stream = connect(&proxy).await;
        match fate {
            Fate::Pass => round_trip(&mut stream, b"hello").await,
            // Fires on the first chunk: nothing reaches the echo server.
            Fate::Drop(Trigger::Bytes(0)) => {
                stream.write_all(b"hello").await.unwrap();
                assert!(
                    read_until_closed(&mut stream).await.is_empty(),
                    "connection {n}"
                );
            }
            // Fires at once, whatever the traffic.
            Fate::Drop(Trigger::After(_)) => {
                assert!(
                    read_until_closed(&mut stream).await.is_empty(),
                    "connection {n}"
                );
            }
            other => panic!("unexpected fate {other:?}"),
        }
    }
    let stats = proxy.stats();
    let passes = fates.iter().filter(|f| **f == Fate::Pass).count() as u64;
    assert_eq!(stats.accepted, 12);
    assert_eq!((stats.passed, stats.dropped), (passes, 12 - passes));
}

#[tokio::test]
async fn a_drop_after_some_bytes_forwards_exactly_those_and_resets_the_client() {
    let plan = FaultPlan::healthy()
        .with_faults(1.0, 0.0, 0.0)
        .with_triggers(100, NEVER);
    let plan = reseeded(
        plan,
        |f| matches!(f, Fate::Drop(Trigger::Bytes(b)) if b >= 10),
    );
    let Fate::Drop(Trigger::Bytes(budget)) = plan.fate(0) else {
        unreachable!()
    };
    let proxy = ChaosProxy::start(echo_server().await, plan).await;
    let mut stream = connect(&proxy).await;
    stream.write_all(&[b'x'; 1000]).await.unwrap();
    let got = read_until_closed(&mut stream).await;
    assert!(got.len() as u64 <= budget, "{} bytes came back", got.len());
    let stats = proxy.stats();
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.bytes_to_upstream + stats.bytes_to_client, budget);
    assert!(stats.bytes_to_upstream > 0);
}

#[tokio::test]
async fn a_stall_keeps_the_socket_open_but_silent_until_the_proxy_stops() {
    let plan = FaultPlan::healthy()
        .with_faults(0.0, 1.0, 0.0)
        .with_triggers(0, NEVER);
    let plan = reseeded(plan, |f| f == Fate::Stall(Trigger::Bytes(0)));
    let proxy = ChaosProxy::start(echo_server().await, plan).await;
    let mut stream = connect(&proxy).await;
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    assert!(
        read.is_err(),
        "the read completed: {read:?} (no data, no EOF expected)"
    );
    // Still open: the client can go on writing into the void.
    stream.write_all(b"anyone there?").await.unwrap();
    let stats = proxy.stats();
    assert_eq!((stats.stalled, stats.dropped), (1, 0));
    assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (0, 0));
    proxy.stop().await;
    assert!(read_until_closed(&mut stream).await.is_empty());
}

#[tokio::test]
async fn stall_all_silences_and_cut_all_closes_current_connections_only() {
    let proxy = ChaosProxy::start(echo_server().await, FaultPlan::healthy()).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(&proxy).await;
        round_trip(&mut stream, b"ping").await;
        streams.push(stream);
    }
    proxy.stall_all();
    let mut silent = streams.pop().unwrap();
    silent.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    let read = timeout(Duration::from_secs(1), silent.read(&mut buf)).await;
    assert!(read.is_err(), "a stalled connection answered: {read:?}");
    streams.push(silent);
    let mut fresh = connect(&proxy).await;
    round_trip(&mut fresh, b"after the stall").await;

    proxy.cut_all();
    for stream in &mut streams {
        read_until_closed(stream).await;
    }
    read_until_closed(&mut fresh).await;
    let mut newer = connect(&proxy).await;
    round_trip(&mut newer, b"after the cut").await;
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.passed), (5, 5));
    assert_eq!((stats.stalled, stats.dropped), (3, 4));
}

#[tokio::test]
async fn down_modes_refuse_or_reset_new_connections_and_up_reopens_the_port() {
    let proxy = ChaosProxy::start(echo_server().await, FaultPlan::healthy()).await;
    let mut old = connect(&proxy).await;
    round_trip(&mut old, b"before").await;

    proxy.set_mode(Mode::Refuse).await.unwrap();
    let refused = TcpStream::connect(proxy.addr()).await;
    assert_eq!(
        refused.map(drop).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );
    round_trip(&mut old, b"current connections go on").await;

    proxy.set_mode(Mode::Reset).await.unwrap();
    let mut reset = connect(&proxy).await;
    assert!(read_until_closed(&mut reset).await.is_empty());

    proxy.set_mode(Mode::Up).await.unwrap();
    let mut new = connect(&proxy).await;
    round_trip(&mut new, b"back up").await;
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.rejected, stats.passed), (3, 1, 2));
}

#[tokio::test]
async fn delayed_connections_still_forward_intact() {
    let plan = FaultPlan::healthy().with_faults(0.0, 0.0, 1.0);
    let proxy = ChaosProxy::start(echo_server().await, plan).await;
    let mut stream = connect(&proxy).await;
    for i in 0..10 {
        round_trip(&mut stream, format!("message {i}").as_bytes()).await;
    }
    assert_eq!((proxy.stats().delayed, proxy.stats().passed), (1, 0));
}

#[tokio::test]
async fn stopping_or_dropping_the_proxy_frees_its_port_and_connections() {
    let echo = echo_server().await;
    let proxy = ChaosProxy::start(echo, FaultPlan::healthy()).await;
    let addr = proxy.addr();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"hi").await;
    proxy.stop().await;
    let refused = TcpStream::connect(addr).await.map(drop);
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused)
    );
    assert!(read_until_closed(&mut stream).await.is_empty());

    let proxy = ChaosProxy::start(echo, FaultPlan::healthy()).await;
    let addr = proxy.addr();
    let mut stream = connect(&proxy).await;
    round_trip(&mut stream, b"hi").await;
    drop(proxy);
    assert!(read_until_closed(&mut stream).await.is_empty());
    let refused = timeout(SOON, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    refused.await.expect("the port is closed after the drop");
}

#[tokio::test]
async fn postgres_answers_through_the_proxy_and_a_pool_recovers_after_cut_all() {
    let db = TestDb::new().await;
    let options = db.worker_options();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .expect("the test cluster's address");
    let proxy = ChaosProxy::start(upstream, FaultPlan::healthy()).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(SOON)
        .connect_with(options.host("127.0.0.1").port(proxy.port()))
        .await
        .expect("connect through the proxy");
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.passed), (1, 1));
    assert!(stats.bytes_to_upstream > 0 && stats.bytes_to_client > 0);

    proxy.cut_all();
    // The pool's health check before acquire sees the reset connection and opens a new one;
    // one failed attempt is allowed, should the query race the reset.
    let mut answer = sqlx::query_scalar::<_, i32>("select 2")
        .fetch_one(&pool)
        .await;
    if answer.is_err() {
        answer = sqlx::query_scalar("select 2").fetch_one(&pool).await;
    }
    assert_eq!(answer.expect("a query after cut_all"), 2);
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.dropped), (2, 1));
    pool.close().await;
}

//! A seeded TCP fault-injection proxy for the chaos suite. This is a **FAKE** network path, no
//! real network device: an in-process listener on `127.0.0.1:<random port>` that a test puts
//! between its clients (runner processes, a sqlx pool) and an upstream (PostgreSQL). It
//! forwards bytes both ways and misbehaves on purpose; each accepted connection gets a [`Fate`]:
//! - [`Fate::Pass`]: forwarded untouched (a healthy path);
//! - [`Fate::Delay`]: every chunk waits a random 0..=max before it is written (a slow path);
//! - [`Fate::Drop`]: once its [`Trigger`] fires (after some bytes, so a message can arrive
//!   truncated, or after some time), both sides are reset (`SO_LINGER` zero, so an
//!   RST): a crashed peer, a restarted pgbouncer, a firewall killing the flow;
//! - [`Fate::Stall`]: once its [`Trigger`] fires, nothing is forwarded in either direction, yet
//!   both sockets stay open and no FIN or RST is sent: a dead peer after a failover
//!   (half-open). The client only notices through its own timeouts. Stalled connections are
//!   released when the proxy stops or is dropped.
//!
//! Reproducible: the n-th connection the proxy forwards (from 0, over the proxy's life) gets
//! [`FaultPlan::fate`]`(n)`, a pure function of the plan and `n` (a hand-written splitmix64), as
//! do a delayed connection's per-chunk latencies; only what a time trigger cuts depends on
//! timing. All tasks live in a [`JoinSet`] owned by the accept task: [`ChaosProxy::stop`] or
//! dropping the proxy ends the listener and every connection.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::{future::pending, io, net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{tcp::ReadHalf, tcp::WriteHalf, TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout};

/// How long the proxy tries to reach the upstream for a new connection before it resets the
/// client (counted in [`Stats::upstream_failures`]); also the longest [`ChaosProxy::stop`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const CHUNK: usize = 16 * 1024;
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// When a [`Fate::Drop`] or [`Fate::Stall`] fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Once this many bytes (both directions) were forwarded; 0: on the first chunk, unsent.
    Bytes(u64),
    /// This long after the connection was accepted and its upstream connected.
    After(Duration),
}

/// What the proxy does with one connection (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Forwarded untouched.
    Pass,
    /// Each chunk waits a random 0..=this long before it is written.
    Delay(Duration),
    /// Both sides are reset once the trigger fires.
    Drop(Trigger),
    /// Forwarding stops in both directions once the trigger fires; the sockets stay open.
    Stall(Trigger),
}

/// The probabilities and bounds fates are drawn from. Probabilities are checked in the order
/// drop, stall, delay (if they add up to more than 1, the later ones get what is left); the
/// rest passes. A drop or stall gets a byte trigger or a time trigger, each half the time.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// The seed of every random choice.
    pub seed: u64,
    /// Probability of [`Fate::Drop`].
    pub drop: f64,
    /// Probability of [`Fate::Stall`].
    pub stall: f64,
    /// Probability of [`Fate::Delay`].
    pub delay: f64,
    /// The longest per-chunk latency of a delayed connection.
    pub max_delay: Duration,
    /// Byte triggers fire after 0..=this many bytes.
    pub max_trigger_bytes: u64,
    /// Time triggers fire after 0..=this long.
    pub max_trigger_after: Duration,
}

impl FaultPlan {
    /// No faults: every connection passes (seed 0; bounds as in [`FaultPlan::chaotic`]).
    pub fn healthy() -> FaultPlan {
        FaultPlan {
            seed: 0,
            drop: 0.0,
            stall: 0.0,
            delay: 0.0,
            max_delay: Duration::from_millis(50),
            max_trigger_bytes: 16 * 1024,
            max_trigger_after: Duration::from_secs(5),
        }
    }

    /// 10 % drop, 5 % stall, 20 % delay of up to 50 ms per chunk; triggers after up to 16 KiB
    /// or up to 5 s. Other plans: `FaultPlan::chaotic(seed).with_faults(..)` and so on.
    pub fn chaotic(seed: u64) -> FaultPlan {
        let mut plan = FaultPlan::healthy().with_faults(0.10, 0.05, 0.20);
        plan.seed = seed;
        plan
    }

    /// This plan with these drop, stall and delay probabilities (each clamped to 0..=1).
    pub fn with_faults(mut self, drop: f64, stall: f64, delay: f64) -> FaultPlan {
        let p = |x: f64| x.clamp(0.0, 1.0);
        (self.drop, self.stall, self.delay) = (p(drop), p(stall), p(delay));
        self
    }

    /// This plan with byte triggers after 0..=`max_bytes` and time triggers after
    /// 0..=`max_after` (both zero: a drop or stall fires at once).
    pub fn with_triggers(mut self, max_bytes: u64, max_after: Duration) -> FaultPlan {
        (self.max_trigger_bytes, self.max_trigger_after) = (max_bytes, max_after);
        self
    }

    /// The fate of connection `n` (0-based): a pure function of the plan and `n`.
    pub fn fate(&self, n: u64) -> Fate {
        let rng = &mut mix(self.seed ^ mix(n ^ GAMMA));
        let after = micros(self.max_trigger_after);
        let u = (next(rng) >> 11) as f64 / (1u64 << 53) as f64;
        let mut trigger = || match next(rng) & 1 {
            0 => Trigger::Bytes(upto(rng, self.max_trigger_bytes)),
            _ => Trigger::After(Duration::from_micros(upto(rng, after))),
        };
        if u < self.drop {
            Fate::Drop(trigger())
        } else if u < self.drop + self.stall {
            Fate::Stall(trigger())
        } else if u < self.drop + self.stall + self.delay {
            Fate::Delay(self.max_delay)
        } else {
            Fate::Pass
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// splitmix64's finalizer (Steele, Lea, Flood 2014).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64: the next output of the generator whose state is `state`.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GAMMA);
    mix(*state)
}

/// A draw in 0..=max from `state` (the modulo bias does not matter here).
fn upto(state: &mut u64, max: u64) -> u64 {
    max.checked_add(1).map_or(next(state), |m| next(state) % m)
}

/// How the proxy treats new connections; current ones are not affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Accept and forward according to the plan.
    Up,
    /// The listener is closed, connecting fails with "connection refused" (a host whose
    /// service is down); [`Mode::Up`] or [`Mode::Reset`] reopen the same port.
    Refuse,
    /// Accept and reset at once ([`Stats::rejected`]): a proxy whose backend is gone.
    Reset,
}

/// Counters since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (including rejected ones).
    pub accepted: u64,
    /// Connections reset at once because of [`Mode::Reset`].
    pub rejected: u64,
    /// Connections reset because the upstream could not be reached.
    pub upstream_failures: u64,
    /// Connections given [`Fate::Pass`].
    pub passed: u64,
    /// Connections given [`Fate::Delay`].
    pub delayed: u64,
    /// Connections the proxy reset: a drop that fired, or [`ChaosProxy::cut_all`].
    pub dropped: u64,
    /// Connections the proxy half-opened: a stall that fired, or [`ChaosProxy::stall_all`].
    pub stalled: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_to_client: u64,
}

/// How many times [`ChaosProxy::cut_all`] and [`ChaosProxy::stall_all`] were called; a
/// connection obeys the calls made after it was accepted.
#[derive(Clone, Copy, Default)]
struct Orders {
    cut: u64,
    stall: u64,
}

struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    plan: Mutex<FaultPlan>,
    next: AtomicU64,
    orders: watch::Sender<Orders>,
    stats: Mutex<Stats>,
}

impl Shared {
    fn count(&self, change: impl FnOnce(&mut Stats)) {
        change(&mut self.stats.lock().unwrap());
    }
}

/// A new [`Mode`], or `None`: stop.
type Command = (Option<Mode>, oneshot::Sender<io::Result<()>>);

/// A running fault-injection proxy (see the module documentation). Dropping it aborts its
/// accept task, and with it every connection task.
pub struct ChaosProxy {
    shared: Arc<Shared>,
    commands: UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl ChaosProxy {
    /// Listens on `127.0.0.1:0` and forwards every accepted connection to `upstream` under
    /// `plan`. Panics when it cannot listen (test support).
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.expect("chaos proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("chaos proxy: local address");
        let shared = Arc::new(Shared {
            addr,
            upstream,
            plan: Mutex::new(plan),
            next: AtomicU64::new(0),
            orders: watch::Sender::new(Orders::default()),
            stats: Mutex::default(),
        });
        let (commands, rx) = unbounded_channel();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        ChaosProxy {
            shared,
            commands,
            task,
        }
    }

    /// The address clients connect to (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// Replaces the plan for connections accepted from now on; numbering goes on, so the next
    /// connection gets `plan.fate(n)` with the proxy's next `n`.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.shared.plan.lock().unwrap() = plan;
    }

    /// Switches how new connections are treated; on return the listener is closed or listening.
    /// Fails when the port cannot be reopened (taken in between) or the proxy has stopped.
    pub async fn set_mode(&self, mode: Mode) -> io::Result<()> {
        self.command(Some(mode)).await
    }

    async fn command(&self, mode: Option<Mode>) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        let gone = || io::Error::other("chaos proxy stopped");
        self.commands.send((mode, ack)).map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }

    /// Resets both sides of every current connection (stalled ones too).
    pub fn cut_all(&self) {
        self.shared.orders.send_modify(|o| o.cut += 1);
    }

    /// Half-opens every current connection: forwarding stops, the sockets stay open.
    pub fn stall_all(&self) {
        self.shared.orders.send_modify(|o| o.stall += 1);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        *self.shared.stats.lock().unwrap()
    }

    /// Closes the listener and every connection (stalled ones with a FIN) and returns once
    /// all its tasks have ended. Dropping the proxy does the same without waiting.
    pub async fn stop(self) {
        let _ = timeout(CONNECT_TIMEOUT, self.command(None)).await;
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(l: TcpListener, shared: Arc<Shared>, mut rx: UnboundedReceiver<Command>) {
    // Owned by this task: aborting it drops the set, which aborts every connection task.
    let mut connections = JoinSet::new();
    let (mut listener, mut mode) = (Some(l), Mode::Up);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = async {
            match &listener {
                Some(l) => l.accept().await,
                None => pending().await,
            }
        };
        tokio::select! {
            command = rx.recv() => match command {
                Some((Some(new), ack)) => {
                    let result = reopen(&mut listener, shared.addr, new);
                    mode = if result.is_ok() { new } else { mode };
                    let _ = ack.send(result);
                }
                Some((None, ack)) => {
                    drop(listener);
                    connections.shutdown().await;
                    let _ = ack.send(Ok(()));
                    return;
                }
                None => return,
            },
            accepted = accepted => match accepted {
                Ok((client, _)) => admit(&shared, client, mode, &mut connections),
                Err(_) => sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Closes the listener for [`Mode::Refuse`], reopens it on the same address otherwise.
fn reopen(listener: &mut Option<TcpListener>, addr: SocketAddr, mode: Mode) -> io::Result<()> {
    if mode == Mode::Refuse {
        *listener = None;
    } else if listener.is_none() {
        let std = std::net::TcpListener::bind(addr)?;
        std.set_nonblocking(true)?;
        *listener = Some(TcpListener::from_std(std)?);
    }
    Ok(())
}

/// One connection's state; its two directions run in one task and share it.
struct Conn {
    fate: Fate,
    /// The byte trigger, if any, the time trigger (`MAX`: none), and what they do.
    budget: Option<u64>,
    after: Duration,
    fired: End,
    /// Bytes read so far, both directions (for the byte trigger).
    read: AtomicU64,
    /// The per-chunk delay generator's state.
    delays: AtomicU64,
}

fn admit(shared: &Arc<Shared>, client: TcpStream, mode: Mode, set: &mut JoinSet<()>) {
    if mode == Mode::Reset {
        shared.count(|s| (s.accepted, s.rejected) = (s.accepted + 1, s.rejected + 1));
        let _ = client.set_zero_linger();
        return;
    }
    let n = shared.next.fetch_add(1, Relaxed);
    let plan = shared.plan.lock().unwrap().clone();
    let fate = plan.fate(n);
    shared.count(|s| {
        s.accepted += 1;
        s.passed += u64::from(fate == Fate::Pass);
        s.delayed += u64::from(matches!(fate, Fate::Delay(_)));
    });
    let mut orders = shared.orders.subscribe();
    let since = *orders.borrow_and_update();
    let (budget, after) = match fate {
        Fate::Drop(Trigger::Bytes(b)) | Fate::Stall(Trigger::Bytes(b)) => (Some(b), Duration::MAX),
        Fate::Drop(Trigger::After(d)) | Fate::Stall(Trigger::After(d)) => (None, d),
        _ => (None, Duration::MAX),
    };
    let fired = match fate {
        Fate::Stall(_) => End::Stall,
        _ => End::Cut,
    };
    let conn = Conn {
        fate,
        budget,
        after,
        fired,
        read: AtomicU64::new(0),
        delays: AtomicU64::new(mix(plan.seed ^ n)),
    };
    set.spawn(serve(client, conn, (orders, since), shared.clone()));
}

/// How forwarding ended: both sides sent EOF; a peer reset or I/O error (passed on as a
/// reset); a drop or [`ChaosProxy::cut_all`]; a stall or [`ChaosProxy::stall_all`].
#[derive(Clone, Copy, PartialEq)]
enum End {
    Closed,
    Broken,
    Cut,
    Stall,
}

async fn serve(
    mut client: TcpStream,
    conn: Conn,
    (mut rx, since): (watch::Receiver<Orders>, Orders),
    shared: Arc<Shared>,
) {
    let connected = timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream)).await;
    let Ok(Ok(mut upstream)) = connected else {
        shared.count(|s| s.upstream_failures += 1);
        let _ = client.set_zero_linger();
        return;
    };
    let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
    let forward = async {
        let ((mut client_read, mut client_write), (mut up_read, mut up_write)) =
            (client.split(), upstream.split());
        let to_upstream = pump(&mut client_read, &mut up_write, &conn, &shared, true);
        let to_client = pump(&mut up_read, &mut client_write, &conn, &shared, false);
        tokio::try_join!(to_upstream, to_client).map_or_else(|end| end, |_| End::Closed)
    };
    let mut end = tokio::select! {
        end = forward => end,
        () = sleep(conn.after) => conn.fired,
        end = orders(&mut rx, since, true) => end,
    };
    if end == End::Stall {
        shared.count(|s| s.stalled += 1);
        // Holds both sockets, reading and writing nothing, until a cut or the proxy's end.
        end = orders(&mut rx, since, false).await;
    }
    if end == End::Cut {
        shared.count(|s| s.dropped += 1);
    }
    if end != End::Closed {
        let _ = (client.set_zero_linger(), upstream.set_zero_linger());
    }
}

/// Waits for a [`ChaosProxy::cut_all`] (or, with `stall`, a `stall_all`) made after `since`.
async fn orders(rx: &mut watch::Receiver<Orders>, since: Orders, stall: bool) -> End {
    let ordered = |o: &Orders| o.cut > since.cut || (stall && o.stall > since.stall);
    match rx.wait_for(ordered).await.map(|o| o.cut > since.cut) {
        Ok(true) => End::Cut,
        Ok(false) => End::Stall,
        Err(_) => pending().await,
    }
}

/// Forwards one direction until EOF (passed on as a FIN: `Ok`), an error, or the byte trigger.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    conn: &Conn,
    shared: &Shared,
    upward: bool,
) -> Result<(), End> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return to.shutdown().await.or(Ok(())),
            Ok(n) => n as u64,
            Err(_) => return Err(End::Broken),
        };
        let before = conn.read.fetch_add(n, Relaxed);
        let allowed = conn.budget.map_or(n, |b| n.min(b.saturating_sub(before)));
        if let (Fate::Delay(max), true) = (conn.fate, allowed > 0) {
            let state = &mut conn.delays.fetch_add(GAMMA, Relaxed);
            sleep(Duration::from_micros(upto(state, micros(max)))).await;
        }
        if to.write_all(&buf[..allowed as usize]).await.is_err() {
            return Err(End::Broken);
        }
        shared.count(|s| match upward {
            true => s.bytes_to_upstream += allowed,
            false => s.bytes_to_client += allowed,
        });
        if conn.budget.is_some_and(|b| before + n >= b) {
            return Err(conn.fired);
        }
    }
}

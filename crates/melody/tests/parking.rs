//! Parked sessions: an idle session gives up its task ([`Config::park_idle_after`]) and is woken
//! by whatever comes first (a message from the client, one queued for it, a ping due, a close),
//! with nothing lost or reordered. Whether a session is parked is seen from the runtime's count
//! of live tasks: a parked session has none.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use futures_util::{SinkExt, StreamExt};
use melody::{Config, Melody};
use tokio_websockets::Message;

fn live_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A hub that echoes text and counts disconnects.
fn echo_hub(config: Config) -> (Melody, Arc<AtomicUsize>) {
    let melody = Melody::with_config(config);
    melody.on_text(|session, text| {
        let _ = session.send(text);
    });
    let disconnects = Arc::new(AtomicUsize::new(0));
    let counter = disconnects.clone();
    melody.on_disconnect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (melody, disconnects)
}

/// Serves `melody` with `melody::serve` (no task per connection once upgraded); the number of
/// live tasks with every session parked: the server's, and the hub's alarm clock for parked
/// sessions (it runs while a session is parked).
async fn serve(melody: &Melody) -> (std::net::SocketAddr, usize) {
    let app = axum::Router::new().route("/ws", axum::routing::get(melody.handler()));
    let addr = spawn_served(app, |serve| serve).await;
    (addr, live_tasks() + 1)
}

/// The next frame of any kind (`recv` skips pings and pongs). On paused time, the bound is
/// beyond the ping period.
async fn next_frame(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(3600), client.next())
        .await
        .expect("a frame in time")
        .expect("the connection is open")
        .unwrap()
}

async fn echo(client: &mut Client, text: &str) {
    send_text(client, text).await;
    assert_eq!(recv_text(client).await, text);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_park_and_wake_for_the_client_the_hub_and_the_timer() {
    let config = Config::default()
        .ping_period(Duration::from_secs(30))
        .pong_wait(Duration::from_secs(40));
    let (melody, disconnects) = echo_hub(config);
    let (addr, parked) = serve(&melody).await;

    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(addr).await);
    }
    // Fresh sessions have had no traffic: they park at once.
    eventually(|| live_tasks() == parked).await;
    assert_eq!(melody.stats().parked, 20);

    // Woken by the client: a message is answered, and the session stays awake a while.
    for (i, client) in clients.iter_mut().enumerate() {
        echo(client, &format!("hello {i}")).await;
    }
    assert!(live_tasks() > parked, "busy sessions keep their tasks");
    assert_eq!(melody.stats().parked, 0);
    // Two park checks (2 s each) without traffic, and they park again.
    eventually(|| live_tasks() == parked).await;

    // Woken by the hub: a broadcast reaches every parked session, in order.
    for n in 0..3 {
        melody.all().send(format!("news {n}")).unwrap();
    }
    for client in &mut clients {
        for n in 0..3 {
            assert_eq!(recv_text(client).await, format!("news {n}"));
        }
    }
    eventually(|| live_tasks() == parked).await;

    // Woken by a ping from the client: answered with a pong.
    clients[0]
        .send(Message::ping("are you there"))
        .await
        .unwrap();
    let pong = next_frame(&mut clients[0]).await;
    assert!(pong.is_pong(), "expected a pong, got {pong:?}");
    assert_eq!(&*pong.into_payload(), b"are you there");
    eventually(|| live_tasks() == parked).await;

    // Woken by the timer: the server's pings arrive at their period, and the pongs of the one
    // client that reads keep its session past the pong wait (40 s) while it is parked in
    // between; the sessions of the clients that do not read (and so do not answer) end at
    // their pong deadline, parked too.
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        let ping = next_frame(&mut clients[1]).await;
        assert!(ping.is_ping(), "expected a ping, got {ping:?}");
    }
    assert!(started.elapsed() >= Duration::from_secs(60));
    eventually(|| disconnects.load(Ordering::SeqCst) == 19).await;
    assert_eq!(melody.all().len(), 1);

    // Closed by the hub while parked: the client gets the close frame.
    eventually(|| live_tasks() == parked).await;
    melody.close().unwrap();
    let (code, _) = recv_close(&mut clients[1]).await;
    assert_eq!(code, 1001);
    eventually(|| disconnects.load(Ordering::SeqCst) == 20).await;
}

#[tokio::test]
async fn a_session_with_a_frame_half_read_does_not_park_and_goes_on_when_it_completes() {
    let config = Config::default().park_idle_after(Some(Duration::from_millis(50)));
    let (melody, _) = echo_hub(config);
    let (addr, parked) = serve(&melody).await;
    let mut raw = Raw::connect(addr).await;
    eventually(|| live_tasks() == parked).await;

    // Half a masked text frame: header, mask and two of five payload bytes.
    let mask = [1u8, 2, 3, 4];
    let payload: Vec<u8> = b"hello"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&payload);
    use tokio::io::AsyncWriteExt;
    let parks = melody.stats().parks;
    raw.stream.write_all(&frame[..8]).await.unwrap();
    // Woken by the half frame, the session has its task again; six park checks later it
    // still has it (and the half frame). On wall time: this checks that nothing happens.
    eventually(|| live_tasks() == parked + 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live_tasks(), parked + 1);
    assert_eq!(melody.stats().parks, parks);

    raw.stream.write_all(&frame[8..]).await.unwrap();
    let (first, echoed) = raw.read_whole_frame().await;
    assert_eq!((first, &echoed[..]), (0x81, &b"hello"[..]));
    eventually(|| live_tasks() == parked).await;
}

#[tokio::test(start_paused = true)]
async fn sessions_never_park_when_parking_is_off() {
    let (melody, _) = echo_hub(Config::default().park_idle_after(None));
    let (addr, parked) = serve(&melody).await;
    let mut client = connect(addr).await;
    echo(&mut client, "one").await;
    // Ten seconds: five intervals of the default (2 s), which would have parked it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The session's task, and no alarm clock: nothing ever parked.
    assert_eq!(live_tasks(), parked);
    assert_eq!(melody.stats().parks, 0);
    echo(&mut client, "two").await;
}

/// Parking at every wait on a multi-threaded runtime, while other threads send to the
/// sessions and the clients send to them: every wake races a park, and nothing may be lost,
/// repeated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_racing_parks_are_all_delivered_in_order() {
    const SESSIONS: usize = 20;
    const MESSAGES: usize = 500;
    let config = Config::default()
        .park_idle_after(Some(Duration::ZERO))
        .message_buffer_size(MESSAGES * 3 + 10)
        .max_message_size(64);
    let (melody, _) = echo_hub(config);
    let (addr, _) = serve(&melody).await;
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        clients.push(connect(addr).await);
    }
    eventually(|| melody.all().len() == SESSIONS).await;

    // Two plain threads send to every session (from outside the runtime: a parked session's
    // task is spawned from the waking thread).
    let senders: Vec<_> = (0..2)
        .map(|thread| {
            let melody = melody.clone();
            std::thread::spawn(move || {
                for n in 0..MESSAGES {
                    for session in melody.all().sessions() {
                        session.send(format!("t{thread} {n}")).unwrap();
                    }
                    if n % 50 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    // Meanwhile each client sends its own numbered messages, echoed back.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut next = [0usize; 3];
                for n in 0..MESSAGES {
                    client.send(Message::text(format!("t2 {n}"))).await.unwrap();
                }
                while next.iter().any(|&n| n < MESSAGES) {
                    let message = recv_text(&mut client).await;
                    let (stream, n) = message.split_once(' ').unwrap();
                    let stream = usize::from(stream.as_bytes()[1] - b'0');
                    let n: usize = n.parse().unwrap();
                    assert_eq!(n, next[stream], "stream {stream} out of order");
                    next[stream] += 1;
                }
                client
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    for reader in readers {
        let mut client = tokio::time::timeout(WAIT, reader)
            .await
            .expect("every message arrives")
            .unwrap();
        assert_silent(&mut client, Duration::from_millis(50)).await;
    }
    // The sessions did park and wake all along (not merely once each).
    assert!(
        melody.stats().parks > SESSIONS as u64,
        "{} parks",
        melody.stats().parks
    );
}

/// A runtime dropped with parked sessions ends them as it ends tasks: each one's disconnect
/// handler runs (on the reaper's thread: the runtime's drivers wake them as they shut down,
/// and the task that would take them back is refused) and it leaves the hub.
#[test]
fn a_runtime_dropped_with_parked_sessions_ends_them() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let melody = Melody::new();
    let (ended, disconnects) = std::sync::mpsc::channel();
    let ended = std::sync::Mutex::new(ended);
    melody.on_disconnect(move |session| {
        let _ = ended.lock().unwrap().send(session.id());
    });
    let clients = runtime.block_on(async {
        let (addr, parked) = serve(&melody).await;
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(connect(addr).await);
        }
        eventually(|| live_tasks() == parked).await;
        assert_eq!(melody.stats().parked, 5);
        clients
    });
    assert!(disconnects.try_recv().is_err());
    drop(runtime);
    for _ in 0..5 {
        disconnects
            .recv_timeout(Duration::from_secs(10))
            .expect("every parked session ends");
    }
    assert_eq!(melody.all().len(), 0);
    assert_eq!(melody.stats().parked, 0);
    drop(clients);
}

/// Under concurrent message handling a session does not park while handler calls are in
/// flight (the bound of 64 calls at once lives in a semaphore a parked session does not keep):
/// with 64 calls waiting, park checks come and go without a park, and the 65th message waits
/// for a call to end.
#[tokio::test]
async fn handlers_in_flight_keep_the_bound_across_park_checks() {
    let config = Config::default()
        .concurrent_message_handling(true)
        .park_idle_after(Some(Duration::from_millis(20)));
    let melody = Melody::with_config(config);
    let started = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (counter, gate) = (started.clone(), release.clone());
    melody.on_text_async(move |session, _| {
        let (counter, gate) = (counter.clone(), gate.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            let _ = session.send("done");
        }
    });
    let (addr, _) = serve(&melody).await;
    let mut client = connect(addr).await;
    for n in 0..64 {
        client.send(Message::text(format!("{n}"))).await.unwrap();
    }
    eventually(|| started.load(Ordering::SeqCst) == 64).await;
    let parks = melody.stats().parks;
    // Many park checks (20 ms each) with 64 calls in flight: the session does not park.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        melody.stats().parks,
        parks,
        "parked with handler calls in flight"
    );
    client.send(Message::text("64")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(started.load(Ordering::SeqCst), 64, "a 65th call started");

    release.add_permits(1);
    assert_eq!(recv_text(&mut client).await, "done");
    eventually(|| started.load(Ordering::SeqCst) == 65).await;
    release.add_permits(64);
    for _ in 0..64 {
        assert_eq!(recv_text(&mut client).await, "done");
    }
}

/// A session with steady traffic never parks, even when each park check finds it between two
/// messages: it parks only after a whole interval without traffic. On wall time; the interval
/// (250 ms) is far above any pause of the client between two messages (2 ms).
#[tokio::test]
async fn a_busy_session_does_not_park_between_messages() {
    let config = Config::default().park_idle_after(Some(Duration::from_millis(250)));
    let (melody, _) = echo_hub(config);
    let (addr, _) = serve(&melody).await;
    let mut client = connect(addr).await;
    echo(&mut client, "first").await;
    let parks = melody.stats().parks;
    // 1.5 s of traffic, a message every 2 ms: six park checks, each between messages.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    while tokio::time::Instant::now() < until {
        tick.tick().await;
        echo(&mut client, "again").await;
    }
    assert_eq!(melody.stats().parks, parks, "a busy session parked");
    // Then quiet: it parks.
    eventually(|| melody.stats().parked == 1).await;
}

/// Pings and pongs are not traffic: a session woken for its ping parks again as soon as the
/// pong is in, rather than staying awake for a park interval (2 s; all sessions that connected
/// together ping together, and would all hold a task at once). On wall time, short periods.
#[tokio::test]
async fn a_session_woken_for_a_ping_parks_again_once_the_pong_is_in() {
    let config = Config::default()
        .ping_period(Duration::from_secs(1))
        .pong_wait(Duration::from_secs(10));
    let (melody, _) = echo_hub(config);
    let (addr, _) = serve(&melody).await;
    let mut client = connect(addr).await;
    eventually(|| melody.stats().parked == 1).await;
    let parks = melody.stats().parks;

    let ping = next_frame(&mut client).await;
    assert!(ping.is_ping(), "expected a ping, got {ping:?}");
    let pinged = tokio::time::Instant::now();
    // Polled again, the client sends its pong; nothing else comes before the next ping.
    let _ = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    // Parked after the ping, then again after the pong; the next ping is due 1 s after this one.
    eventually(|| melody.stats().parks >= parks + 2 && melody.stats().parked == 1).await;
    assert!(
        pinged.elapsed() < Duration::from_millis(900),
        "parked again {:?} after the ping",
        pinged.elapsed()
    );
    // And it is alive: a message still comes back.
    echo(&mut client, "still here").await;
}

/// A session that parks at every wait, with a frame half read (it cannot park), must still
/// wait rather than try to park again and again: on a current-thread runtime such a loop
/// would freeze every task, the test's own timer included. The runtime runs on a thread of its
/// own, so that a frozen one fails this test instead of hanging it.
#[test]
fn a_session_that_cannot_park_waits_instead_of_trying_again() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (melody, _) = echo_hub(Config::default().park_idle_after(Some(Duration::ZERO)));
            let (addr, _) = serve(&melody).await;
            let mut raw = Raw::connect(addr).await;
            let mask = [9u8, 8, 7, 6];
            let mut frame = vec![0x81, 0x80 | 5];
            frame.extend_from_slice(&mask);
            frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            use tokio::io::AsyncWriteExt;
            raw.stream.write_all(&frame[..8]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw.stream.write_all(&frame[8..]).await.unwrap();
            let (first, echoed) = raw.read_whole_frame().await;
            assert_eq!((first, &echoed[..]), (0x81, &b"hello"[..]));
        });
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime went on (a session trying to park in a loop would freeze it)");
}

/// Parked sessions are listed on the hub's alarm clock for their next ping; one that ends
/// leaves it at once (not at its deadline an hour later), and the clock's task ends with the
/// last of them.
#[tokio::test(start_paused = true)]
async fn sessions_that_end_leave_the_alarm_clock_at_once() {
    let config = Config::default()
        .ping_period(Duration::from_secs(3600))
        .pong_wait(Duration::from_secs(4000));
    let (melody, disconnects) = echo_hub(config);
    let (addr, parked) = serve(&melody).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(addr).await);
    }
    eventually(|| live_tasks() == parked).await;
    for mut client in clients {
        client.close().await.unwrap();
    }
    eventually(|| disconnects.load(Ordering::SeqCst) == 5).await;
    // No session listed: no clock either (within `eventually`'s bound, not in an hour).
    eventually(|| live_tasks() == parked - 1).await;
}

/// The alarm clock runs on the runtime of a session that parks: when that runtime goes away,
/// the next session to park (on another runtime) starts it again there, and gets its pings.
#[test]
fn the_alarm_clock_starts_again_on_another_runtime() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let config = Config::default()
        .ping_period(Duration::from_millis(200))
        .pong_wait(Duration::from_secs(5));
    let (melody, _) = echo_hub(config);
    let first = runtime();
    let client = first.block_on(async {
        let (addr, _) = serve(&melody).await;
        let client = connect(addr).await;
        eventually(|| melody.stats().parked == 1).await;
        client
    });
    drop(first);
    drop(client);
    runtime().block_on(async {
        let (addr, _) = serve(&melody).await;
        let mut client = connect(addr).await;
        eventually(|| melody.stats().parked == 1).await;
        let ping = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a ping from the parked session")
            .expect("the connection is open")
            .unwrap();
        assert!(ping.is_ping(), "expected a ping, got {ping:?}");
    });
}

/// A hub serving sessions on two runtimes: the alarm clock runs on the first runtime whose
/// session parked. When that runtime goes away, the clock moves to the runtime of a session
/// still parked, whose pings then go on.
#[test]
fn the_alarm_clock_moves_when_its_runtime_goes_away() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let config = Config::default()
        .ping_period(Duration::from_millis(1500))
        .pong_wait(Duration::from_secs(10));
    let (melody, _) = echo_hub(config);
    let (first, second) = (runtime(), runtime());
    let first_client = first.block_on(async {
        let (addr, _) = serve(&melody).await;
        let client = connect(addr).await;
        eventually(|| melody.stats().parked == 1).await;
        client
    });
    let mut client = second.block_on(async {
        let (addr, _) = serve(&melody).await;
        let client = connect(addr).await;
        eventually(|| melody.stats().parked == 2).await;
        client
    });
    // Its session parked on the second runtime while the clock ran on the first.
    drop(first);
    drop(first_client);
    second.block_on(async {
        let ping = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a ping from the session parked on the second runtime")
            .expect("the connection is open")
            .unwrap();
        assert!(ping.is_ping(), "expected a ping, got {ping:?}");
    });
}

//! Unit tests of the relay's copy loop, the path where splicing is impossible (the
//! spliced path is exercised end to end by the integration tests): exact counts, the
//! half-close passed on, and pacing under a bandwidth limit.

use super::*;
use tokio::net::TcpListener;

async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let near = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (far, _) = listener.accept().await.unwrap();
    (near, far)
}

/// The copy loop is what runs where splicing cannot; it must count exactly and pass
/// the half-close on just like the spliced path the integration tests exercise.
#[tokio::test]
async fn copy_loop_counts_and_passes_the_half_close_on() {
    let (mut writer, mut from) = socket_pair().await;
    let (mut to, mut reader) = socket_pair().await;
    let (total, last_activity) = (AtomicU64::new(0), AtomicU64::new(0));
    let heard = AtomicU64::new(0);
    let on_bytes = |_, bytes| {
        heard.fetch_add(bytes, Ordering::Relaxed);
    };
    let meter = Meter::new(
        Direction::ToClient,
        &total,
        &last_activity,
        Instant::now(),
        &on_bytes,
    );
    let payload = vec![5u8; 3 * TUNNEL_CHUNK + 11];
    let send = async {
        writer.write_all(&payload).await?;
        writer.shutdown().await
    };
    let relay = copy(&mut from, &mut to, &meter);
    let mut received = Vec::new();
    let (sent, relayed, read) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(send, relay, reader.read_to_end(&mut received))
    })
    .await
    .unwrap();
    sent.unwrap();
    relayed.unwrap();
    read.unwrap();
    assert_eq!(received, payload);
    assert_eq!(total.load(Ordering::Relaxed), payload.len() as u64);
    assert_eq!(heard.load(Ordering::Relaxed), payload.len() as u64);
}

/// A throttled copy loop keeps to the user's rate: over in-memory pipes, on paused
/// time, three seconds' worth after the burst takes three seconds.
#[tokio::test(start_paused = true)]
async fn copy_loop_keeps_to_the_pacer() {
    use crate::limits::{LimitSettings, Limiter, Seat};
    use crate::stats::Stats;

    let rate = 1024 * 1024;
    let limiter = Limiter::new(std::sync::Arc::new(Stats::default()));
    let settings = LimitSettings {
        bandwidth: Some(rate),
        ..LimitSettings::default()
    };
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let pacer = limiter
        .grant(&mut Seat::default(), None, client, &settings)
        .ok()
        .and_then(|grant| grant.pacer)
        .expect("a pacer");
    let (mut writer, mut from) = tokio::io::duplex(64 * 1024);
    let (mut to, mut reader) = tokio::io::duplex(64 * 1024);
    let (total, last_activity) = (AtomicU64::new(0), AtomicU64::new(0));
    let meter = Meter::new(
        Direction::ToClient,
        &total,
        &last_activity,
        Instant::now(),
        &|_, _| {},
    )
    .paced(Some(&pacer));
    let payload = vec![9u8; 3 * rate as usize + pacer.chunk()];
    let send = async {
        writer.write_all(&payload).await?;
        writer.shutdown().await
    };
    let started = tokio::time::Instant::now();
    let mut received = Vec::new();
    let relay = async {
        tokio::join!(
            send,
            copy(&mut from, &mut to, &meter),
            reader.read_to_end(&mut received)
        )
    };
    let (sent, relayed, read) = tokio::time::timeout(Duration::from_secs(600), relay)
        .await
        .expect("the paced copy stalled");
    let took = started.elapsed().as_secs_f64();
    sent.unwrap();
    relayed.unwrap();
    read.unwrap();
    assert_eq!(received.len(), payload.len());
    assert!((took - 3.0).abs() < 0.03, "{took} s");
}

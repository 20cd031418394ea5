//! A DNS server for the resolver's tests, on 127.0.0.1 (UDP, ephemeral port): it answers
//! A and AAAA queries for the names it is given, with their TTL, after each name's delay;
//! a known name without an address of the asked type gets an empty answer (NODATA), any
//! other name `NXDOMAIN`; both negative answers carry an SOA whose TTL is the server's
//! negative TTL (RFC 2308 §5). It records every query so tests can count them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
/// QR (a response), AA (authoritative), RD, RA.
const FLAGS_ANSWER: u16 = 0x8580;
const HEADER_LEN: usize = 12;

#[derive(Debug, Clone)]
struct Name {
    addrs: Vec<IpAddr>,
    ttl: u32,
    delay: Duration,
}

#[derive(Default)]
struct Zone {
    names: HashMap<String, Name>,
    negative_ttl: u32,
    /// Every query as (name in lower case, type, message ID), in arrival order.
    queries: Vec<(String, u16, u16)>,
}

/// The running server; stopped on drop.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// A server whose negative answers carry `negative_ttl` seconds.
    pub async fn start(negative_ttl: u32) -> DnsServer {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone {
            negative_ttl,
            ..Zone::default()
        }));
        let state = Arc::clone(&zone);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let Some((reply, delay)) = answer(&state, &buf[..len]) else {
                    continue;
                };
                let socket = Arc::clone(&socket);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&reply, from).await;
                });
            }
        });
        DnsServer { addr, zone, task }
    }

    /// `--dns-server` for this server.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// Answers `name` with `addrs` (each A or AAAA by its family) and `ttl` seconds.
    pub fn add(&self, name: &str, addrs: &[&str], ttl: u32) {
        self.add_slow(name, addrs, ttl, Duration::ZERO);
    }

    /// Like [`add`](Self::add), each answer sent `delay` after its query.
    pub fn add_slow(&self, name: &str, addrs: &[&str], ttl: u32, delay: Duration) {
        let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let entry = Name { addrs, ttl, delay };
        let mut zone = self.zone.lock().unwrap();
        zone.names.insert(name.to_ascii_lowercase(), entry);
    }

    /// How many A queries for `name` arrived (the resolver asks A and AAAA together, so
    /// this counts lookups that reached the server); a query sent again over UDP while
    /// unanswered keeps its message ID and counts once.
    pub fn lookups(&self, name: &str) -> usize {
        let zone = self.zone.lock().unwrap();
        let name = name.to_ascii_lowercase();
        let ids: HashSet<u16> = zone
            .queries
            .iter()
            .filter(|(asked, kind, _)| *asked == name && *kind == TYPE_A)
            .map(|(_, _, id)| *id)
            .collect();
        ids.len()
    }
}

/// The reply to one query and when to send it; `None` for what is not a query.
fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<(Vec<u8>, Duration)> {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return None;
    }
    let (name, end) = read_name(query, HEADER_LEN)?;
    let kind = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = &query[HEADER_LEN..end + 4];
    let mut zone = zone.lock().unwrap();
    let id = u16::from_be_bytes([query[0], query[1]]);
    zone.queries.push((name.clone(), kind, id));
    let found = zone.names.get(&name).cloned();
    let mut reply = Vec::with_capacity(128);
    reply.extend_from_slice(&query[..2]);
    let (records, delay, rcode) = match &found {
        Some(entry) => {
            let records: Vec<Vec<u8>> = entry
                .addrs
                .iter()
                .filter_map(|ip| address_record(ip, kind, entry.ttl))
                .collect();
            (records, entry.delay, 0)
        }
        None => (Vec::new(), Duration::ZERO, RCODE_NXDOMAIN),
    };
    let negative = records.is_empty();
    reply.extend_from_slice(&(FLAGS_ANSWER | rcode).to_be_bytes());
    for count in [1, records.len(), usize::from(negative), 0] {
        reply.extend_from_slice(&(count as u16).to_be_bytes());
    }
    reply.extend_from_slice(question);
    for record in records {
        reply.extend_from_slice(&record);
    }
    if negative {
        reply.extend_from_slice(&soa(zone.negative_ttl));
    }
    Some((reply, delay))
}

/// The question's name (lower case, no trailing dot) and the offset after it.
fn read_name(message: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            return Some((labels.join(".").to_ascii_lowercase(), at));
        }
        labels.push(String::from_utf8_lossy(message.get(at..at + len)?).into_owned());
        at += len;
    }
}

/// An A or AAAA record for the question's name (a pointer to offset 12), if `ip` is of
/// the type asked.
fn address_record(ip: &IpAddr, kind: u16, ttl: u32) -> Option<Vec<u8>> {
    let data = match (ip, kind) {
        (IpAddr::V4(v4), TYPE_A) => v4.octets().to_vec(),
        (IpAddr::V6(v6), TYPE_AAAA) => v6.octets().to_vec(),
        _ => return None,
    };
    let mut record = vec![0xC0, 0x0C];
    record.extend_from_slice(&kind.to_be_bytes());
    record.extend_from_slice(&CLASS_IN.to_be_bytes());
    record.extend_from_slice(&ttl.to_be_bytes());
    record.extend_from_slice(&(data.len() as u16).to_be_bytes());
    record.extend_from_slice(&data);
    Some(record)
}

/// The root's SOA, whose TTL and minimum are the negative TTL.
fn soa(ttl: u32) -> Vec<u8> {
    let mut data = vec![0, 0]; // MNAME and RNAME: the root
    for field in [1, 3600, 600, 86_400, ttl] {
        data.extend_from_slice(&u32::to_be_bytes(field));
    }
    let mut record = vec![0]; // owner: the root
    record.extend_from_slice(&TYPE_SOA.to_be_bytes());
    record.extend_from_slice(&CLASS_IN.to_be_bytes());
    record.extend_from_slice(&ttl.to_be_bytes());
    record.extend_from_slice(&(data.len() as u16).to_be_bytes());
    record.extend_from_slice(&data);
    record
}

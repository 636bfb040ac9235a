//! `groundtruth handoffs`: connections between recorded processes, paired from both
//! ends, and summed per pair of services.
//!
//! A handoff is one TCP connection, one unix stream connection, or one UDP exchange.
//! When both ends were recorded (loopback, or two tracked services on one host):
//! - TCP: the client's Open (direction outbound) and the server's Open (inbound) have
//!   the same 4-tuple; they are paired, the nearest in time when a 4-tuple was reused;
//! - unix: the client's Open and the server's Open name the same socket address, and
//!   the server's peer pid (SO_PEERCRED) is the client's pid;
//! - UDP: the flows of two sockets that sent to each other (one's source is the other's
//!   destination) are one exchange; the side that sent first is the client.
//!
//! A connection with only one end recorded is still listed, the other side named by its
//! address.

use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
};
use trail::{event::direction, Endpoint, Event};

/// One side of a handoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Side {
    /// Service label, or `None` when this end was not recorded.
    pub service: Option<String>,
    pub pid: Option<u32>,
    pub name: Option<String>,
    pub ip: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handoff {
    pub time_ns: i64,
    pub protocol: String,
    pub client: Side,
    pub server: Side,
    /// Payload bytes client to server and back, from whichever end's Close was
    /// recorded; `None` while the connection was still open when recording stopped.
    pub bytes_to_server: Option<u64>,
    pub bytes_to_client: Option<u64>,
    /// Unix sockets: the socket's address (path, or `@name`).
    pub path: Option<String>,
}

type Tuple = (String, u16, String, u16);

fn tuple(e: &Event) -> Option<Tuple> {
    let n = e.network.as_ref()?;
    let (s, d) = (n.src.as_ref()?, n.dst.as_ref()?);
    Some((s.ip.clone(), s.port, d.ip.clone(), d.port))
}

fn side(e: Option<&Event>, ep: &Endpoint) -> Side {
    Side {
        service: e.map(|e| e.groundtruth.service.to_string()),
        pid: e.map(|e| e.actor.pid),
        name: e.map(|e| e.actor.name.to_string()),
        ip: ep.ip.clone(),
        port: ep.port,
    }
}

/// Every TCP connection opened in the trail, paired where both ends are there.
pub fn handoffs(events: &[Event]) -> Vec<Handoff> {
    let opens = |dir: i32| {
        events.iter().filter(move |e| {
            e.class_uid == 4001
                && e.activity_name == "Open"
                && e.network.as_ref().is_some_and(|n| n.direction_id == dir)
        })
    };
    // Close events by connection id: the bytes of an Open's connection.
    let closes: HashMap<u64, &Event> = events
        .iter()
        .filter(|e| e.class_uid == 4001 && matches!(&*e.activity_name, "Close" | "Reset"))
        .filter_map(|e| Some((e.groundtruth.connection_id?, e)))
        .collect();
    let bytes = |open: &Event| {
        open.groundtruth
            .connection_id
            .and_then(|id| closes.get(&id))
            .and_then(|c| c.network.as_ref())
            .map(|n| (n.bytes_out, n.bytes_in))
    };
    let mut servers: HashMap<Tuple, Vec<&Event>> = HashMap::new();
    for e in opens(direction::INBOUND) {
        if let Some(t) = tuple(e) {
            servers.entry(t).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for c in opens(direction::OUTBOUND) {
        let Some(t) = tuple(c) else { continue };
        let n = c.network.as_ref().unwrap();
        let s = servers.get_mut(&t).and_then(|v| {
            let i = (0..v.len()).min_by_key(|&i| (v[i].time_ns - c.time_ns).abs())?;
            Some(v.swap_remove(i))
        });
        let b = bytes(c).or_else(|| s.and_then(bytes));
        out.push(Handoff {
            time_ns: c.time_ns,
            protocol: n.protocol_name.to_string(),
            client: side(Some(c), n.src.as_ref().unwrap()),
            server: side(s, n.dst.as_ref().unwrap()),
            bytes_to_server: b.and_then(|b| b.0),
            bytes_to_client: b.and_then(|b| b.1),
            path: None,
        });
    }
    // Accepted connections whose client was not recorded.
    for s in servers.into_values().flatten() {
        let n = s.network.as_ref().unwrap();
        let b = bytes(s);
        out.push(Handoff {
            time_ns: s.time_ns,
            protocol: n.protocol_name.to_string(),
            client: side(None, n.src.as_ref().unwrap()),
            server: side(Some(s), n.dst.as_ref().unwrap()),
            bytes_to_server: b.and_then(|b| b.0),
            bytes_to_client: b.and_then(|b| b.1),
            path: None,
        });
    }
    unix_handoffs(events, &bytes, &mut out);
    udp_handoffs(events, &mut out);
    out.sort_by_key(|h| h.time_ns);
    out
}

/// The bytes (to server, to client) of the connection an Open belongs to.
type BytesOf<'a> = dyn Fn(&Event) -> Option<(Option<u64>, Option<u64>)> + 'a;

fn unix_side(e: Option<&Event>) -> Side {
    Side {
        service: e.map(|e| e.groundtruth.service.to_string()),
        pid: e.map(|e| e.actor.pid),
        name: e.map(|e| e.actor.name.to_string()),
        ip: String::new(),
        port: 0,
    }
}

/// Unix stream connections: a client Open and the server Open on the same address whose
/// peer pid is the client's.
fn unix_handoffs(events: &[Event], bytes: &BytesOf, out: &mut Vec<Handoff>) {
    let unix_opens = |dir: i32| {
        events.iter().filter(move |e| {
            e.class_uid == 4001
                && e.activity_name == "Open"
                && e.network
                    .as_ref()
                    .is_some_and(|n| n.protocol_name == "unix" && n.direction_id == dir)
        })
    };
    let mut servers: Vec<&Event> = unix_opens(direction::INBOUND).collect();
    for c in unix_opens(direction::OUTBOUND) {
        let i = (0..servers.len())
            .filter(|&i| {
                servers[i].groundtruth.socket_path == c.groundtruth.socket_path
                    && servers[i].groundtruth.peer_pid == Some(c.actor.pid)
            })
            .min_by_key(|&i| (servers[i].time_ns - c.time_ns).abs());
        let s = i.map(|i| servers.swap_remove(i));
        let b = bytes(c).or_else(|| s.and_then(bytes));
        out.push(Handoff {
            time_ns: c.time_ns,
            protocol: "unix".into(),
            client: unix_side(Some(c)),
            server: unix_side(s),
            bytes_to_server: b.and_then(|b| b.0),
            bytes_to_client: b.and_then(|b| b.1),
            path: c.groundtruth.socket_path.clone(),
        });
    }
    for s in servers {
        let b = bytes(s);
        out.push(Handoff {
            time_ns: s.time_ns,
            protocol: "unix".into(),
            client: unix_side(None),
            server: unix_side(Some(s)),
            bytes_to_server: b.and_then(|b| b.0),
            bytes_to_client: b.and_then(|b| b.1),
            path: s.groundtruth.socket_path.clone(),
        });
    }
}

/// A UDP flow summed over its Traffic rows.
struct Flow<'a> {
    first: &'a Event,
    start: i64,
    out: u64,
    inb: u64,
}

/// UDP exchanges: two recorded flows with swapped ends are one; the side that sent
/// first is the client.
fn udp_handoffs(events: &[Event], out: &mut Vec<Handoff>) {
    let mut flows: BTreeMap<(u32, Tuple), Flow> = BTreeMap::new();
    for e in events.iter().filter(|e| {
        e.class_uid == 4001
            && e.activity_name == "Traffic"
            && e.network.as_ref().is_some_and(|n| n.protocol_name == "udp")
    }) {
        let Some(t) = tuple(e) else { continue };
        let n = e.network.as_ref().unwrap();
        let f = flows.entry((e.actor.pid, t)).or_insert(Flow {
            first: e,
            start: e.start_time_ns.unwrap_or(e.time_ns),
            out: 0,
            inb: 0,
        });
        f.out += n.bytes_out.unwrap_or(0);
        f.inb += n.bytes_in.unwrap_or(0);
        f.start = f.start.min(e.start_time_ns.unwrap_or(e.time_ns));
    }
    let mut used = std::collections::BTreeSet::new();
    let keys: Vec<(u32, Tuple)> = flows.keys().cloned().collect();
    for k in &keys {
        if used.contains(k) {
            continue;
        }
        used.insert(k.clone());
        let f = &flows[k];
        let (a, b) = (&k.1, (k.1 .2.clone(), k.1 .3, k.1 .0.clone(), k.1 .1));
        let peer = keys
            .iter()
            .find(|p| !used.contains(*p) && p.1 == b)
            .cloned();
        if let Some(p) = &peer {
            used.insert(p.clone());
        }
        let g = peer.as_ref().map(|p| &flows[p]);
        let n = f.first.network.as_ref().unwrap();
        // Client: the side that sent first (direction 2); with both ends, the earlier.
        let f_is_client = match g {
            Some(g) => f.start <= g.start,
            None => n.direction_id == direction::OUTBOUND,
        };
        let ep_local = Endpoint {
            ip: a.0.clone(),
            port: a.1,
        };
        let ep_remote = Endpoint {
            ip: a.2.clone(),
            port: a.3,
        };
        let (client, server, to_server, to_client, time) = if f_is_client {
            (
                side(Some(f.first), &ep_local),
                side(g.map(|g| g.first), &ep_remote),
                f.out,
                f.inb,
                f.start,
            )
        } else {
            (
                side(g.map(|g| g.first), &ep_remote),
                side(Some(f.first), &ep_local),
                f.inb,
                f.out,
                g.map_or(f.start, |g| g.start),
            )
        };
        out.push(Handoff {
            time_ns: time,
            protocol: "udp".into(),
            client,
            server,
            bytes_to_server: Some(to_server),
            bytes_to_client: Some(to_client),
            path: None,
        });
    }
}

/// Handoffs summed per (client service, server service, server port, protocol).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub client: String,
    pub server: String,
    pub port: u16,
    /// Unix sockets: the socket's address.
    pub path: Option<String>,
    pub protocol: String,
    pub connections: u64,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// Connections whose bytes are unknown (still open when recording stopped).
    pub open_at_end: u64,
}

fn name(s: &Side) -> String {
    s.service.clone().unwrap_or_else(|| {
        if s.ip.is_empty() {
            "(unrecorded)".to_string()
        } else {
            format!("(unrecorded {})", s.ip)
        }
    })
}

/// Where the server listens: a port, or a unix socket's address.
fn place(p: &Pair) -> String {
    p.path.clone().unwrap_or_else(|| p.port.to_string())
}

pub fn pairs(h: &[Handoff]) -> Vec<Pair> {
    type Key = (String, String, u16, String, Option<String>);
    let mut m: BTreeMap<Key, Pair> = BTreeMap::new();
    for x in h {
        let key = (
            name(&x.client),
            name(&x.server),
            x.server.port,
            x.protocol.clone(),
            x.path.clone(),
        );
        let p = m.entry(key.clone()).or_insert_with(|| Pair {
            client: key.0,
            server: key.1,
            port: key.2,
            protocol: key.3,
            path: key.4,
            ..Default::default()
        });
        p.connections += 1;
        match (x.bytes_to_server, x.bytes_to_client) {
            (Some(a), Some(b)) => {
                p.bytes_to_server += a;
                p.bytes_to_client += b;
            }
            _ => p.open_at_end += 1,
        }
    }
    m.into_values().collect()
}

pub fn print_table(out: &mut impl Write, pairs: &[Pair]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:<20} {:>6} {:<5} {:>6} {:>14} {:>14}",
        "CLIENT", "SERVER", "PORT", "PROTO", "CONNS", "BYTES C->S", "BYTES S->C"
    )?;
    for p in pairs {
        writeln!(
            out,
            "{:<20} {:<20} {:>6} {:<5} {:>6} {:>14} {:>14}{}",
            p.client,
            p.server,
            place(p),
            p.protocol,
            p.connections,
            p.bytes_to_server,
            p.bytes_to_client,
            if p.open_at_end > 0 {
                format!("  ({} still open at the end)", p.open_at_end)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

pub fn print_jsonl(out: &mut impl Write, h: &[Handoff]) -> std::io::Result<()> {
    for x in h {
        serde_json::to_writer(&mut *out, x).map_err(std::io::Error::other)?;
        writeln!(out)?;
    }
    Ok(())
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A Graphviz digraph: services as nodes, one edge per (client, server, port).
pub fn print_dot(out: &mut impl Write, pairs: &[Pair]) -> std::io::Result<()> {
    writeln!(out, "digraph handoffs {{")?;
    writeln!(out, "  rankdir=LR;")?;
    writeln!(out, "  node [shape=box, fontname=\"Helvetica\"];")?;
    let mut nodes: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.client.as_str(), p.server.as_str()])
        .collect();
    nodes.sort();
    nodes.dedup();
    for n in nodes {
        let style = if n.starts_with("(unrecorded") {
            ", style=dashed"
        } else {
            ""
        };
        writeln!(out, "  {}[label={}{style}];", dot_id(n), dot_id(n))?;
    }
    for p in pairs {
        let label = format!(
            "{}/{} x{}\\n{} B -> / {} B <-",
            p.protocol,
            place(p).replace('"', "\\\""),
            p.connections,
            p.bytes_to_server,
            p.bytes_to_client
        );
        writeln!(
            out,
            "  {} -> {} [label=\"{}\"];",
            dot_id(&p.client),
            dot_id(&p.server),
            label
        )?;
    }
    writeln!(out, "}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use trail::{event::class, Extra, Network};

    fn open(t: i64, svc: &str, pid: u32, dir: i32, conn: u64, sport: u16) -> Event {
        Event {
            time_ns: t,
            class_uid: class::NETWORK_ACTIVITY,
            activity_name: "Open".into(),
            actor: trail::Actor {
                pid,
                name: svc.into(),
                ..Default::default()
            },
            network: Some(Box::new(Network {
                src: Some(Endpoint {
                    ip: "127.0.0.1".into(),
                    port: sport,
                }),
                dst: Some(Endpoint {
                    ip: "127.0.0.1".into(),
                    port: 8080,
                }),
                protocol_name: "tcp".into(),
                direction_id: dir,
                ..Default::default()
            })),
            groundtruth: Extra {
                service: svc.into(),
                connection_id: Some(conn),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn close(of: &Event, up: u64, down: u64) -> Event {
        let mut c = of.clone();
        c.activity_name = "Close".into();
        c.time_ns += 1;
        let n = c.network.as_mut().unwrap();
        n.bytes_out = Some(up);
        n.bytes_in = Some(down);
        c
    }

    #[test]
    fn both_ends_pair_into_one_handoff_and_sum_per_service() {
        let c1 = open(10, "web", 1, direction::OUTBOUND, 1, 5000);
        let s1 = open(11, "db", 2, direction::INBOUND, 2, 5000);
        let c2 = open(20, "web", 1, direction::OUTBOUND, 3, 5001);
        let s2 = open(21, "db", 2, direction::INBOUND, 4, 5001);
        // Accepted from a client that was not recorded.
        let s3 = open(30, "db", 2, direction::INBOUND, 5, 6000);
        let events = vec![
            c1.clone(),
            s1.clone(),
            close(&c1, 10, 20),
            close(&s1, 10, 20),
            c2.clone(),
            s2.clone(),
            close(&s2, 1, 2),
            s3.clone(),
        ];
        let h = handoffs(&events);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].client.pid, Some(1));
        assert_eq!(h[0].server.pid, Some(2));
        assert_eq!(
            (h[0].bytes_to_server, h[0].bytes_to_client),
            (Some(10), Some(20))
        );
        assert_eq!(h[1].bytes_to_server, Some(1), "from the server's close");
        assert_eq!(h[2].client.service, None);
        let p = pairs(&h);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[1].client.as_str(), p[1].server.as_str(), p[1].connections),
            ("web", "db", 2)
        );
        assert_eq!((p[1].bytes_to_server, p[1].bytes_to_client), (11, 22));
        assert_eq!(p[0].client, "(unrecorded 127.0.0.1)");
        assert_eq!(p[0].open_at_end, 1);
        let mut dot = Vec::new();
        print_dot(&mut dot, &p).unwrap();
        let dot = String::from_utf8(dot).unwrap();
        assert!(
            dot.contains("\"web\" -> \"db\" [label=\"tcp/8080 x2"),
            "{dot}"
        );
    }
}

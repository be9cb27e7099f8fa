//! Where tenants go in a cluster: to the live server with the most room, as the servers'
//! last heartbeats report it (`nodes`: the tenants each owns, the bytes of their files, the
//! free disk). Used for new tenants (provisioned here, then handed to that server when it is
//! another), for the tenants of a server that went silent (each live server takes over those
//! the sharing-out gives it), and by a rebalance (where each tenant moved goes).
//!
//! **The rule.** A server with less than [`FULL`] free is full: it gets a tenant only when every
//! server is. Among the others the lowest *load* has the most room: the server's share of the
//! cluster's tenants, plus its share of their bytes, less its share of the free disk (each
//! share 0–1, so the three weigh alike whatever the units). Ties go to the most free disk,
//! then the name, so every server that computes a sharing-out from the same rows gets the
//! same one.

use std::cmp::Ordering;

use crate::Result;
use crate::nodes::Node;

/// Below this much free disk a server is full.
pub const FULL: i64 = 1_000_000_000;

/// One server's room, as its last heartbeat reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    /// The server.
    pub node: String,
    /// The tenants it owns.
    pub tenants: i64,
    /// The bytes of their files.
    pub bytes: i64,
    /// Its free disk.
    pub free_bytes: i64,
}

impl From<&Node> for Room {
    fn from(node: &Node) -> Self {
        Self {
            node: node.name.clone(),
            tenants: node.tenants,
            bytes: node.tenant_bytes,
            free_bytes: node.free_bytes,
        }
    }
}

/// The live servers' rooms; see the module's documentation.
#[derive(Clone, Debug)]
pub struct Rooms(Vec<Room>);

impl Rooms {
    /// The rooms of these servers.
    pub fn new(rooms: Vec<Room>) -> Self {
        Self(rooms)
    }

    /// These rooms less those of the servers `names`.
    pub fn without(mut self, names: &[&str]) -> Self {
        self.0.retain(|r| !names.contains(&r.node.as_str()));
        self
    }

    /// These rooms without one tenant of `node` (of `bytes`): where a tenant of that server
    /// would go, the server's own count not held against it.
    pub fn leaving(mut self, node: &str, bytes: i64) -> Self {
        if let Some(room) = self.0.iter_mut().find(|r| r.node == node) {
            room.tenants = (room.tenants - 1).max(0);
            room.bytes = (room.bytes - bytes).max(0);
            room.free_bytes += bytes;
        }
        self
    }

    /// The server with the most room, if there is one.
    pub fn most_room(&self) -> Option<&str> {
        let totals = self.totals();
        self.0.iter().min_by(|a, b| Self::order(a, b, totals)).map(|r| r.node.as_str())
    }

    /// Where each of these tenants (their bytes) goes, in order: each to the server with the
    /// most room once the ones before it are counted where they went.
    pub fn share_out(mut self, tenants: &[i64]) -> Vec<String> {
        let mut placed = Vec::with_capacity(tenants.len());
        for bytes in tenants {
            let totals = self.totals();
            let Some(room) = self.0.iter_mut().min_by(|a, b| Self::order(a, b, totals)) else { break };
            room.tenants += 1;
            room.bytes += bytes;
            room.free_bytes -= bytes;
            placed.push(room.node.clone());
        }
        placed
    }

    fn totals(&self) -> (f64, f64, f64) {
        let sum = |f: fn(&Room) -> i64| self.0.iter().map(|r| f(r).max(0) as f64).sum::<f64>().max(1.0);
        (sum(|r| r.tenants), sum(|r| r.bytes), sum(|r| r.free_bytes))
    }

    /// `a` before `b` when `a` has more room.
    fn order(a: &Room, b: &Room, (tenants, bytes, free): (f64, f64, f64)) -> Ordering {
        let load = |r: &Room| {
            r.tenants.max(0) as f64 / tenants + r.bytes.max(0) as f64 / bytes
                - r.free_bytes.max(0) as f64 / free
        };
        (a.free_bytes < FULL)
            .cmp(&(b.free_bytes < FULL))
            .then(load(a).total_cmp(&load(b)))
            .then(b.free_bytes.cmp(&a.free_bytes))
            .then(a.node.cmp(&b.node))
    }
}

impl crate::Tenancy {
    /// The rooms of the live servers of this cluster.
    pub async fn rooms(&self) -> Result<Rooms> {
        let nodes = self.nodes().list().await?;
        Ok(Rooms::new(nodes.iter().filter(|(_, live)| *live).map(|(n, _)| Room::from(n)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: i64 = 1_000_000_000;

    fn room(node: &str, tenants: i64, bytes: i64, free_bytes: i64) -> Room {
        Room { node: node.into(), tenants, bytes, free_bytes }
    }

    #[test]
    fn the_server_with_fewer_tenants_bytes_or_more_free_disk_has_more_room() {
        let rooms = Rooms::new(vec![room("n1", 10, 10 * GB, 50 * GB), room("n2", 2, 2 * GB, 50 * GB)]);
        assert_eq!(rooms.most_room(), Some("n2"), "fewer tenants and bytes");
        let rooms = Rooms::new(vec![room("n1", 5, GB, 50 * GB), room("n2", 5, 9 * GB, 50 * GB)]);
        assert_eq!(rooms.most_room(), Some("n1"), "as many tenants, fewer bytes");
        let rooms = Rooms::new(vec![room("n1", 5, GB, 10 * GB), room("n2", 5, GB, 90 * GB)]);
        assert_eq!(rooms.most_room(), Some("n2"), "the same load, more free disk");
        let rooms = Rooms::new(vec![room("n1", 0, 0, GB / 2), room("n2", 100, 90 * GB, 5 * GB)]);
        assert_eq!(rooms.most_room(), Some("n2"), "an empty server with a full disk gets nothing");
        let rooms = Rooms::new(vec![room("n2", 0, 0, 0), room("n1", 0, 0, 0)]);
        assert_eq!(rooms.most_room(), Some("n1"), "all full: the name decides");
        assert_eq!(Rooms::new(Vec::new()).most_room(), None);
        let rooms = Rooms::new(vec![room("n1", 3, 3 * GB, 50 * GB), room("n2", 3, 3 * GB, 50 * GB)]);
        assert_eq!(rooms.clone().leaving("n2", GB).most_room(), Some("n2"), "a tenant of n2 stays");
        assert_eq!(rooms.leaving("n1", GB).most_room(), Some("n1"), "a tenant of n1 stays");
    }

    #[test]
    fn a_sharing_out_evens_the_servers_and_is_the_same_wherever_it_is_computed() {
        let rooms = Rooms::new(vec![
            room("n1", 0, 0, 100 * GB),
            room("n2", 6, 6_000_000, 100 * GB),
            room("n3", 0, 0, 100 * GB),
        ]);
        let placed = rooms.clone().share_out(&[1_000_000; 6]);
        let on = |n: &str| placed.iter().filter(|p| *p == n).count();
        assert_eq!((on("n1"), on("n2"), on("n3")), (3, 0, 3), "{placed:?}");
        assert_eq!(placed, rooms.share_out(&[1_000_000; 6]), "deterministic");
    }
}

//! Concurrent WebSocket connections, per client and in all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::ClientKey;

/// Why a connection slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// The client has its maximum of connections open.
    PerClient,
    /// The server has its maximum open.
    Global,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<ClientKey, u32>,
}

/// Counts open connections. The map holds only clients with at least one open connection, so it
/// is bounded by the global cap.
pub struct ConnectionSlots {
    per_client: u32,
    global: usize,
    counts: Arc<Mutex<Counts>>,
}

/// An open connection's place; released when dropped.
pub struct Slot {
    key: ClientKey,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionSlots {
    /// Slots for `per_client` connections per client and `global` in all.
    pub fn new(per_client: u32, global: usize) -> Self {
        Self {
            per_client,
            global,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `key`, if one is free.
    pub fn acquire(&self, key: ClientKey) -> Result<Slot, SlotRefused> {
        let mut counts = self.counts.lock().unwrap();
        if counts.total >= self.global {
            return Err(SlotRefused::Global);
        }
        let mine = counts.per_client.entry(key).or_insert(0);
        if *mine >= self.per_client {
            return Err(SlotRefused::PerClient);
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            key,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn slots_are_limited_per_client_and_in_all_and_released_on_drop() {
        let slots = ConnectionSlots::new(2, 3);
        let a1 = slots.acquire(key("1.1.1.1")).unwrap();
        let _a2 = slots.acquire(key("1.1.1.1")).unwrap();
        assert_eq!(
            slots.acquire(key("1.1.1.1")).err(),
            Some(SlotRefused::PerClient)
        );
        let _b = slots.acquire(key("2.2.2.2")).unwrap();
        assert_eq!(
            slots.acquire(key("3.3.3.3")).err(),
            Some(SlotRefused::Global)
        );
        drop(a1);
        let _a3 = slots.acquire(key("1.1.1.1")).unwrap();
        assert_eq!(slots.open(), 3);
    }
}

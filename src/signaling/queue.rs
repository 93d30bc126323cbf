//! The bounded queue of messages waiting for one session's socket.
//!
//! A purpose-built single-producer, single-consumer queue rather than `tokio::sync::mpsc`: the
//! tokio channel allocates its slots in blocks of 32 up front (over 1 KiB per connection before
//! any backlog exists), while an idle signaling connection almost never has a message waiting.
//! This one holds a `VecDeque` that is empty, and unallocated, at rest.
//!
//! The queue is bounded twice: by messages and by bytes ([`Weigh`]), so a sender that keeps it
//! just under the message bound with large messages cannot pin more than the byte bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Capacity kept once the queue drains: none. An idle session is the common case, and four
/// kept slots cost every one of them ~150 bytes; a message arriving at an empty queue pays one
/// small allocation instead, a few dozen nanoseconds beside the microseconds of relaying it.
const RETAINED_CAPACITY: usize = 0;

/// What an item costs the queue's byte bound.
pub trait Weigh {
    /// Bytes the item holds.
    fn weight(&self) -> usize;
}

/// A queue's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Items at most.
    pub messages: usize,
    /// Bytes of items at most.
    pub bytes: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    bounds: Bounds,
    /// Set when the receiver must give up (it could not keep up); see [`Sender::kick`].
    kicked: AtomicBool,
}

struct State<T> {
    items: VecDeque<T>,
    /// Weight of `items`.
    bytes: usize,
    closed: bool,
}

/// The hub's end.
pub struct Sender<T>(Arc<Shared<T>>);

/// The session's end.
pub struct Receiver<T>(Arc<Shared<T>>);

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    /// The queue holds its capacity.
    Full,
    /// The receiver is gone.
    Closed,
}

/// What [`Receiver::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<T> {
    /// The sender kicked the receiver out.
    Kicked,
    /// The next message.
    Item(T),
    /// The sender is gone and nothing is left.
    Closed,
}

/// Nothing is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

/// A queue within `bounds`.
pub fn channel<T: Weigh>(bounds: Bounds) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
        }),
        ready: Notify::new(),
        bounds: Bounds {
            messages: bounds.messages.max(1),
            bytes: bounds.bytes,
        },
        kicked: AtomicBool::new(false),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T: Weigh> Shared<T> {
    /// Appends `item` unless that would break a bound or the queue is closed.
    fn push(&self, item: T) -> Result<(), TrySendError> {
        {
            let mut state = self.state.lock().unwrap();
            if state.closed {
                return Err(TrySendError::Closed);
            }
            let weight = item.weight();
            if state.items.len() >= self.bounds.messages || state.bytes + weight > self.bounds.bytes
            {
                return Err(TrySendError::Full);
            }
            state.bytes += weight;
            state.items.push_back(item);
        }
        // A permit is stored if the receiver is not waiting yet, so no wake-up is lost.
        self.ready.notify_one();
        Ok(())
    }
}

impl<T: Weigh> Sender<T> {
    /// Queues `item` unless the queue is full or closed. Never waits.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError> {
        self.0.push(item)
    }
}

impl<T> Sender<T> {
    /// Tells the receiver to give up: [`Receiver::next`] answers [`Event::Kicked`] from now on,
    /// ahead of anything still queued, and [`Receiver::kicked`] completes.
    pub fn kick(&self) {
        self.0.kicked.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().closed = true;
        self.0.ready.notify_one();
    }
}

impl<T: Weigh> Receiver<T> {
    /// Queues an item of the session's own (a direct reply) behind what is waiting, within the
    /// same bounds: a client that sends without reading its answers fills the queue too.
    pub fn push(&self, item: T) -> Result<(), TrySendError> {
        self.0.push(item)
    }
}

impl<T: Weigh> Receiver<T> {
    /// What happens next: a kick, a message, or the end of the queue. One future for all three,
    /// so a waiting session holds one registration, not one per kind of event.
    pub async fn next(&self) -> Event<T> {
        loop {
            // State first, then wait: a wake-up taken by another of this task's futures is
            // harmless, because nothing is decided from the wake-up itself.
            if self.is_kicked() {
                return Event::Kicked;
            }
            match self.try_recv() {
                Ok(item) => return Event::Item(item),
                Err(Empty) if self.0.state.lock().unwrap().closed => return Event::Closed,
                Err(Empty) => self.0.ready.notified().await,
            }
        }
    }

    /// Completes once the sender has called [`Sender::kick`] (at once if it already has).
    pub async fn kicked(&self) {
        while !self.is_kicked() {
            self.0.ready.notified().await;
        }
    }

    /// Whether the sender has called [`Sender::kick`].
    pub fn is_kicked(&self) -> bool {
        self.0.kicked.load(Ordering::Acquire)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&self) -> Result<T, Empty> {
        let mut state = self.0.state.lock().unwrap();
        let item = state.items.pop_front().ok_or(Empty)?;
        state.bytes -= item.weight();
        if state.items.is_empty() && state.items.capacity() > RETAINED_CAPACITY {
            state.items = VecDeque::with_capacity(RETAINED_CAPACITY);
        }
        Ok(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }

    impl Weigh for &str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    impl Weigh for u8 {
        fn weight(&self) -> usize {
            1
        }
    }

    fn bounded(messages: usize) -> Bounds {
        Bounds {
            messages,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_says_so() {
        let (tx, rx) = channel::<u32>(bounded(2));
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full));
        assert_eq!(rx.try_recv(), Ok(1));
        tx.try_send(3).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed));
    }

    #[tokio::test]
    async fn recv_waits_for_a_message_and_ends_when_the_sender_goes() {
        let (tx, rx) = channel::<&str>(bounded(4));
        let waiter = tokio::spawn(async move {
            let first = rx.next().await;
            let second = rx.next().await;
            let end = rx.next().await;
            (first, second, end)
        });
        tokio::task::yield_now().await;
        tx.try_send("a").unwrap();
        tx.try_send("b").unwrap();
        drop(tx);
        assert_eq!(
            waiter.await.unwrap(),
            (Event::Item("a"), Event::Item("b"), Event::Closed)
        );
    }

    #[tokio::test]
    async fn a_kick_is_seen_whether_or_not_the_receiver_was_waiting() {
        let (tx, rx) = channel::<u8>(bounded(4));
        assert!(!rx.is_kicked());
        tx.try_send(1).unwrap();
        tx.kick();
        // The kick goes ahead of what is still queued.
        assert_eq!(rx.next().await, Event::Kicked);
        rx.kicked().await;
        assert!(rx.is_kicked());
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let (tx, rx) = channel::<u32>(bounded(1000));
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(
            rx.0.state.lock().unwrap().items.capacity(),
            RETAINED_CAPACITY
        );
    }

    #[test]
    fn the_byte_bound_holds_whatever_the_message_count() {
        let (tx, rx) = channel::<u32>(Bounds {
            messages: 100,
            bytes: 10,
        });
        tx.try_send(6).unwrap();
        assert_eq!(tx.try_send(5), Err(TrySendError::Full));
        tx.try_send(4).unwrap();
        assert_eq!(rx.push(1), Err(TrySendError::Full));
        assert_eq!(rx.try_recv(), Ok(6));
        rx.push(5).unwrap();
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(4), Ok(5)));
        assert_eq!(rx.0.state.lock().unwrap().bytes, 0);
    }
}

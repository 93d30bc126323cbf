//! PrivyDrop's rooms as its HTTP API sees them: named rooms in the pairing store, with the
//! original's lifetimes. A room exists from `get_room` or `create_room` until its expiry,
//! whether or not anyone is in it; every join pushes the expiry to the full room lifetime, and a
//! room whose last member is gone gets the shorter empty-room lifetime. Who is in a room is the
//! room directory's business, so this works the same with any number of nodes.

use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;

use super::SPACE;
use crate::db::{Millis, Store, StoreError, now_millis};
use crate::signaling::rooms::{RoomDirectory, RoomKey};

/// Four-digit ids tried before falling back to four alphanumerics: the original's 11, enough
/// while fewer than a few thousand rooms live.
pub const DIGIT_ATTEMPTS: usize = 11;

/// Four-alphanumeric ids tried after that (62^4, about 15 million): the original's 50.
pub const ALPHANUMERIC_ATTEMPTS: usize = 50;

/// The lifetimes of rooms.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// From creation, and from every join.
    pub room: Duration,
    /// From the moment the last member is gone.
    pub empty: Duration,
}

/// The named rooms of PrivyDrop's space.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    lifetimes: Lifetimes,
}

/// Ids for `get_room`, in the order to try them: four digits first, then four alphanumerics
/// (leading zeros included), from the thread's CSPRNG (ChaCha, seeded by the operating system):
/// the original used `Math.random`, whose next ids an observer can predict.
pub fn candidate_ids() -> Vec<String> {
    let mut rng = rand::rng();
    let digits = (0..DIGIT_ATTEMPTS).map(|_| format!("{:04}", rng.random_range(0..10_000)));
    let mut ids: Vec<String> = digits.collect();
    for _ in 0..ALPHANUMERIC_ATTEMPTS {
        ids.push(
            (&mut rng)
                .sample_iter(Alphanumeric)
                .take(4)
                .map(char::from)
                .collect(),
        );
    }
    ids
}

fn at(from_now: Duration) -> Millis {
    now_millis().saturating_add(i64::try_from(from_now.as_millis()).unwrap_or(i64::MAX))
}

impl Registry {
    /// Rooms in `store` with these lifetimes.
    pub fn new(store: Store, lifetimes: Lifetimes) -> Self {
        Self { store, lifetimes }
    }

    /// A new room with a generated id (`get_room`); `None` when every candidate was taken.
    pub async fn create_generated(&self) -> Result<Option<String>, StoreError> {
        self.store
            .create_named_room(SPACE, candidate_ids(), at(self.lifetimes.room))
            .await
    }

    /// A new room named `id` (`create_room`); false when a live room has that name.
    pub async fn create(&self, id: &str) -> Result<bool, StoreError> {
        let created = self
            .store
            .create_named_room(SPACE, vec![id.to_owned()], at(self.lifetimes.room))
            .await?;
        Ok(created.is_some())
    }

    /// Whether a live room is named `id`.
    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        self.store.named_room_exists(SPACE, id.to_owned()).await
    }

    /// Someone joined: the room lives the full lifetime from now. False if it had expired.
    pub async fn refresh(&self, id: &str) -> Result<bool, StoreError> {
        self.store
            .set_named_room_expiry(SPACE, id.to_owned(), at(self.lifetimes.room))
            .await
    }

    /// A member left `id`: if nobody is in it any more, it lives only the empty-room lifetime.
    ///
    /// A join may land between the look and the store write; so the room is looked at again
    /// after the write, and if someone is in it by then it gets the full lifetime back. A join
    /// after that second look refreshes the room itself, after this write: either way a room
    /// with a member keeps the full lifetime.
    pub async fn left(&self, rooms: &dyn RoomDirectory, id: &str) {
        let key = RoomKey::new(SPACE, id);
        if let Err(e) = self.expire_if_empty(rooms, &key).await {
            log::warn!(
                "privydrop: setting the lifetime of emptied room {} failed: {e}",
                key.redacted()
            );
        }
    }

    async fn expire_if_empty(
        &self,
        rooms: &dyn RoomDirectory,
        key: &RoomKey,
    ) -> Result<(), String> {
        if occupied(rooms, key).await? {
            return Ok(());
        }
        let id = key.id().to_owned();
        self.store
            .set_named_room_expiry(SPACE, id, at(self.lifetimes.empty))
            .await
            .map_err(|e| e.to_string())?;
        if occupied(rooms, key).await? {
            self.refresh(key.id()).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Whether anyone is in the room.
async fn occupied(rooms: &dyn RoomDirectory, key: &RoomKey) -> Result<bool, String> {
    let summary = rooms.members(key).await.map_err(|e| e.to_string())?;
    Ok(summary.is_some_and(|s| !s.members.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_four_digits_then_four_alphanumerics() {
        let ids = candidate_ids();
        assert_eq!(ids.len(), DIGIT_ATTEMPTS + ALPHANUMERIC_ATTEMPTS);
        for id in &ids[..DIGIT_ATTEMPTS] {
            assert!(
                id.len() == 4 && id.bytes().all(|b| b.is_ascii_digit()),
                "{id}"
            );
        }
        for id in &ids[DIGIT_ATTEMPTS..] {
            assert!(
                id.len() == 4 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                "{id}"
            );
        }
    }

    #[test]
    fn candidates_differ_from_call_to_call() {
        let a = candidate_ids();
        let b = candidate_ids();
        assert_ne!(a, b, "61 ids alike twice in a row: not random");
    }
}

//! Pairing requests as a client makes them: each counted against the client's REST rate and,
//! where it could be a guess at someone's code, its guess budget, in the same step as the store
//! work it guards.
//!
//! [`PairingDesk`] is what the pairing routes call. [`LocalDesk`] composes it from any
//! [`PairingStore`](super::PairingStore) and the limiters of [`Limiters`] (rate, then a guess
//! reservation, the store, then the settlement: four steps, each cheap in one process). A
//! shared backend whose limits and store live in one place does it in one atomic step instead
//! (cluster mode: one Redis script per request, see `cluster::store::RedisDesk`), so a request
//! costs one round trip.

use std::sync::Arc;
use std::time::Duration;

use super::{Acceptance, Accepted, Checked, Created, Creator, Millis, Store, StoreFuture};
use crate::ids::{DeviceId, JoinCode};
use crate::limits::Limiters;
use crate::limits::client::ClientKey;

/// The desk every pairing route shares.
pub type Desk = Arc<dyn PairingDesk>;

/// Whose request it is, and whether it may be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// The client the request counts against.
    pub client: ClientKey,
    /// The request could be a failed guess (an accept, a check, a create with a chosen code):
    /// refused while the client is locked out, counted when it fails.
    pub guess: bool,
}

/// A guarded request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded<T> {
    /// Over the client's REST rate; a token is there after this long.
    RateLimited(Duration),
    /// The client is locked out for guessing (or has its limit of guesses being answered);
    /// retry after this long.
    LockedOut(Duration),
    /// The store's answer.
    Answered {
        /// What the store did.
        outcome: T,
        /// The lock-out this request started, when it was the client's last allowed failed
        /// guess.
        lockout: Option<Duration>,
    },
}

/// The pairing requests. Which outcomes are failed guesses is part of the contract, so every
/// implementation counts the same ones: a create's [`Created::Conflict`] (a chosen code that
/// is live), an accept's [`Accepted::NotFound`] and a check's [`Checked::NotFound`].
pub trait PairingDesk: Send + Sync + 'static {
    /// [`PairingStore::create_pending`](super::PairingStore::create_pending), guarded.
    fn create(
        &self,
        guard: Guard,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Guarded<Created>>;

    /// [`PairingStore::accept`](super::PairingStore::accept), guarded.
    fn accept(
        &self,
        guard: Guard,
        joinid: JoinCode,
        device: DeviceId,
    ) -> StoreFuture<Guarded<Acceptance>>;

    /// [`PairingStore::check`](super::PairingStore::check), guarded.
    fn check(
        &self,
        guard: Guard,
        joinid: JoinCode,
        client1: DeviceId,
    ) -> StoreFuture<Guarded<Checked>>;
}

/// A desk composed of a store and the limiters, one step after the other.
pub struct LocalDesk {
    store: Store,
    limits: Arc<Limiters>,
}

impl LocalDesk {
    /// A desk over `store`, counting against `limits`.
    pub fn new(store: Store, limits: Arc<Limiters>) -> Self {
        Self { store, limits }
    }

    /// Counts the REST rate, reserves a guess if the request may be one, then starts `work`, and
    /// settles the guess as failed when `failed` says so.
    async fn guarded<T>(
        limits: Arc<Limiters>,
        guard: Guard,
        work: impl FnOnce() -> StoreFuture<T>,
        failed: impl FnOnce(&T) -> bool,
    ) -> Result<Guarded<T>, super::StoreError> {
        if let Err(wait) = limits.rest().check(guard.client).await {
            return Ok(Guarded::RateLimited(wait));
        }
        let ticket = if guard.guess {
            match limits.reserve_guess(guard.client).await {
                Ok(ticket) => Some(ticket),
                Err(wait) => return Ok(Guarded::LockedOut(wait)),
            }
        } else {
            None
        };
        let outcome = work().await?;
        let lockout = match ticket {
            Some(ticket) if failed(&outcome) => ticket.failed().await,
            Some(ticket) => {
                ticket.succeeded();
                None
            }
            None => None,
        };
        Ok(Guarded::Answered { outcome, lockout })
    }
}

impl PairingDesk for LocalDesk {
    fn create(
        &self,
        guard: Guard,
        joinid: Option<JoinCode>,
        creator: Creator,
        exp: Millis,
    ) -> StoreFuture<Guarded<Created>> {
        let store = self.store.clone();
        let work = move || store.create_pending(joinid, creator, exp);
        Box::pin(Self::guarded(self.limits.clone(), guard, work, |c| {
            matches!(c, Created::Conflict)
        }))
    }

    fn accept(
        &self,
        guard: Guard,
        joinid: JoinCode,
        device: DeviceId,
    ) -> StoreFuture<Guarded<Acceptance>> {
        let store = self.store.clone();
        let work = move || store.accept(joinid, device);
        Box::pin(Self::guarded(self.limits.clone(), guard, work, |a| {
            a.outcome == Accepted::NotFound
        }))
    }

    fn check(
        &self,
        guard: Guard,
        joinid: JoinCode,
        client1: DeviceId,
    ) -> StoreFuture<Guarded<Checked>> {
        let store = self.store.clone();
        let work = move || store.check(joinid, client1);
        Box::pin(Self::guarded(self.limits.clone(), guard, work, |c| {
            *c == Checked::NotFound
        }))
    }
}

//! Identifiers and small value types shared by the whole ledger.

use std::fmt;

/// Milliseconds on the caller's clock (Unix milliseconds in the server, virtual time in
/// the simulator).
pub type Millis = u64;

macro_rules! index_id {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            /// The position of this item in the ledger's table.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

index_id!(
    /// A traffic class, by its position in the ledger's class table.
    ClassId,
    u16
);
index_id!(
    /// A pool, by its position in the ledger's pool table.
    PoolId,
    u32
);
index_id!(
    /// A flow, by its position in the ledger's flow table.
    FlowId,
    u32
);

/// A granted lease. Ids are never reused, also across restarts (the journal keeps the
/// high-water mark), so a stale id can never release somebody else's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

/// A waiting (or ended) ticket. Shares the id sequence with leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TicketId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

impl std::str::FromStr for LeaseId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('L').and_then(|n| n.parse().ok()).map(LeaseId).ok_or(())
    }
}

impl std::str::FromStr for TicketId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.strip_prefix('T').and_then(|n| n.parse().ok()).map(TicketId).ok_or(())
    }
}

/// Units of one pool that a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolUnits {
    /// The pool.
    pub pool: PoolId,
    /// Units in that pool (at least 1).
    pub units: u32,
}

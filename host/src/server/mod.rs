//! The Redis-facing server: what a client's TCP connection talks to.
//!
//! [`protocol`] is the only code that touches client bytes: it cuts requests out of the read
//! buffer (multibulk and inline, with Redis's limits and error texts) and encodes replies for
//! RESP2 or RESP3. Everything above it sees argument vectors and [`protocol::Response`] values.

pub mod protocol;

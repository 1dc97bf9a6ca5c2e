//! SPDY/3.1 framing. Lands in the next commits.

pub(crate) const UPGRADE_TOKEN: &str = "SPDY/3.1";

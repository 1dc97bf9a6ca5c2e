//! What a box is attached to — its network, published ports and mounts — as the listings and
//! `inspect` show them (Docker's `Ports`, `Networks`, `Mounts`, `NetworkSettings`).

use crate::boxes::BoxRecord;
use crate::network::BoxNet;
use crate::volumes::MountSpec;

use super::{Engine, EngineError};

/// A box's network attachment and mounts, as recorded at create (or `network connect`).
#[derive(Clone, Debug)]
pub struct BoxAttachments {
    /// Mode, network, address, aliases and published ports.
    pub net: BoxNet,
    /// `-v` / `--mount` entries.
    pub mounts: Vec<MountSpec>,
}

impl Engine {
    /// The network and mounts of `rec`.
    ///
    /// # Errors
    /// A malformed `net.json` or mounts file in the box's directory.
    pub fn attachments(&self, rec: &BoxRecord) -> Result<BoxAttachments, EngineError> {
        let dir = self.boxes.box_dir(&rec.id);
        Ok(BoxAttachments {
            net: BoxNet::load(&dir)?,
            mounts: crate::volumes::load_mounts(&dir)?,
        })
    }
}

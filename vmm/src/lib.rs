//! One MicroVM: the QEMU engine, boot assets, the accelerator choice, host capabilities and the
//! host side of the guest channel.
//!
//! See [`design`] for why the engine looks the way it does and the figures behind each choice.

pub mod accel;
pub mod assets;
pub mod balloon;
pub mod clock;
pub mod copy;
pub mod cpio;
pub mod design;
pub mod diagnose;
pub mod disk;
pub mod file_id;
pub mod fs;
pub mod host;
pub mod host_pages;
mod initrd_memo;
pub mod layer;
pub mod memory;
pub mod module_signature;
pub mod module_trim;
pub mod net;
pub mod netns;
pub mod passt;
pub mod pod_image;
pub mod proto;
pub mod qemu;
pub mod qmp;
pub mod snp;
pub mod tcg;
pub mod template;

pub use qemu::{BootInfo, Machine, StartError, Vm, VmConfig};

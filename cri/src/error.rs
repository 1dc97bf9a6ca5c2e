//! One mapping from engine errors to gRPC status codes, so kubelet can tell "not there"
//! from "refused" from "broken".

use std::error::Error as StdError;

use a3s_image::cosign::VerifyError;
use a3s_image::pull::TransferError;
use a3s_image::StoreError;
use a3s_runtime::disk::DiskError;
use a3s_runtime::engine::{is_verdict, EngineError};
use a3s_runtime::pods::PodError;
use tonic::{Code, Status};

/// The message of `e` with every cause, `: `-joined (gRPC carries one string): the
/// runtime's own joiner, so the CRI says what the engine's audit says.
pub(crate) use a3s_runtime::pods::tee::chain;

/// The gRPC status for an engine error: the code from the first cause that decides it.
pub(crate) fn status(e: &EngineError) -> Status {
    Status::new(code(e), chain(e))
}

fn code(e: &EngineError) -> Code {
    match e {
        EngineError::ImageRefused { .. } => return Code::PermissionDenied,
        EngineError::PodUnsupported(_) => return Code::Unimplemented,
        EngineError::Pod(PodError::NotFound(_)) => return Code::NotFound,
        EngineError::Pod(PodError::Ambiguous(_)) => return Code::InvalidArgument,
        EngineError::Pod(PodError::ContainerNotFound(_)) => return Code::NotFound,
        EngineError::Pod(PodError::WrongState(_)) => return Code::FailedPrecondition,
        EngineError::Pod(PodError::ExecTimeout(_)) => return Code::DeadlineExceeded,
        EngineError::Pod(PodError::Invalid(_)) => return Code::InvalidArgument,
        EngineError::Pod(PodError::Denied(_)) => return Code::PermissionDenied,
        _ => {}
    }
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e.cause());
    while let Some(c) = cur {
        if let Some(s) = c.downcast_ref::<StoreError>() {
            if matches!(s, StoreError::NotFound { .. }) {
                return Code::NotFound;
            }
        } else if let Some(t) = c.downcast_ref::<TransferError>() {
            if let TransferError::Verify(v) = t {
                if is_verdict(v) {
                    return Code::PermissionDenied;
                }
            }
        } else if let Some(v) = c.downcast_ref::<VerifyError>() {
            if is_verdict(v) {
                return Code::PermissionDenied;
            }
        } else if let Some(DiskError::ImageInUse { .. }) = c.downcast_ref::<DiskError>() {
            return Code::FailedPrecondition;
        }
        cur = c.source();
    }
    Code::Internal
}

/// A blocking engine call that panicked or was cancelled.
pub(crate) fn join(e: &tokio::task::JoinError) -> Status {
    Status::internal(format!("the engine task failed: {e}"))
}

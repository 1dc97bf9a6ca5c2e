//! The three CRI streaming requests, as plain structs mirroring the CRI v1 messages, and their
//! validation (the same rules as kubelet's `validateExecRequest`/`validateAttachRequest`).

/// CRI `ExecRequest`: run `cmd` in a container with the selected streams.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// Container to run the command in.
    pub container_id: String,
    /// Command and its arguments; must not be empty.
    pub cmd: Vec<String>,
    /// Run the command on a terminal (stdout and stderr are then one stream).
    pub tty: bool,
    /// Stream the client's stdin to the command.
    pub stdin: bool,
    /// Stream the command's stdout to the client.
    pub stdout: bool,
    /// Stream the command's stderr to the client; must be false with `tty`.
    pub stderr: bool,
}

/// CRI `AttachRequest`: connect to the main process of a running container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachRequest {
    /// Container to attach to.
    pub container_id: String,
    /// Stream the client's stdin to the process.
    pub stdin: bool,
    /// The container runs on a terminal.
    pub tty: bool,
    /// Stream the process's stdout to the client.
    pub stdout: bool,
    /// Stream the process's stderr to the client; must be false with `tty`.
    pub stderr: bool,
}

/// CRI `PortForwardRequest`: forward connections to ports in a pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortForwardRequest {
    /// Pod sandbox whose ports are forwarded.
    pub pod_sandbox_id: String,
    /// Ports the client may open. Empty allows any port, as in kubelet; when not empty, a stream
    /// for any other port is refused.
    pub port: Vec<i32>,
}

/// Why a streaming request was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request itself is malformed (the CRI server answers `InvalidArgument`).
    #[error("invalid streaming request: {0}")]
    Invalid(&'static str),
    /// Too many requests are waiting for their client (the CRI server answers
    /// `ResourceExhausted`); the client should retry later.
    #[error("too many streaming requests in flight (limit {limit}); retry later")]
    TooManyInFlight {
        /// The configured limit.
        limit: usize,
    },
}

pub(crate) fn validate_stdio(
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), RequestError> {
    if tty && stderr {
        return Err(RequestError::Invalid(
            "tty and stderr cannot both be true (a terminal merges stderr into stdout)",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(RequestError::Invalid(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    Ok(())
}

impl ExecRequest {
    pub(crate) fn validate(&self) -> Result<(), RequestError> {
        if self.container_id.is_empty() {
            return Err(RequestError::Invalid("container_id is empty"));
        }
        if self.cmd.is_empty() {
            return Err(RequestError::Invalid("cmd is empty"));
        }
        validate_stdio(self.tty, self.stdin, self.stdout, self.stderr)
    }
}

impl AttachRequest {
    pub(crate) fn validate(&self) -> Result<(), RequestError> {
        if self.container_id.is_empty() {
            return Err(RequestError::Invalid("container_id is empty"));
        }
        validate_stdio(self.tty, self.stdin, self.stdout, self.stderr)
    }
}

impl PortForwardRequest {
    pub(crate) fn validate(&self) -> Result<(), RequestError> {
        if self.pod_sandbox_id.is_empty() {
            return Err(RequestError::Invalid("pod_sandbox_id is empty"));
        }
        if self.port.iter().any(|p| !(1..=65535).contains(p)) {
            return Err(RequestError::Invalid("port must be between 1 and 65535"));
        }
        Ok(())
    }

    /// Whether a stream for `port` may be opened under this request.
    pub(crate) fn allows(&self, port: u16) -> bool {
        self.port.is_empty() || self.port.contains(&i32::from(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_tty_with_stderr() {
        let req = ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert!(matches!(req.validate(), Err(RequestError::Invalid(m)) if m.contains("tty")));
    }

    #[test]
    fn rejects_request_without_streams() {
        let req = AttachRequest {
            container_id: "c".into(),
            ..Default::default()
        };
        assert!(req.validate().is_err());
    }

    #[test]
    fn rejects_empty_command_and_bad_ports() {
        let exec = ExecRequest {
            container_id: "c".into(),
            stdout: true,
            ..Default::default()
        };
        assert!(exec.validate().is_err());
        let pf = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![0],
        };
        assert!(pf.validate().is_err());
        let pf = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80],
        };
        assert!(pf.validate().is_ok());
        assert!(pf.allows(80));
        assert!(!pf.allows(81));
    }
}

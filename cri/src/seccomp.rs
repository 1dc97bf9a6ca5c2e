//! Seccomp profiles of pod containers: CRI's `seccomp` (or the deprecated
//! `seccomp_profile_path`) → the [`SeccompProfile`] guest-init compiles and installs.
//!
//! - `Unconfined`, an empty path, or a privileged container: no filter.
//! - `RuntimeDefault` (`runtime/default`, `docker/default`): [`runtime_default`], a
//!   default-deny profile in the spirit of Docker's and containerd's: every syscall of the
//!   architecture except those that reach outside the container (kernel modules, keyrings,
//!   mounts and namespaces, clocks, reboot, ...), most of them allowed again when the
//!   container holds the capability that governs them. Syscalls the table does not know
//!   (newer kernels') are refused: it fails closed.
//! - `Localhost` (`localhost/<path>`): a profile file on the node in the OCI / Docker JSON
//!   form, read (at most [`MAX_PROFILE_BYTES`]) when the container is created.

use std::io::Read;

use a3s_vmm::proto::{SeccompAction, SeccompArg, SeccompOp, SeccompProfile, SeccompRule};
use k8s_cri::v1 as cri;
use serde::Deserialize;
use tonic::Status;

/// The largest profile file read (Docker's default profile is about 20 KiB).
pub(crate) const MAX_PROFILE_BYTES: u64 = 1024 * 1024;

const EPERM: u16 = 1;
const ENOSYS: u16 = 38;

/// Syscalls the default profile refuses, each with the capability that allows it again
/// (`None`: refused whatever the capabilities).
const DENIED: &[(&str, Option<&str>)] = &[
    // Kernel modules and kexec.
    ("init_module", Some("CAP_SYS_MODULE")),
    ("finit_module", Some("CAP_SYS_MODULE")),
    ("delete_module", Some("CAP_SYS_MODULE")),
    ("create_module", None),
    ("get_kernel_syms", None),
    ("query_module", None),
    ("kexec_load", Some("CAP_SYS_BOOT")),
    ("kexec_file_load", Some("CAP_SYS_BOOT")),
    ("reboot", Some("CAP_SYS_BOOT")),
    // Keyrings are not namespaced.
    ("add_key", None),
    ("keyctl", None),
    ("request_key", None),
    // Mounts, namespaces, the root.
    ("mount", Some("CAP_SYS_ADMIN")),
    ("umount", Some("CAP_SYS_ADMIN")),
    ("umount2", Some("CAP_SYS_ADMIN")),
    ("mount_setattr", Some("CAP_SYS_ADMIN")),
    ("move_mount", Some("CAP_SYS_ADMIN")),
    ("open_tree", Some("CAP_SYS_ADMIN")),
    ("fsopen", Some("CAP_SYS_ADMIN")),
    ("fsconfig", Some("CAP_SYS_ADMIN")),
    ("fsmount", Some("CAP_SYS_ADMIN")),
    ("fspick", Some("CAP_SYS_ADMIN")),
    ("pivot_root", Some("CAP_SYS_ADMIN")),
    ("setns", Some("CAP_SYS_ADMIN")),
    ("unshare", Some("CAP_SYS_ADMIN")),
    ("swapon", Some("CAP_SYS_ADMIN")),
    ("swapoff", Some("CAP_SYS_ADMIN")),
    ("quotactl", Some("CAP_SYS_ADMIN")),
    ("quotactl_fd", Some("CAP_SYS_ADMIN")),
    ("lookup_dcookie", Some("CAP_SYS_ADMIN")),
    ("fanotify_init", Some("CAP_SYS_ADMIN")),
    ("bpf", Some("CAP_SYS_ADMIN")),
    ("perf_event_open", Some("CAP_SYS_ADMIN")),
    ("open_by_handle_at", Some("CAP_DAC_READ_SEARCH")),
    ("name_to_handle_at", Some("CAP_DAC_READ_SEARCH")),
    // Clocks.
    ("settimeofday", Some("CAP_SYS_TIME")),
    ("clock_settime", Some("CAP_SYS_TIME")),
    ("clock_adjtime", Some("CAP_SYS_TIME")),
    ("adjtimex", Some("CAP_SYS_TIME")),
    ("stime", Some("CAP_SYS_TIME")),
    // Other processes' memory, the kernel's log, I/O ports, accounting, NUMA policy.
    ("process_vm_readv", Some("CAP_SYS_PTRACE")),
    ("process_vm_writev", Some("CAP_SYS_PTRACE")),
    ("kcmp", Some("CAP_SYS_PTRACE")),
    ("syslog", Some("CAP_SYSLOG")),
    ("ioperm", Some("CAP_SYS_RAWIO")),
    ("iopl", Some("CAP_SYS_RAWIO")),
    ("acct", Some("CAP_SYS_PACCT")),
    ("vhangup", Some("CAP_SYS_TTY_CONFIG")),
    ("mbind", Some("CAP_SYS_NICE")),
    ("set_mempolicy", Some("CAP_SYS_NICE")),
    ("move_pages", Some("CAP_SYS_NICE")),
    ("migrate_pages", Some("CAP_SYS_NICE")),
    // Obsolete or a large attack surface for no container's need.
    ("nfsservctl", None),
    ("uselib", None),
    ("ustat", None),
    ("_sysctl", None),
    ("sysfs", None),
    ("userfaultfd", Some("CAP_SYS_PTRACE")),
    ("io_uring_setup", None),
    ("io_uring_enter", None),
    ("io_uring_register", None),
];

/// clone(2)'s namespace flags: refused in the default profile without `CAP_SYS_ADMIN`.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The profile `RuntimeDefault` stands for, for a container holding `caps`.
pub(crate) fn runtime_default(caps: &[String]) -> SeccompProfile {
    let holds = |c: &str| caps.iter().any(|h| h == c);
    let admin = holds("CAP_SYS_ADMIN");
    let refused = |name: &str| {
        DENIED
            .iter()
            .any(|(n, cap)| *n == name && !cap.is_some_and(&holds))
            // Without CAP_SYS_ADMIN clone is allowed only without namespace flags (below) and
            // clone3, whose flags a filter cannot read, says ENOSYS so libc falls back to clone.
            || (!admin && (name == "clone" || name == "clone3"))
            // One personality is allowed (below), not all.
            || name == "personality"
    };
    let names = syscalls::Sysno::iter()
        .map(|s| s.name())
        .filter(|n| !refused(n))
        .map(str::to_owned)
        .collect();
    let mut syscalls = vec![SeccompRule {
        names,
        action: SeccompAction::Allow,
        args: Vec::new(),
    }];
    // personality(2): Linux, Linux with UNAME26 or ADDR_NO_RANDOMIZE, and the query.
    for persona in [0x0, 0x0002_0000, 0x0004_0000, 0xffff_ffff] {
        syscalls.push(SeccompRule {
            names: vec!["personality".into()],
            action: SeccompAction::Allow,
            args: vec![SeccompArg {
                index: 0,
                value: persona,
                value_two: 0,
                op: SeccompOp::Eq,
            }],
        });
    }
    if !admin {
        syscalls.push(SeccompRule {
            names: vec!["clone".into()],
            action: SeccompAction::Allow,
            args: vec![SeccompArg {
                index: 0,
                value: 0,
                value_two: CLONE_NAMESPACES,
                op: SeccompOp::MaskedEq,
            }],
        });
        syscalls.push(SeccompRule {
            names: vec!["clone3".into()],
            action: SeccompAction::Errno(ENOSYS),
            args: Vec::new(),
        });
    }
    SeccompProfile {
        default_action: SeccompAction::Errno(EPERM),
        syscalls,
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("security_context.{field}: {why}"))
}

/// The filter of a container with capabilities `caps` (`None`: privileged, which runs
/// unconfined as with containerd).
///
/// # Errors
/// `InvalidArgument` naming the field: an unknown profile type or path form, a localhost
/// profile that cannot be read or is not a seccomp profile this runtime can apply.
pub(crate) fn container_profile(
    sc: &cri::LinuxContainerSecurityContext,
    caps: Option<&[String]>,
) -> Result<Option<SeccompProfile>, Status> {
    let Some(caps) = caps else {
        return Ok(None);
    };
    if let Some(p) = &sc.seccomp {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(Some(runtime_default(caps)))
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => Ok(None),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                localhost(&p.localhost_ref, caps, "seccomp.localhost_ref").map(Some)
            }
            Err(_) => Err(invalid(
                "seccomp.profile_type",
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.as_str();
    match path {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(runtime_default(caps))),
        _ => match path.strip_prefix("localhost/") {
            Some(file) => localhost(file, caps, "seccomp_profile_path").map(Some),
            None => Err(invalid(
                "seccomp_profile_path",
                format!("{path:?}: give runtime/default, unconfined or localhost/<absolute path>"),
            )),
        },
    }
}

/// A profile file in the OCI runtime spec's `linux.seccomp` form (Docker's extras
/// `includes`/`excludes` by capability and architecture are honoured).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u16>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Vec<SyscallFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallFile {
    #[serde(default)]
    names: Vec<String>,
    /// Docker's older single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u16>,
    #[serde(default)]
    args: Vec<ArgFile>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgFile {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Default, Deserialize)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

fn native_arch(a: &str) -> bool {
    let a = a.trim_start_matches("SCMP_ARCH_").to_ascii_lowercase();
    match std::env::consts::ARCH {
        "x86_64" => a == "x86_64" || a == "amd64",
        "aarch64" => a == "aarch64" || a == "arm64",
        other => a == other,
    }
}

fn cap_name(c: &str) -> String {
    let c = c.to_ascii_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

fn action_of(name: &str, errno: Option<u16>) -> Result<SeccompAction, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" | "SCMP_ACT_NOTIFY" => {
            return Err(format!(
                "{name} is not supported (no tracer or notify agent runs in a pod VM)"
            ))
        }
        other => return Err(format!("unknown action {other:?}")),
    })
}

fn op_of(name: &str) -> Result<SeccompOp, String> {
    Ok(match name {
        "SCMP_CMP_NE" => SeccompOp::Ne,
        "SCMP_CMP_LT" => SeccompOp::Lt,
        "SCMP_CMP_LE" => SeccompOp::Le,
        "SCMP_CMP_EQ" => SeccompOp::Eq,
        "SCMP_CMP_GE" => SeccompOp::Ge,
        "SCMP_CMP_GT" => SeccompOp::Gt,
        "SCMP_CMP_MASKED_EQ" => SeccompOp::MaskedEq,
        other => return Err(format!("unknown comparison {other:?}")),
    })
}

/// Parses a profile file's text for a container holding `caps`.
pub(crate) fn parse_profile(text: &str, caps: &[String]) -> Result<SeccompProfile, String> {
    let file: ProfileFile =
        serde_json::from_str(text).map_err(|e| format!("not a seccomp profile: {e}"))?;
    if file.listener_path.is_some_and(|p| !p.is_empty()) {
        return Err("listenerPath (a notify agent) is not supported".into());
    }
    let default_action = action_of(&file.default_action, file.default_errno_ret)
        .map_err(|e| format!("defaultAction: {e}"))?;
    let holds = |c: &String| caps.contains(&cap_name(c));
    let mut syscalls = Vec::new();
    for (i, s) in file.syscalls.into_iter().enumerate() {
        let applies = s.includes.caps.iter().all(holds)
            && (s.includes.arches.is_empty() || s.includes.arches.iter().any(|a| native_arch(a)))
            && !s.excludes.caps.iter().any(holds)
            && !s.excludes.arches.iter().any(|a| native_arch(a));
        if !applies {
            continue;
        }
        let at = |e: String| format!("syscalls[{i}]: {e}");
        let action = action_of(&s.action, s.errno_ret).map_err(at)?;
        let args = s
            .args
            .iter()
            .map(|a| {
                if a.index > 5 {
                    return Err(at(format!("argument index {} (0 to 5)", a.index)));
                }
                Ok(SeccompArg {
                    index: a.index,
                    value: a.value,
                    value_two: a.value_two,
                    op: op_of(&a.op).map_err(at)?,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut names = s.names;
        names.extend(s.name);
        if names.is_empty() {
            return Err(at("no syscall names".into()));
        }
        syscalls.push(SeccompRule {
            names,
            action,
            args,
        });
    }
    Ok(SeccompProfile {
        default_action,
        syscalls,
    })
}

/// Reads and parses the profile at `path` on this node.
fn localhost(path: &str, caps: &[String], field: &str) -> Result<SeccompProfile, Status> {
    if !path.starts_with('/') {
        return Err(invalid(field, format!("{path:?} must be an absolute path")));
    }
    let read = || -> Result<String, String> {
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut text = String::new();
        f.take(MAX_PROFILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(format!("larger than {MAX_PROFILE_BYTES} bytes"));
        }
        Ok(text)
    };
    let text = read().map_err(|e| invalid(field, format!("{path}: {e}")))?;
    parse_profile(&text, caps).map_err(|e| invalid(field, format!("{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    fn allowed(p: &SeccompProfile, name: &str) -> bool {
        p.syscalls.iter().any(|r| {
            r.action == SeccompAction::Allow
                && r.args.is_empty()
                && r.names.iter().any(|n| n == name)
        })
    }

    #[test]
    fn the_default_profile_refuses_by_default_and_lets_capabilities_allow_their_calls() {
        let plain = runtime_default(&caps(&["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]));
        assert_eq!(plain.default_action, SeccompAction::Errno(EPERM));
        for ok in [
            "read",
            "write",
            "execve",
            "openat",
            "sethostname",
            "chmod",
            "ptrace",
        ] {
            assert!(allowed(&plain, ok), "{ok}");
        }
        for refused in [
            "mount",
            "unshare",
            "keyctl",
            "init_module",
            "reboot",
            "clone",
            "bpf",
        ] {
            assert!(!allowed(&plain, refused), "{refused}");
        }
        // clone without namespace flags; clone3 answers ENOSYS.
        assert!(plain.syscalls.iter().any(|r| r.names == ["clone"]
            && r.args[0].op == SeccompOp::MaskedEq
            && r.args[0].value_two & libc::CLONE_NEWPID as u64 != 0));
        assert!(plain
            .syscalls
            .iter()
            .any(|r| r.names == ["clone3"] && r.action == SeccompAction::Errno(ENOSYS)));
        let admin = runtime_default(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_BOOT"]));
        for ok in ["mount", "unshare", "setns", "clone", "clone3", "reboot"] {
            assert!(allowed(&admin, ok), "{ok}");
        }
        for refused in ["keyctl", "init_module", "create_module"] {
            assert!(!allowed(&admin, refused), "{refused}");
        }
    }

    #[test]
    fn profile_files_follow_the_oci_form_with_dockers_filters() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 448, "valueTwo": 4095, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS", "excludes": {"caps": ["SYS_BOOT"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_PTRACE"]}}
            ]
        }"#;
        let p = parse_profile(text, &caps(&["CAP_SYS_BOOT"])).unwrap();
        assert_eq!(p.default_action, SeccompAction::Allow);
        assert_eq!(p.syscalls.len(), 2, "{p:?}");
        assert_eq!(p.syscalls[0].action, SeccompAction::Errno(1));
        assert_eq!(p.syscalls[1].names, ["mkdir"]);
        assert_eq!(p.syscalls[1].action, SeccompAction::Errno(13));
        assert_eq!(p.syscalls[1].args[0].op, SeccompOp::MaskedEq);
        assert_eq!(p.syscalls[1].args[0].value_two, 4095);
        let p = parse_profile(text, &caps(&["CAP_SYS_PTRACE"])).unwrap();
        assert_eq!(p.syscalls.len(), 4);
        assert_eq!(p.syscalls[2].action, SeccompAction::KillProcess);
    }

    #[test]
    fn bad_profiles_are_refused_naming_what_is_wrong() {
        let e = |t: &str| parse_profile(t, &[]).unwrap_err();
        assert!(e("[]").contains("not a seccomp profile"));
        assert!(e(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(e(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).contains("not supported"));
        assert!(
            e(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"}"#)
                .contains("listenerPath")
        );
        assert!(e(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#
        )
        .contains("syscalls[0]: argument index 6"));
        assert!(e(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "op": "LIKE"}]}]}"#
        )
        .contains("LIKE"));
        assert!(e(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#
        )
        .contains("no syscall names"));
    }

    #[test]
    fn the_context_picks_the_profile_and_a_privileged_container_runs_unconfined() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("block-chmod.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let ctx =
            |t: cri::security_profile::ProfileType, r: &str| cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile {
                    profile_type: t as i32,
                    localhost_ref: r.into(),
                }),
                ..Default::default()
            };
        use cri::security_profile::ProfileType as T;
        let c = caps(&["CAP_CHOWN"]);
        let of = |sc: &cri::LinuxContainerSecurityContext| container_profile(sc, Some(&c));
        assert!(of(&ctx(T::Unconfined, "")).unwrap().is_none());
        assert_eq!(
            of(&ctx(T::RuntimeDefault, "")).unwrap().unwrap(),
            runtime_default(&c)
        );
        let local = of(&ctx(T::Localhost, file.to_str().unwrap()))
            .unwrap()
            .unwrap();
        assert_eq!(local.syscalls[0].names, ["chmod"]);
        // Nothing given: unconfined, as CRI defines it.
        assert!(of(&cri::LinuxContainerSecurityContext::default())
            .unwrap()
            .is_none());
        // Privileged: no filter even with a profile.
        assert!(container_profile(&ctx(T::RuntimeDefault, ""), None)
            .unwrap()
            .is_none());
        let missing = of(&ctx(T::Localhost, "/nonexistent/p.json")).unwrap_err();
        assert!(
            missing
                .message()
                .contains("seccomp.localhost_ref: /nonexistent/p.json"),
            "{missing:?}"
        );
        let relative = of(&ctx(T::Localhost, "p.json")).unwrap_err();
        assert!(relative.message().contains("absolute"), "{relative:?}");
        let big = dir.path().join("big.json");
        std::fs::write(
            &big,
            vec![b' '; usize::try_from(MAX_PROFILE_BYTES).unwrap() + 1],
        )
        .unwrap();
        let e = of(&ctx(T::Localhost, big.to_str().unwrap())).unwrap_err();
        assert!(e.message().contains("larger than"), "{e:?}");
        #[allow(deprecated)]
        let path = |p: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: p.into(),
            ..Default::default()
        };
        assert!(of(&path("runtime/default")).unwrap().is_some());
        assert!(of(&path("unconfined")).unwrap().is_none());
        let local = of(&path(&format!("localhost/{}", file.display())))
            .unwrap()
            .unwrap();
        assert_eq!(local.syscalls.len(), 1);
        assert!(of(&path("weird"))
            .unwrap_err()
            .message()
            .contains("runtime/default"));
    }
}

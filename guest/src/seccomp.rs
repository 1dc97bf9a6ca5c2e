//! Seccomp filters of pod containers: a [`SeccompProfile`] (OCI's rules, syscalls by name)
//! compiled to BPF with `seccompiler`, installed between fork and exec.
//!
//! A `seccompiler` filter has one action for every rule that matches, while a profile gives
//! each rule its own. The kernel runs every installed filter and keeps the most restrictive
//! answer, so a profile becomes a stack: one filter allowing every syscall some rule names
//! (with the rule's argument conditions) and giving the rest the default action, then one
//! filter per other action, answering it for that action's rules and allowing the rest. A
//! syscall no rule names gets the default action; one a rule names gets that rule's action.

use std::collections::BTreeMap;
use std::io;
use std::str::FromStr;

use a3s_vmm::proto::{SeccompAction, SeccompArg, SeccompOp, SeccompProfile};
use seccompiler::{
    BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use syscalls::Sysno;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// A profile's filters, compiled in guest-init and installed by the forked child.
#[derive(Debug, Default)]
pub(crate) struct Filters(Vec<BpfProgram>);

/// The rules for each syscall: `None` matches it whatever its arguments.
type Chains = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn action(a: SeccompAction) -> seccompiler::SeccompAction {
    match a {
        SeccompAction::Allow => seccompiler::SeccompAction::Allow,
        SeccompAction::Errno(e) => seccompiler::SeccompAction::Errno(u32::from(e)),
        SeccompAction::KillProcess => seccompiler::SeccompAction::KillProcess,
        SeccompAction::KillThread => seccompiler::SeccompAction::KillThread,
        SeccompAction::Trap => seccompiler::SeccompAction::Trap,
        SeccompAction::Log => seccompiler::SeccompAction::Log,
    }
}

fn condition(a: &SeccompArg) -> Result<SeccompCondition, String> {
    let op = match a.op {
        SeccompOp::Ne => SeccompCmpOp::Ne,
        SeccompOp::Lt => SeccompCmpOp::Lt,
        SeccompOp::Le => SeccompCmpOp::Le,
        SeccompOp::Eq => SeccompCmpOp::Eq,
        SeccompOp::Ge => SeccompCmpOp::Ge,
        SeccompOp::Gt => SeccompCmpOp::Gt,
        // OCI's MaskedEq: (arg & value_two) == value; seccompiler's carries the mask.
        SeccompOp::MaskedEq => SeccompCmpOp::MaskedEq(a.value_two),
    };
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, a.value)
        .map_err(|e| format!("seccomp argument {}: {e}", a.index))
}

/// Adds a rule's syscalls to `chains`.
fn add(chains: &mut Chains, nrs: &[i64], args: &[SeccompArg]) -> Result<(), String> {
    let rule = if args.is_empty() {
        None
    } else {
        let conds = args.iter().map(condition).collect::<Result<_, _>>()?;
        Some(SeccompRule::new(conds).map_err(|e| format!("seccomp rule: {e}"))?)
    };
    for nr in nrs {
        let entry = chains.entry(*nr).or_insert_with(|| Some(Vec::new()));
        match (&rule, entry.as_mut()) {
            // Unconditional wins over conditional ones.
            (None, _) => *entry = None,
            (Some(r), Some(rules)) => rules.push(r.clone()),
            (Some(_), None) => {}
        }
    }
    Ok(())
}

fn program(
    chains: Chains,
    mismatch: SeccompAction,
    on_match: SeccompAction,
) -> Result<BpfProgram, String> {
    let rules = chains
        .into_iter()
        .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(rules, action(mismatch), action(on_match), ARCH)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))
}

/// Compiles `profile` for this architecture. Names it does not know are skipped (as runc
/// does); a profile left with no filter at all (everything allowed) compiles to none.
pub(crate) fn compile(profile: &SeccompProfile) -> Result<Filters, String> {
    let default = profile.default_action;
    let mut named = Chains::new();
    let mut by_action: Vec<(SeccompAction, Chains)> = Vec::new();
    for rule in &profile.syscalls {
        if rule.action == default {
            continue;
        }
        let nrs: Vec<i64> = rule
            .names
            .iter()
            .filter_map(|n| Sysno::from_str(n).ok())
            .map(|s| i64::from(s.id()))
            .collect();
        add(&mut named, &nrs, &rule.args)?;
        if rule.action != SeccompAction::Allow {
            let at = match by_action.iter().position(|(a, _)| *a == rule.action) {
                Some(i) => i,
                None => {
                    by_action.push((rule.action, Chains::new()));
                    by_action.len() - 1
                }
            };
            add(&mut by_action[at].1, &nrs, &rule.args)?;
        }
    }
    let mut filters = Vec::new();
    if default != SeccompAction::Allow {
        filters.push(program(named, default, SeccompAction::Allow)?);
    }
    for (a, chains) in by_action {
        if !chains.is_empty() {
            filters.push(program(chains, SeccompAction::Allow, a)?);
        }
    }
    Ok(Filters(filters))
}

impl Filters {
    /// Installs the filters on the calling thread. Between fork and exec: only system calls.
    /// No `no_new_privs` is set here (the container's own setting decides it), so this runs
    /// while the process still has `CAP_SYS_ADMIN`, before its credentials are dropped.
    #[allow(unsafe_code)]
    pub(crate) fn install(&self) -> io::Result<()> {
        for prog in &self.0 {
            let fprog = libc::sock_fprog {
                len: u16::try_from(prog.len())
                    .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
                // seccompiler's `sock_filter` is the kernel's layout (repr(C): code, jt, jf, k).
                filter: prog.as_ptr().cast_mut().cast::<libc::sock_filter>(),
            };
            // SAFETY: `fprog` points at a live program for the duration of the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0,
                    std::ptr::addr_of!(fprog),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use a3s_vmm::proto::SeccompRule as Rule;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn rule(names: &[&str], action: SeccompAction) -> Rule {
        Rule {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            action,
            args: Vec::new(),
        }
    }

    /// Runs `sh -c script` under `profile`; its exit code and stderr.
    fn run_under(profile: &SeccompProfile, script: &str) -> (i32, String) {
        let filters = compile(profile).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        // SAFETY: install only makes system calls on the compiled programs.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || filters.install());
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn a_denied_syscall_fails_with_the_errno_and_others_run() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let block_chmod = SeccompProfile {
            default_action: SeccompAction::Allow,
            syscalls: vec![rule(
                &["chmod", "fchmodat", "fchmodat2", "no_such_call"],
                SeccompAction::Errno(1),
            )],
        };
        let (code, err) = run_under(&block_chmod, &format!("chmod 600 {}", f.display()));
        assert_ne!(code, 0);
        assert!(err.contains("Operation not permitted"), "{err}");
        let (code, err) = run_under(
            &block_chmod,
            &format!(
                "cat {} && grep -q '^Seccomp:.*2' /proc/self/status",
                f.display()
            ),
        );
        assert_eq!(code, 0, "{err}");
    }

    #[test]
    fn a_default_deny_profile_allows_only_what_it_names_and_stacks_other_actions() {
        let mut allowed: Vec<&str> = Sysno::iter().map(|s| s.name()).collect();
        allowed.retain(|n| *n != "mkdirat" && *n != "mkdir");
        let profile = SeccompProfile {
            default_action: SeccompAction::Errno(1),
            syscalls: vec![
                Rule {
                    names: allowed.iter().map(|n| (*n).to_owned()).collect(),
                    action: SeccompAction::Allow,
                    args: Vec::new(),
                },
                // Named with another errno: wins over its allow above (most restrictive).
                rule(&["unlinkat", "unlink"], SeccompAction::Errno(38)),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let (code, err) = run_under(&profile, &format!("mkdir {}/d", dir.path().display()));
        assert_ne!(code, 0);
        assert!(err.contains("Operation not permitted"), "{err}");
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let (code, err) = run_under(&profile, &format!("rm {}/f", dir.path().display()));
        assert_ne!(code, 0);
        assert!(err.contains("not implemented"), "{err}");
        let (code, err) = run_under(&profile, "echo ok > /dev/null");
        assert_eq!(code, 0, "{err}");
    }

    #[test]
    fn argument_conditions_narrow_a_rule() {
        // mkdir refused only for mode 0700 (argument 2 of mkdirat, 1 of mkdir).
        let cond = |index| SeccompArg {
            index,
            value: 0o700,
            value_two: 0o7777,
            op: SeccompOp::MaskedEq,
        };
        let profile = SeccompProfile {
            default_action: SeccompAction::Allow,
            syscalls: vec![
                Rule {
                    names: vec!["mkdirat".into()],
                    action: SeccompAction::Errno(1),
                    args: vec![cond(2)],
                },
                Rule {
                    names: vec!["mkdir".into()],
                    action: SeccompAction::Errno(1),
                    args: vec![cond(1)],
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (code, err) = run_under(&profile, &format!("mkdir -m 700 {d}/private"));
        assert_ne!(code, 0);
        assert!(err.contains("Operation not permitted"), "{err}");
        let (code, err) = run_under(&profile, &format!("mkdir -m 755 {d}/open"));
        assert_eq!(code, 0, "{err}");
        // A profile that allows everything installs nothing.
        assert!(compile(&SeccompProfile::default()).unwrap().0.is_empty());
    }
}

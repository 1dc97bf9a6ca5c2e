//! `a3s-box build` (issue 21): Dockerfiles whose RUN steps execute in MicroVMs.
//!
//! The base is the Debian python3 image of `scripts/test-images` (built once and cached, like
//! the real-image tests). Every RUN boots a box, so the tests keep RUN steps few and let each one
//! check several facts (a failed `test` fails the build, and the build's exit code says so).

use std::path::Path;
use std::sync::OnceLock;

use crate::support::{Run, TestEnv};

/// The python3 test image's reference after `load`.
const PY: &str = "localhost/a3s-test/python3:latest";

/// One home for every build test (the base image is loaded once). Tests build in it side by
/// side, as users do: each tags its own images. (They once took turns, which left one of the
/// suite's two test threads idle for the whole module.)
fn env() -> Option<&'static TestEnv> {
    static ENV: OnceLock<Option<TestEnv>> = OnceLock::new();
    ENV.get_or_init(setup).as_ref()
}

/// Builds or finds the python3 image and loads it; `None` (skip, loudly) when the apt mirror is
/// unreachable outside CI.
fn setup() -> Option<TestEnv> {
    crate::support::build_guest_init();
    let images = crate::support::test_images(&["python3"], "the build e2e tests")?;
    let image = images.first().expect("one image line");
    let env = TestEnv::new();
    let r = env.run(&["load", "-i", image["archive"].as_str().unwrap()]);
    assert_eq!(r.code, 0, "load: {}", r.stderr);
    Some(env)
}

fn ok(env: &TestEnv, args: &[&str]) -> Run {
    let r = env.run(args);
    assert_eq!(
        r.code, 0,
        "a3s-box {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r
}

/// A build context with `files` (path → content).
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    d
}

/// Step numbers whose progress says CACHED, and those that ran (`DONE`).
fn cached_and_ran(stderr: &str) -> (Vec<usize>, Vec<usize>) {
    let mut cached = Vec::new();
    let mut ran = Vec::new();
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let Some((n, what)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        if what == "CACHED" {
            cached.push(n);
        } else if what.starts_with("DONE") {
            ran.push(n);
        }
    }
    (cached, ran)
}

const MULTI_STAGE: &str = r#"# syntax and comments are fine
FROM localhost/a3s-test/python3:latest AS build
ARG GREETING=hello
WORKDIR /work
COPY . /ctx/
COPY src/gen.py ./
# The build stage generates a file with python, removes one of the image's files and checks
# that the removal survives into the next step's box (a whiteout in the layer).
RUN python3 gen.py "$GREETING" > /work/out.txt \
 && rm /etc/debian_version \
 && test ! -e /ctx/secret.txt && test -e /ctx/src/gen.py
RUN test ! -e /etc/debian_version && test -s /work/out.txt

FROM localhost/a3s-test/python3:latest
COPY --from=build /work/out.txt /app/
ENV NAME=world
CMD ["python3", "-c", "print(open('/app/out.txt').read().strip())"]
"#;

#[test]
fn a_multi_stage_build_runs_is_cached_and_reruns_only_what_follows_a_changed_file() {
    let Some(env) = env() else { return };
    let ctx = context(&[
        ("Dockerfile", MULTI_STAGE),
        (
            "src/gen.py",
            "import sys\nprint(sys.argv[1] + ' from the build stage')\n",
        ),
        ("secret.txt", "not for the image"),
        ("unused.txt", "1"),
        (".dockerignore", "secret.txt\n"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    let cold = ok(
        env,
        &["build", "-t", "b-multi:1", "-t", "b-multi:alias", dir],
    );
    let (cached, _) = cached_and_ran(&cold.stderr);
    assert!(
        cached.is_empty(),
        "a cold build used the cache: {}",
        cold.stderr
    );
    let digest = cold.stdout.trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{}", cold.stdout);

    let out = ok(env, &["run", "--rm", "b-multi:1"]);
    assert_eq!(out.stdout.trim(), "hello from the build stage");
    let alias = ok(env, &["image", "inspect", "b-multi:alias"]).json()[0].clone();
    assert_eq!(alias["digest"], digest.as_str());

    // Config and history: one layer per filesystem step, empty_layer for the rest.
    let inspect = ok(env, &["image", "inspect", "b-multi:1"]).json()[0].clone();
    let base = ok(env, &["image", "inspect", PY]).json()[0].clone();
    assert_eq!(
        inspect["layers"].as_array().unwrap().len(),
        base["layers"].as_array().unwrap().len() + 1,
        "the final stage adds exactly one layer (COPY --from)"
    );
    assert!(inspect["config"]["env"]
        .as_array()
        .unwrap()
        .contains(&"NAME=world".into()));
    let history = ok(env, &["image", "history", "b-multi:1"]).stdout;
    assert!(
        history.contains("COPY --from=build /work/out.txt /app"),
        "{history}"
    );
    assert!(history.contains("ENV NAME=world"), "{history}");

    // No change: every step after FROM is a cache hit and the digest is the same.
    let again = ok(env, &["build", "-t", "b-multi:1", dir]);
    let (cached, ran) = cached_and_ran(&again.stderr);
    let froms_and_args: Vec<usize> = again
        .stderr
        .lines()
        .filter(|l| l.contains("] FROM ") || l.contains("] ARG "))
        .filter_map(|l| l[1..].split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(
        ran, froms_and_args,
        "only FROM/ARG ran again: {}",
        again.stderr
    );
    assert_eq!(cached.len(), 8, "{}", again.stderr);
    assert_eq!(again.stdout.trim(), digest);

    // Changing the copied file reruns that COPY and what follows, not what precedes it.
    std::fs::write(
        ctx.path().join("src/gen.py"),
        "import sys\nprint(sys.argv[1] + ' changed')\n",
    )
    .unwrap();
    let changed = ok(env, &["build", "-t", "b-multi:1", dir]);
    let (cached, ran) = cached_and_ran(&changed.stderr);
    // Steps: 1 FROM, 2 ARG, 3 WORKDIR, 4 COPY ., 5 COPY gen.py, 6 RUN, 7 RUN, 8 FROM,
    // 9 COPY --from, 10 ENV, 11 CMD. `COPY .` sees the change too (it copies src/).
    assert_eq!(cached, [3], "{}", changed.stderr);
    assert_eq!(ran, [1, 2, 4, 5, 6, 7, 8, 9, 10, 11], "{}", changed.stderr);
    let out = ok(env, &["run", "--rm", "b-multi:1"]);
    assert_eq!(out.stdout.trim(), "hello changed");
}

#[test]
fn a_failing_run_stops_the_build_with_its_output_and_exit_code() {
    let Some(env) = env() else { return };
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {PY}\nRUN echo about-to-fail && echo on-stderr >&2 && exit 7\nRUN echo never\n"
        ),
    )]);
    let r = env.run(&["build", "-t", "b-fail:1", ctx.path().to_str().unwrap()]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.stderr.contains("#2 about-to-fail"), "{}", r.stderr);
    assert!(r.stderr.contains("#2 on-stderr"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("line 2: RUN /bin/sh -c echo about-to-fail")
            && r.stderr.contains("failed with exit code 7"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("never"), "{}", r.stderr);
    assert_ne!(env.run(&["image", "inspect", "b-fail:1"]).code, 0);
    // No build box is left behind.
    let ps = ok(env, &["ps", "-a", "-q"]);
    assert!(ps.stdout.trim().is_empty(), "{}", ps.stdout);
}

#[test]
fn arg_follows_docker_scoping_and_build_args() {
    let Some(env) = env() else { return };
    let df = format!(
        r#"ARG BASE={PY}
ARG GLOBAL_ONLY=g
ARG REDECL=global-default
FROM ${{BASE}}
ARG REDECL
ARG V=default
ARG SHADOW=from-arg
ENV SHADOW=env-wins
ARG UNSET
RUN test "$V" = from-cli && test -z "$GLOBAL_ONLY" && test "$REDECL" = global-default \
 && test "$SHADOW" = env-wins && test -z "${{UNSET+set}}" && echo "V=$V" > /arg.txt
"#
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let r = ok(
        env,
        &[
            "build",
            "--build-arg",
            "V=from-cli",
            "--build-arg",
            "NOBODY=x",
            "-t",
            "b-arg:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(
        r.stderr.contains("not consumed by any ARG: NOBODY"),
        "{}",
        r.stderr
    );
    // ARG values are not part of the image's environment (ENV is).
    let inspect = ok(env, &["image", "inspect", "b-arg:1"]).json()[0].clone();
    let image_env = inspect["config"]["env"].to_string();
    assert!(!image_env.contains("V=from-cli"), "{image_env}");
    assert!(image_env.contains("SHADOW=env-wins"), "{image_env}");
}

#[test]
fn env_is_substituted_persisted_and_seen_by_run_and_the_image() {
    let Some(env) = env() else { return };
    let df = format!(
        r#"FROM {PY}
ENV A=1 B="two words"
ENV C=${{A}}-x D=${{MISSING:-fallback}} E=$A
ENV LEGACY value with spaces
RUN test "$A" = 1 && test "$B" = "two words" && test "$C" = 1-x && test "$D" = fallback \
 && test "$LEGACY" = "value with spaces"
CMD ["sh", "-c", "echo $C/$B"]
"#
    );
    let ctx = context(&[("Dockerfile", &df)]);
    ok(
        env,
        &["build", "-t", "b-env:1", ctx.path().to_str().unwrap()],
    );
    let out = ok(env, &["run", "--rm", "b-env:1"]);
    assert_eq!(out.stdout.trim(), "1-x/two words");
}

#[test]
fn user_applies_to_run_and_the_image_but_not_to_copy() {
    let Some(env) = env() else { return };
    let df = format!(
        r#"FROM {PY}
USER 1234:5678
COPY f /f
COPY --chown=42:43 --chmod=0600 f /g
RUN test "$(id -u)" = 1234 && test "$(id -g)" = 5678 && test "$(stat -c %u:%g:%a /f)" = 0:0:644 \
 && test "$(stat -c %u:%g:%a /g)" = 42:43:600
"#
    );
    let ctx = context(&[("Dockerfile", &df), ("f", "x")]);
    std::fs::set_permissions(
        ctx.path().join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    ok(
        env,
        &["build", "-t", "b-user:1", ctx.path().to_str().unwrap()],
    );
    let inspect = ok(env, &["image", "inspect", "b-user:1"]).json()[0].clone();
    assert_eq!(inspect["config"]["user"], "1234:5678");
}

#[test]
fn workdir_resolves_relative_paths_and_is_where_run_and_copy_happen() {
    let Some(env) = env() else { return };
    let df = format!(
        r#"FROM {PY}
ENV D=c
WORKDIR /a
WORKDIR b
WORKDIR $D
COPY f rel.txt
RUN test "$(pwd)" = /a/b/c && test -f /a/b/c/rel.txt
"#
    );
    let ctx = context(&[("Dockerfile", &df), ("f", "x")]);
    ok(
        env,
        &["build", "-t", "b-wd:1", ctx.path().to_str().unwrap()],
    );
    let inspect = ok(env, &["image", "inspect", "b-wd:1"]).json()[0].clone();
    assert_eq!(inspect["config"]["working_dir"], "/a/b/c");
}

#[test]
fn unsupported_instructions_flags_platforms_and_remote_add_are_refused_with_the_reason() {
    let Some(env) = env() else { return };
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "FROM x\nONBUILD RUN y\n",
            &[],
            "line 2: ONBUILD is not supported",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c y\n",
            &[],
            "line 2: RUN does not support the flag --mount",
        ),
        (
            "FROM scratch\n",
            &["--platform", "linux/arm64"],
            "only linux/amd64",
        ),
        (
            &format!("FROM {PY}\nADD git@github.com:a/b.git /x\n"),
            &[],
            "line 2: ADD git@github.com:a/b.git: only http:// and https:// URLs can be fetched",
        ),
    ];
    for (df, extra, expected) in cases {
        let ctx = context(&[("Dockerfile", df)]);
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        args.push(ctx.path().to_str().unwrap());
        let r = env.run(&args);
        assert_ne!(r.code, 0, "{df}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{df}: {}", r.stderr);
    }
}

/// The comparison Dockerfile: the same text for both builders, the base image passed as an ARG
/// (a3s-box: the loaded image; buildah: the OCI archive it was loaded from).
const COMPARED: &str = r#"ARG BASE
FROM ${BASE} AS build
ARG GREETING=hello
WORKDIR /work
COPY src/ ./src/
RUN python3 src/gen.py "$GREETING" > out.txt && rm /etc/debian_version \
 && mkdir -p /opt/data && echo d > /opt/data/f && chmod 0600 /opt/data/f

FROM ${BASE}
COPY --from=build /work/out.txt /app/
COPY --from=build /opt/data /data
COPY --chown=1:2 --chmod=0640 src/gen.py /app/gen.py
ADD files.tar /unpacked/
ENV NAME=world
WORKDIR /app
USER 1000:1000
EXPOSE 8080 53/udp
LABEL org.example.k=v
VOLUME /data
STOPSIGNAL SIGINT
ENTRYPOINT ["python3"]
CMD ["-c", "print(open('/app/out.txt').read().strip())"]
"#;

/// path → (type, mode, uid, gid, sha256 of content or link target), after applying the layers
/// of `image` (as `image inspect` lists them) with OCI whiteouts.
fn flatten(env: &TestEnv, image: &str) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest as _;
    use std::io::Read;
    let inspect = ok(env, &["image", "inspect", image]).json()[0].clone();
    let mut tree = std::collections::BTreeMap::new();
    for layer in inspect["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let blob = env.home.path().join("images/v1/blobs/sha256").join(hex);
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
        let mut archive = tar::Archive::new(gz);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .trim_start_matches("./")
                .to_owned();
            let (dir, name) = path
                .rsplit_once('/')
                .map_or(("", path.as_str()), |(d, n)| (d, n));
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            if name == ".wh..wh..opq" {
                tree.retain(|p: &String, _| !p.starts_with(&prefix) || p.len() == prefix.len());
                continue;
            }
            if let Some(gone) = name.strip_prefix(".wh.") {
                let gone = format!("{prefix}{gone}");
                tree.retain(|p: &String, _| *p != gone && !p.starts_with(&format!("{gone}/")));
                continue;
            }
            let h = e.header().clone();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let what = format!(
                "{:?} {:o} {}:{} {}",
                h.entry_type(),
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                link.unwrap_or_else(|| hex::encode(sha2::Sha256::digest(&content)))
            );
            tree.insert(path, what);
        }
    }
    // Both builders manage these per box, and buildah leaves an empty /etc/hosts behind.
    for p in ["etc/hosts", "etc/resolv.conf", "etc/hostname", "run"] {
        tree.remove(p);
    }
    tree
}

#[test]
fn buildah_builds_the_same_dockerfile_into_the_same_trees_and_config() {
    let Some(env) = env() else { return };
    if which("buildah").is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "buildah is missing: run scripts/setup"
        );
        eprintln!(
            "SKIPPED: buildah comparison: buildah is not installed (scripts/setup installs it)"
        );
        return;
    }
    let archive = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "sub/in-archive.txt", &b"tar"[..])
            .unwrap();
        b.into_inner().unwrap()
    };
    let ctx = context(&[
        ("Dockerfile", COMPARED),
        (
            "src/gen.py",
            "import sys\nprint(sys.argv[1] + ' compared')\n",
        ),
    ]);
    std::fs::write(ctx.path().join("files.tar"), archive).unwrap();
    for f in ["src/gen.py", "Dockerfile"] {
        std::fs::set_permissions(
            ctx.path().join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    let dir = ctx.path().to_str().unwrap();
    let base_archive = {
        let py = ok(env, &["image", "inspect", PY]).json()[0].clone();
        assert!(py["digest"].is_string());
        let out = std::process::Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-images"),
        )
        .arg("python3")
        .output()
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["archive"].as_str().unwrap().to_owned()
    };
    let bh = tempfile::tempdir().unwrap();
    let buildah = |args: &[&str]| {
        let root = bh.path().join("root");
        let runroot = bh.path().join("run");
        let out = std::process::Command::new("buildah")
            .args([
                "--root",
                root.to_str().unwrap(),
                "--runroot",
                runroot.to_str().unwrap(),
                "--storage-driver",
                "vfs",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (target, name) in [("build", "cmp-build"), ("", "cmp-final")] {
        let mut a3s = vec![
            "build",
            "--build-arg",
            "BASE=localhost/a3s-test/python3:latest",
            "-t",
            name,
        ];
        let mut bargs = vec!["bud", "--isolation", "chroot", "--layers"];
        let base = format!("BASE=oci-archive:{base_archive}");
        bargs.extend(["--build-arg", base.as_str(), "-t", name]);
        if !target.is_empty() {
            a3s.extend(["--target", target]);
            bargs.extend(["--target", target]);
        }
        a3s.push(dir);
        bargs.push(dir);
        ok(env, &a3s);
        buildah(&bargs);
        let out = bh.path().join(format!("{name}.tar"));
        let dest = format!(
            "oci-archive:{}:localhost/buildah/{name}:latest",
            out.display()
        );
        buildah(&["push", name, &dest]);
        ok(env, &["load", "-i", out.to_str().unwrap()]);
        let ours = flatten(env, &format!("{name}:latest"));
        let theirs = flatten(env, &format!("localhost/buildah/{name}:latest"));
        let diff: Vec<_> = ours
            .iter()
            .filter(|(p, v)| theirs.get(*p) != Some(*v))
            .map(|(p, v)| format!("ours   {p}: {v} / buildah: {:?}", theirs.get(p)))
            .chain(
                theirs
                    .iter()
                    .filter(|(p, _)| !ours.contains_key(*p))
                    .map(|(p, v)| format!("buildah only {p}: {v}")),
            )
            .collect();
        assert!(
            diff.is_empty(),
            "{name}: trees differ:\n{}",
            diff.join("\n")
        );
        let c1 =
            ok(env, &["image", "inspect", &format!("{name}:latest")]).json()[0]["config"].clone();
        let mut c2 = ok(
            env,
            &[
                "image",
                "inspect",
                &format!("localhost/buildah/{name}:latest"),
            ],
        )
        .json()[0]["config"]
            .clone();
        c2["labels"]
            .as_object_mut()
            .unwrap()
            .remove("io.buildah.version");
        assert_eq!(c1, c2, "{name}: configs differ");
    }
    let out = ok(env, &["run", "--rm", "cmp-final:latest"]);
    assert_eq!(out.stdout.trim(), "hello compared");
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

#[test]
fn a_scratch_image_from_copy_and_add_needs_no_vm_and_carries_every_config_instruction() {
    let Some(env) = env() else { return };
    let df = r#"FROM scratch
COPY hello.txt /
ADD dir /opt/
LABEL a=1 "b c"="d e"
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
SHELL ["/bin/bash", "-c"]
ENTRYPOINT echo hi
HEALTHCHECK --interval=5s --retries=2 CMD test -e /hello.txt
"#;
    let ctx = context(&[("Dockerfile", df), ("hello.txt", "hi"), ("dir/x/y", "z")]);
    let r = ok(
        env,
        &["build", "-t", "b-scratch:1", ctx.path().to_str().unwrap()],
    );
    assert!(!r.stderr.contains("RUN"), "{}", r.stderr);
    let i = ok(env, &["image", "inspect", "b-scratch:1"]).json()[0].clone();
    assert_eq!(i["layers"].as_array().unwrap().len(), 2, "{i}");
    assert_eq!(
        i["config"]["entrypoint"],
        serde_json::json!(["/bin/bash", "-c", "echo hi"])
    );
    assert_eq!(
        i["config"]["exposed_ports"],
        serde_json::json!(["53/udp", "80/tcp"])
    );
    assert_eq!(i["config"]["labels"]["b c"], "d e");
    let history = ok(env, &["image", "history", "b-scratch:1"]).stdout;
    for step in [
        "COPY hello.txt /",
        "ADD dir /opt",
        "STOPSIGNAL SIGINT",
        "HEALTHCHECK",
    ] {
        assert!(history.contains(step), "{step}: {history}");
    }
    // The config keeps what the image config view does not model.
    let hex = i["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let blobs = env.home.path().join("images/v1/blobs/sha256");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(hex)).unwrap()).unwrap();
    let cfg_hex = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(cfg_hex)).unwrap()).unwrap();
    assert_eq!(cfg["config"]["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(cfg["config"]["StopSignal"], "SIGINT");
    assert_eq!(cfg["config"]["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(cfg["config"]["Healthcheck"]["Retries"], 2);
    assert_eq!(
        cfg["config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -e /hello.txt"])
    );
    assert_eq!(cfg["history"].as_array().unwrap().len(), 9);
}

/// A real HTTP server (python3's `http.server`) serving `dir` on 127.0.0.1; killed on drop.
struct HttpServer {
    child: std::process::Child,
    base: String,
}

impl HttpServer {
    fn start(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (scripts/setup installs it)");
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("http.server said {line:?}"));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// path → (mode, mtime, content) of the regular files in the image's layers.
fn layer_files(
    env: &TestEnv,
    image: &str,
) -> std::collections::BTreeMap<String, (u32, u64, Vec<u8>)> {
    use std::io::Read;
    let inspect = ok(env, &["image", "inspect", image]).json()[0].clone();
    let mut files = std::collections::BTreeMap::new();
    for layer in inspect["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let blob = env.home.path().join("images/v1/blobs/sha256").join(hex);
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
        let mut archive = tar::Archive::new(gz);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if !e.header().entry_type().is_file() {
                continue;
            }
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let (mode, mtime) = (
                e.header().mode().unwrap() & 0o7777,
                e.header().mtime().unwrap(),
            );
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            files.insert(path, (mode, mtime, content));
        }
    }
    files
}

#[test]
fn add_fetches_http_urls_checks_checksums_keeps_last_modified_and_refuses_unreachable_ones() {
    use sha2::Digest as _;
    let Some(env) = env() else { return };
    let served = tempfile::tempdir().unwrap();
    let set = |rel: &str, content: &str, mtime: u64| {
        let p = served.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
            .unwrap();
    };
    set("hello.txt", "hello over http\n", 1_600_000_000);
    set("pkg/tool.tar", "not unpacked\n", 1_600_000_100);
    let http = HttpServer::start(served.path());
    let sum = hex::encode(sha2::Sha256::digest(b"hello over http\n"));
    let base = &http.base;
    // FROM scratch: no RUN, so no VM; the layer shows what ADD made.
    let df = format!(
        "FROM scratch\n\
         ADD --checksum=sha256:{sum} {base}/hello.txt /data/\n\
         ADD {base}/hello.txt /named.txt\n\
         ADD --chmod=0644 {base}/pkg/tool.tar /opt/\n"
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let dir = ctx.path().to_str().unwrap();
    ok(env, &["build", "-t", "b-remote:1", dir]);
    let files = layer_files(env, "b-remote:1");
    // Docker: mode 0600 unless --chmod, mtime from Last-Modified, archives not unpacked.
    assert_eq!(
        files["data/hello.txt"],
        (0o600, 1_600_000_000, b"hello over http\n".to_vec()),
        "{files:?}"
    );
    assert_eq!(files["named.txt"].2, b"hello over http\n");
    assert_eq!(
        files["opt/tool.tar"],
        (0o644, 1_600_000_100, b"not unpacked\n".to_vec())
    );
    let history = ok(env, &["image", "history", "b-remote:1"]).stdout;
    assert!(
        history.contains(&format!(
            "ADD --checksum=sha256:{sum} {base}/hello.txt /data"
        )),
        "{history}"
    );

    // Unchanged remote content: every ADD is a cache hit. Changed content at the same URL
    // (same size, same mtime): the ADDs of that URL run again.
    let again = ok(env, &["build", "-t", "b-remote:1", dir]);
    assert_eq!(
        cached_and_ran(&again.stderr).0,
        [2, 3, 4],
        "{}",
        again.stderr
    );
    set("pkg/tool.tar", "NOT unpacked\n", 1_600_000_100);
    let changed = ok(env, &["build", "-t", "b-remote:1", dir]);
    let (cached, ran) = cached_and_ran(&changed.stderr);
    assert_eq!(
        (cached, ran),
        (vec![2, 3], vec![1, 4]),
        "{}",
        changed.stderr
    );

    // A wrong checksum, an error status and an unreachable server stop the build, each with
    // its reason and line.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let zero = "0".repeat(64);
    let cases = [
        (
            format!("FROM scratch\nADD --checksum=sha256:{zero} {base}/hello.txt /x\n"),
            format!("line 2: ADD {base}/hello.txt: checksum mismatch: expected sha256:{zero}, got sha256:{sum}"),
        ),
        (
            format!("FROM scratch\nADD {base}/missing.txt /x\n"),
            format!("line 2: ADD {base}/missing.txt: the server answered HTTP 404"),
        ),
        (
            format!("FROM scratch\n\nADD http://127.0.0.1:{closed_port}/x /x\n"),
            format!("line 3: ADD http://127.0.0.1:{closed_port}/x: not reachable from the build host"),
        ),
        (
            "FROM scratch\nADD --checksum=sha256:00 hello.txt /x\n".to_owned(),
            "only http(s) sources can be checked".to_owned(),
        ),
    ];
    for (df, expected) in cases {
        let ctx = context(&[("Dockerfile", &df), ("hello.txt", "local")]);
        let r = env.run(&["build", ctx.path().to_str().unwrap()]);
        assert_ne!(r.code, 0, "{df}: {}", r.stderr);
        assert!(r.stderr.contains(&expected), "{df}: {}", r.stderr);
    }
}

#[test]
fn progress_auto_is_plain_when_piped_and_a_live_view_on_a_terminal() {
    let Some(env) = env() else { return };
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /\nCOPY b.txt /\n"),
        ("a.txt", "a"),
        ("b.txt", "b"),
    ]);
    let dir = ctx.path().to_str().unwrap();
    // Piped stderr: auto is plain, one line per event and no terminal control sequences.
    let piped = ok(env, &["build", "--no-cache", "-t", "b-progress:1", dir]);
    assert!(!piped.stderr.contains('\x1b'), "{:?}", piped.stderr);
    assert!(
        piped.stderr.contains("#2 [2/3] COPY a.txt /\n#2 DONE"),
        "{}",
        piped.stderr
    );
    assert_eq!(
        ok(
            env,
            &["build", "--progress", "plain", "-t", "b-progress:1", dir]
        )
        .stderr
        .matches("CACHED")
        .count(),
        2
    );
    // On a terminal (util-linux `script` gives the command a pseudo-terminal), each step ends
    // as one line: its header and its status.
    let bin = env.cmd().get_program().to_owned();
    let line = format!(
        "{} build --progress auto --no-cache -t b-progress:1 {dir}",
        bin.to_str().unwrap()
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm");
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs the build on a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains('\x1b'), "no live view drawn: {text:?}");
    let plain: String = strip_ansi(&text);
    assert!(plain.contains("#2 [2/3] COPY a.txt /  DONE"), "{plain:?}");
    assert!(plain.contains("#3 [3/3] COPY b.txt /  DONE"), "{plain:?}");
    assert!(!plain.contains("\n#2 DONE"), "{plain:?}");
}

/// `text` without ANSI escape sequences (CSI `ESC [ ... letter`) and carriage returns.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn a_built_image_is_pushed_signed_pulled_back_verified_and_run() {
    let Some(env) = env() else { return };
    let reg = crate::image::registry::LocalRegistry::start();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {PY}\nCOPY msg.txt /app/\nCMD [\"cat\", \"/app/msg.txt\"]\n"),
        ),
        ("msg.txt", "built, pushed, signed and pulled\n"),
    ]);
    let image = format!("{}/built/app:1", reg.addr);
    let digest = ok(
        env,
        &["build", "-q", "-t", &image, ctx.path().to_str().unwrap()],
    )
    .stdout
    .trim()
    .to_owned();
    ok(env, &["push", "-q", &image]);
    assert_eq!(reg.remote_digest("built/app:1"), digest);
    let keys = tempfile::tempdir().unwrap();
    let run_with_password = |args: &[&str]| {
        let o = env
            .cmd()
            .args(args)
            .env("COSIGN_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run_with_password(&[
        "key",
        "generate",
        "--out-dir",
        keys.path().to_str().unwrap(),
    ]);
    let key = keys.path().join("cosign.key");
    let pubk = keys.path().join("cosign.pub");
    run_with_password(&["image", "sign", "--key", key.to_str().unwrap(), &image]);
    // A fresh home has nothing: the pull verifies the signature, then the image runs.
    let fresh = TestEnv::new();
    let pulled = fresh.run(&[
        "pull",
        "-q",
        "--verify-key",
        pubk.to_str().unwrap(),
        &image,
        "--format",
        "json",
    ]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    let pulled = pulled.json();
    assert_eq!(pulled["digest"], digest.as_str(), "{pulled}");
    assert_eq!(
        pulled["verified_by"].as_array().unwrap().len(),
        1,
        "{pulled}"
    );
    let history = fresh.run(&["image", "history", &image]);
    assert!(
        history.stdout.contains("COPY msg.txt /app"),
        "{}",
        history.stdout
    );
    let out = fresh.run(&["run", "--rm", &image]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "built, pushed, signed and pulled");
}

/// Each RUN step's filesystem is built from the previous step's unpacked tree plus what came
/// since (a COPY layer, the step's own), not from every layer again: what a step removes,
/// replaces or adds is what the next step and the image see, and the kept tree (RAM in
/// `/dev/shm`) is gone when the build is.
#[test]
fn run_steps_build_on_the_previous_steps_tree_and_the_tree_goes_with_the_build() {
    let Some(env) = env() else { return };
    let df = format!(
        r#"FROM {PY}
RUN mkdir -p /srv/a && echo one > /srv/a/one && echo gone > /srv/gone && rm -f /etc/debian_version
COPY f /srv/a/f
RUN test "$(cat /srv/a/one /srv/a/f)" = "$(printf 'one\nfile')" && rm /srv/gone \
 && test ! -e /etc/debian_version && echo two > /srv/a/one
RUN test ! -e /srv/gone && test "$(cat /srv/a/one)" = two && rm -r /srv/a && mkdir /srv/a \
 && echo three > /srv/a/three
"#
    );
    let ctx = context(&[("Dockerfile", &df), ("f", "file")]);
    let child = env
        .cmd()
        .args(["build", "--no-cache", "-t", "b-steps:1"])
        .arg(ctx.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = ok(
        env,
        &[
            "run",
            "--rm",
            "b-steps:1",
            "sh",
            "-c",
            "ls /srv/a; test ! -e /srv/gone && echo ok",
        ],
    );
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["three", "ok"]
    );
    let prefix = format!("a3s-unpack-{pid}-");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "the build left its tree in /dev/shm: {left:?}"
    );
}

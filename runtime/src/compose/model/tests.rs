use super::*;

const STACK: &str = r#"
name: shop
services:
  db:
    image: a3s-test/postgres
    environment:
      POSTGRES_PASSWORD: pw
    volumes:
      - dbdata:/var/lib/postgresql
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "postgres"]
      interval: 1s
      timeout: 1m30s
      retries: 30
    networks:
      back:
        aliases: [database]
  api:
    image: a3s-test/python3
    command: python3 -c 'print("hi there")'
    depends_on:
      db:
        condition: service_healthy
    networks: [back]
    restart: on-failure:3
    deploy:
      resources:
        limits:
          cpus: "1.5"
          memory: 256m
  web:
    image: a3s-test/nginx
    ports: ["127.0.0.1:8080:80", "9000-9001:90-91/udp"]
    depends_on: [api]
    networks: [back]
networks:
  back:
    x-a3s: {isolation: none}
volumes:
  dbdata:
x-common: &c {anything: goes}
"#;

#[test]
fn the_supported_subset_is_read_with_its_values() {
    let p = load(STACK, Path::new("/srv/My Shop"), None).unwrap();
    assert_eq!(p.name, "shop");
    let db = &p.services["db"];
    assert_eq!(db.environment, ["POSTGRES_PASSWORD=pw"]);
    let h = db.healthcheck.as_ref().unwrap();
    assert_eq!(h.cmd.as_deref(), Some("pg_isready -U postgres"));
    assert_eq!(h.timeout, Some(Duration::from_secs(90)));
    assert_eq!(db.networks["back"].aliases, ["database"]);
    let api = &p.services["api"];
    assert_eq!(
        api.command.as_ref().unwrap(),
        &["python3", "-c", "print(\"hi there\")"]
    );
    assert_eq!(api.depends_on["db"], Condition::Healthy);
    assert_eq!((api.cpus, api.memory_mib), (Some(2), Some(256)));
    assert_eq!(p.services["web"].depends_on["api"], Condition::Started);
}

#[test]
fn unknown_keys_are_refused_with_their_path_and_line() {
    for (text, key, line) in [
        (
            "services:\n  web:\n    build:\n      context: .\n      ssh: [default]\n",
            "services.web.build.ssh",
            5,
        ),
        ("services:\n  web:\n    image: x\nconfigs: {}\n", "configs", 4),
        (
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: true\n      every: 1s\n",
            "services.web.healthcheck.every",
            6,
        ),
        (
            "services:\n  web:\n    image: x\n    deploy:\n      replicas: 2\n",
            "services.web.deploy.replicas",
            5,
        ),
    ] {
        match load(text, Path::new("/p"), None).unwrap_err() {
            ComposeError::UnknownKey { key: k, line: l } => assert_eq!((k.as_str(), l), (key, line)),
            other => panic!("{text}: {other}"),
        }
    }
}

#[test]
fn bad_values_and_dangling_references_name_their_line() {
    for (text, needle) in [
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n",
            "service \"b\" is not defined",
        ),
        (
            "services:\n  a:\n    image: x\n    restart: sometimes\n",
            "sometimes",
        ),
        (
            "services:\n  a:\n    image: x\n    healthcheck:\n      interval: soon\n",
            "not a duration",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\n",
            "volume \"data\"",
        ),
        ("services:\n  a:\n    command: x\n", "needs an image"),
        (
            "services:\n  a:\n    image: x\n    x-a3s: {tee: sgx}\n",
            "neither simulate nor snp",
        ),
        (
            "services:\n  a:\n    image: x\n    ports:\n      - target: 80\n",
            "long syntax",
        ),
    ] {
        let e = load(text, Path::new("/p"), None).unwrap_err().to_string();
        assert!(e.contains(needle) && e.starts_with("line "), "{text}: {e}");
    }
}

#[test]
fn the_default_project_name_follows_compose() {
    assert_eq!(
        default_project_name(Path::new("/srv/My_Shop.v2")).unwrap(),
        "my_shopv2"
    );
    assert!(default_project_name(Path::new("/srv/...")).is_err());
    let p = load(
        "services:\n  a:\n    image: x\n",
        Path::new("/x/Stack"),
        Some("other"),
    )
    .unwrap();
    assert_eq!(p.name, "other");
}

#[test]
fn env_files_come_first_and_environment_wins() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("app.env"), "# c\nA=1\nB=2\n").unwrap();
    let p = load(
        "services:\n  a:\n    image: x\n    env_file: app.env\n    environment: [B=3]\n",
        t.path(),
        None,
    )
    .unwrap();
    assert_eq!(p.services["a"].environment, ["A=1", "B=2", "B=3"]);
    std::fs::write(t.path().join("bad.env"), "novalue\n").unwrap();
    let e = load(
        "services:\n  a:\n    image: x\n    env_file: bad.env\n",
        t.path(),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 1: expected KEY=value"), "{e}");
}

#[test]
fn words_split_like_a_shell_without_expansion() {
    assert_eq!(
        split_words(r#"sh -c "echo \"a b\" $HOME" 'x y'"#).unwrap(),
        ["sh", "-c", "echo \"a b\" $HOME", "x y"]
    );
    assert!(split_words("'open").is_err());
}

#[test]
fn build_takes_a_context_alone_or_context_dockerfile_args_and_target() {
    let p = load(
        "name: shop\nservices:\n  a:\n    build: ./app\n  b:\n    image: reg/b:1\n    build:\n      context: ctx\n      dockerfile: Dockerfile.dev\n      args: {GREETING: hi}\n      target: runtime\n",
        Path::new("/p"),
        None,
    )
    .unwrap();
    let a = p.services["a"].build.as_ref().unwrap();
    assert_eq!(a.context, Path::new("/p/./app"));
    assert_eq!(a.dockerfile_path(), Path::new("/p/./app/Dockerfile"));
    assert_eq!(crate::compose::image_name(&p, &p.services["a"]), "shop-a");
    let b = p.services["b"].build.as_ref().unwrap();
    assert_eq!(b.dockerfile_path(), Path::new("/p/ctx/Dockerfile.dev"));
    assert_eq!(b.args["GREETING"], "hi");
    assert_eq!(b.target.as_deref(), Some("runtime"));
    assert_eq!(crate::compose::image_name(&p, &p.services["b"]), "reg/b:1");
    let e = load("services:\n  a:\n    command: [x]\n", Path::new("/p"), None).unwrap_err();
    assert!(e.to_string().contains("needs an image or a build"), "{e}");
}

#[test]
fn mem_limit_is_the_service_s_memory_limit_and_must_agree_with_deploy() {
    let one = "services:\n  web:\n    image: busybox\n    mem_limit: 300m\n";
    let p = load(one, Path::new("/srv/x"), None).unwrap();
    assert_eq!(p.services["web"].memory_mib, Some(300));
    let both = "services:\n  web:\n    image: busybox\n    mem_limit: 1g\n    deploy:\n      \
                resources:\n        limits:\n          memory: 1024m\n";
    let p = load(both, Path::new("/srv/x"), None).unwrap();
    assert_eq!(p.services["web"].memory_mib, Some(1024));
    let clash = "services:\n  web:\n    image: busybox\n    deploy:\n      resources:\n        \
                 limits:\n          memory: 200m\n    mem_limit: 300m\n";
    let e = load(clash, Path::new("/srv/x"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("services.web.mem_limit")
            && e.contains("300 MiB differs")
            && e.contains("200 MiB"),
        "{e}"
    );
    let bad = "services:\n  web:\n    image: busybox\n    mem_limit: lots\n";
    let e = load(bad, Path::new("/srv/x"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("services.web.mem_limit"), "{e}");
}

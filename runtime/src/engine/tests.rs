//! The engine called directly, as a front end other than the CLI would: no binary involved.

use std::sync::{Arc, Barrier};

use a3s_image::cosign::{PrivateKey, SignaturePolicy};

use super::{CreateBox, Engine, EngineError, RunMode};
use crate::boxes::{BoxError, CreateRequest, DEFAULT_MEM_MIB};
use crate::home::A3sHome;
use crate::state::StateError;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let home = A3sHome::at(dir.path());
    // A monitor that can never boot anything: these tests stop before a VM would run.
    let engine = Engine::open(&home).with_monitor("/bin/false");
    (dir, engine)
}

fn busybox(name: Option<&str>) -> CreateRequest {
    CreateRequest {
        image: "busybox".into(),
        name: name.map(str::to_owned),
        args: vec!["true".into()],
        vcpus: 1,
        mem_mib: u64::from(DEFAULT_MEM_MIB),
        memory_limit_bytes: None,
        pod_memory_bytes: None,
        ..CreateRequest::default()
    }
}

/// Every audit line recorded so far (all files of the log directory).
fn audit_lines(engine: &Engine) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(engine.home().audit()) else {
        return out;
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                out.push(v);
            }
        }
    }
    out
}

fn has_event(lines: &[serde_json::Value], action: &str, outcome: &str) -> bool {
    lines.iter().any(|v| {
        let text = v.to_string();
        text.contains(&format!("\"{action}\"")) && text.contains(&format!("\"{outcome}\""))
    })
}

#[test]
fn a_refused_signature_removes_the_box_and_records_the_denial() {
    let (_dir, engine) = engine();
    let key = PrivateKey::generate().public_key();
    let req = CreateBox {
        request: busybox(Some("unsigned")),
        signatures: Some(SignaturePolicy::require_keys(vec![key])),
    };
    let err = engine.run(&req, RunMode::Detached, &mut ()).unwrap_err();
    assert!(
        matches!(err, EngineError::ImageRefused { .. }),
        "expected a refusal, got {err:?}"
    );
    assert!(
        engine.list(true).unwrap().is_empty(),
        "the refused box must be removed"
    );
    let lines = audit_lines(&engine);
    assert!(
        has_event(&lines, "image.verify", "denied"),
        "no image.verify denied event in {lines:#?}"
    );
    assert!(
        !has_event(&lines, "box.create", "success"),
        "a refused box is not reported created: {lines:#?}"
    );
}

#[test]
fn a_run_with_auto_remove_leaves_no_box_behind_whatever_happened() {
    let (_dir, engine) = engine();
    for (mode, name) in [(RunMode::Detached, "rm-d"), (RunMode::Foreground, "rm-f")] {
        let mut request = busybox(Some(name));
        request.auto_remove = true;
        let req = CreateBox {
            request,
            signatures: None,
        };
        // `/bin/false` as the monitor (or a missing kernel before it): the start fails after
        // the box was created, and --rm still cleans up.
        let result = engine.run(&req, mode, &mut ());
        assert!(result.is_err(), "{mode:?}: the fake monitor cannot boot");
        assert!(
            engine.list(true).unwrap().iter().all(|r| r.name != name),
            "{mode:?}: the --rm box is still there"
        );
    }
    let lines = audit_lines(&engine);
    assert!(has_event(&lines, "box.create", "success"), "{lines:#?}");
    // A plain create keeps its box.
    let rec = engine
        .create(&CreateBox {
            request: busybox(Some("kept")),
            signatures: None,
        })
        .unwrap();
    assert_eq!(engine.inspect("kept").unwrap().id, rec.id);
    engine.remove("kept", false).unwrap();
    assert!(has_event(&audit_lines(&engine), "box.remove", "success"));
}

#[test]
fn concurrent_creates_of_one_name_have_exactly_one_winner() {
    let (_dir, engine) = engine();
    // Import the default image once, so the threads race on the name only.
    engine
        .create(&CreateBox {
            request: busybox(Some("warm-up")),
            signatures: None,
        })
        .unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                engine.create(&CreateBox {
                    request: busybox(Some("same")),
                    signatures: None,
                })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:#?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                r,
                EngineError::Box(BoxError::State(StateError::NameInUse { .. }))
            ),
            "a loser must see NameInUse, got {r:?}"
        );
    }
    let same: Vec<_> = engine
        .list(true)
        .unwrap()
        .into_iter()
        .filter(|r| r.name == "same")
        .collect();
    assert_eq!(same.len(), 1);
}

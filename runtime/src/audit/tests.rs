use std::path::Path;

use super::*;

fn log(dir: &Path) -> AuditLog {
    AuditLog::open(dir.join("audit"))
}

fn event(n: usize) -> Event {
    Event::new("box.start", Outcome::Success, format!("started box {n}"))
        .with_box(format!("box{n:04}"))
        .with("n", n)
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit/audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join("audit/audit.jsonl"), text).unwrap();
}

#[test]
fn records_a_chain_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..5 {
        assert_eq!(log.record(&event(n)).unwrap().seq, n as u64 + 1);
    }
    let summary = log.verify().unwrap();
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.last_seq, 5);
    let all = log.query(&Filter::default()).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].prev, files::GENESIS);
    assert_eq!(all[1].prev, all[0].hash);
    assert_eq!(all[4].message, "started box 4");
}

#[test]
fn empty_log_verifies_as_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = log(tmp.path()).verify().unwrap();
    assert_eq!(summary.entries, 0);
    assert_eq!(summary.files, 0);
}

#[test]
fn detects_an_edited_line() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..4 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    l[1] = l[1].replace("started box 1", "started box X");
    write_lines(tmp.path(), &l);
    match log.verify().unwrap_err() {
        ChainError::Edited { line, seq, .. } => assert_eq!((line, seq), (2, 2)),
        other => panic!("{other}"),
    }
}

#[test]
fn detects_an_edit_whose_hash_was_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..4 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    let (content, _) = files::split_hash(l[1].as_bytes()).unwrap();
    let edited = String::from_utf8(content)
        .unwrap()
        .replace("outcome\":\"success", "outcome\":\"denied");
    let (resealed, _) = files::seal_line(edited.as_bytes());
    l[1] = String::from_utf8(resealed).unwrap();
    write_lines(tmp.path(), &l);
    match log.verify().unwrap_err() {
        ChainError::Unchained { line, seq, .. } => assert_eq!((line, seq), (3, 3)),
        other => panic!("{other}"),
    }
}

#[test]
fn detects_a_deleted_line() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..4 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    l.remove(1);
    write_lines(tmp.path(), &l);
    match log.verify().unwrap_err() {
        ChainError::Sequence {
            line,
            expected,
            found,
            ..
        } => assert_eq!((line, expected, found), (2, 2, 3)),
        other => panic!("{other}"),
    }
}

#[test]
fn detects_deleting_the_newest_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..4 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    l.truncate(2);
    write_lines(tmp.path(), &l);
    match log.verify().unwrap_err() {
        ChainError::Truncated { found, recorded } => assert_eq!((found, recorded), (2, 4)),
        other => panic!("{other}"),
    }
}

#[test]
fn detects_reordered_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..4 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    l.swap(1, 2);
    write_lines(tmp.path(), &l);
    match log.verify().unwrap_err() {
        ChainError::Sequence {
            line,
            expected,
            found,
            ..
        } => assert_eq!((line, expected, found), (2, 2, 3)),
        other => panic!("{other}"),
    }
}

#[test]
fn detects_a_replaced_newest_line() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    for n in 0..3 {
        log.record(&event(n)).unwrap();
    }
    let mut l = lines(tmp.path());
    let (content, _) = files::split_hash(l[2].as_bytes()).unwrap();
    let edited = String::from_utf8(content)
        .unwrap()
        .replace("box 2", "box 9");
    l[2] = String::from_utf8(files::seal_line(edited.as_bytes()).0).unwrap();
    write_lines(tmp.path(), &l);
    assert!(matches!(
        log.verify().unwrap_err(),
        ChainError::HeadMismatch { seq: 3 }
    ));
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path()).with_max_file_bytes(1024);
    for n in 0..20 {
        log.record(&event(n)).unwrap();
    }
    let files = files::log_files(log.dir()).unwrap();
    assert!(
        files.len() > 3,
        "expected several rotated files, got {files:?}"
    );
    let summary = log.verify().unwrap();
    assert_eq!(summary.entries, 20);
    assert_eq!(summary.files, files.len());
    let newest = log
        .query(&Filter {
            last: Some(3),
            ..Filter::default()
        })
        .unwrap();
    let seqs: Vec<u64> = newest.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![18, 19, 20]);
}

#[test]
fn deleting_a_rotated_file_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path()).with_max_file_bytes(1024);
    for n in 0..20 {
        log.record(&event(n)).unwrap();
    }
    let files = files::log_files(log.dir()).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    assert!(matches!(
        log.verify().unwrap_err(),
        ChainError::Sequence { line: 1, .. }
    ));
}

#[test]
fn an_unfinished_write_is_dropped_by_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    log.record(&event(0)).unwrap();
    let path = tmp.path().join("audit/audit.jsonl");
    let mut text = std::fs::read(&path).unwrap();
    text.extend_from_slice(b"{\"v\":1,\"seq\":2,\"id\":\"x");
    std::fs::write(&path, &text).unwrap();
    assert!(matches!(
        log.verify().unwrap_err(),
        ChainError::Unfinished { line: 2, .. }
    ));
    assert_eq!(log.record(&event(1)).unwrap().seq, 2);
    assert_eq!(log.verify().unwrap().entries, 2);
}

#[test]
fn refuses_to_extend_a_corrupt_tip() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    log.record(&event(0)).unwrap();
    let mut l = lines(tmp.path());
    l[0] = l[0].replace("started", "stopped");
    write_lines(tmp.path(), &l);
    assert!(matches!(
        log.record(&event(1)).unwrap_err(),
        AuditError::CorruptTip { .. }
    ));
}

#[test]
fn concurrent_writers_never_fork_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = AuditLog::open(&dir).with_max_file_bytes(4096);
            std::thread::spawn(move || {
                for n in 0..25 {
                    log.record(&event(t * 100 + n)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let summary = AuditLog::open(&dir).verify().unwrap();
    assert_eq!(summary.entries, 100);
}

#[test]
fn filters_by_action_box_outcome_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log(tmp.path());
    log.record(&Event::new("image.pull", Outcome::Success, "pulled"))
        .unwrap();
    log.record(&Event::new("box.start", Outcome::Success, "a").with_box("abc123"))
        .unwrap();
    log.record(&Event::new("box.stop", Outcome::Failure, "b").with_box("def456"))
        .unwrap();
    log.record(&Event::new("exec.refuse", Outcome::Denied, "c").with_box("abc123"))
        .unwrap();
    let q = |f: Filter| {
        log.query(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        q(Filter {
            action: Some("box.*".into()),
            ..Filter::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        q(Filter {
            action: Some("box".into()),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );
    assert_eq!(
        q(Filter {
            box_id: Some("abc".into()),
            ..Filter::default()
        }),
        vec![2, 4]
    );
    assert_eq!(
        q(Filter {
            outcome: Some(Outcome::Denied),
            ..Filter::default()
        }),
        vec![4]
    );
    let now = time::OffsetDateTime::now_utc();
    let hour_ago = TimeBound::parse("1h", now).unwrap();
    assert_eq!(
        q(Filter {
            since: Some(hour_ago),
            ..Filter::default()
        })
        .len(),
        4
    );
    assert!(q(Filter {
        until: Some(hour_ago),
        ..Filter::default()
    })
    .is_empty());
}

#[test]
fn time_bounds_accept_rfc3339_and_durations_only() {
    let now = time::macros::datetime!(2026-12-02 10:00 UTC);
    assert_eq!(
        TimeBound::parse("10m", now).unwrap().instant(),
        time::macros::datetime!(2026-12-02 9:50 UTC)
    );
    assert_eq!(
        TimeBound::parse("2026-12-01T00:00:00Z", now)
            .unwrap()
            .instant(),
        time::macros::datetime!(2026-12-01 0:00 UTC)
    );
    for bad in ["", "10", "m", "10x", "yesterday", "-5m"] {
        assert!(TimeBound::parse(bad, now).is_err(), "{bad}");
    }
}

#[test]
fn split_hash_rejects_lines_without_a_trailing_hash() {
    assert!(files::split_hash(b"{}").is_none());
    assert!(files::split_hash(b"{\"a\":1}").is_none());
    let (line, hash) = files::seal_line(b"{\"a\":1}");
    let (content, stated) = files::split_hash(&line).unwrap();
    assert_eq!(content, b"{\"a\":1}");
    assert_eq!(stated, hash);
}

/// A log of `n` entries and the bytes of its current file.
fn filled(dir: &Path, n: usize) -> (AuditLog, Vec<u8>) {
    let log = log(dir);
    for i in 0..n {
        log.record(&event(i)).unwrap();
    }
    let bytes = std::fs::read(dir.join("audit/audit.jsonl")).unwrap();
    (log, bytes)
}

/// Offset of the middle of line `line` (1-based).
fn middle_of_line(bytes: &[u8], line: usize) -> usize {
    let start = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line - 2)
        .map_or(0, |(i, _)| i + 1);
    start + 40
}

fn key(dir: &Path) -> CheckpointKey {
    CheckpointKey::load(&dir.join("auth/audit-checkpoint.key"), true).unwrap()
}

/// Issue 18: cutting the log through a committed line is never "repaired" by the writer.
#[test]
fn issue_18_a_cut_through_a_committed_line_is_refused_not_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, bytes) = filled(tmp.path(), 150);
    let cut = &bytes[..middle_of_line(&bytes, 100)];
    std::fs::write(tmp.path().join("audit/audit.jsonl"), cut).unwrap();
    let err = log.record(&event(999)).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::Truncated {
                found: 99,
                committed: 150,
                ..
            }
        ),
        "{err}"
    );
    // Nothing was removed: the cut line is still there as found.
    assert_eq!(
        std::fs::read(tmp.path().join("audit/audit.jsonl")).unwrap(),
        cut
    );
    assert!(log.verify().is_err());
}

#[test]
fn issue_18_deleting_the_head_with_the_newest_lines_stops_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = filled(tmp.path(), 15);
    let l = lines(tmp.path());
    write_lines(tmp.path(), &l[..10]);
    std::fs::remove_file(tmp.path().join("audit/head.json")).unwrap();
    assert!(matches!(
        log.record(&event(99)).unwrap_err(),
        AuditError::HeadMissing { entries: 10, .. }
    ));
}

#[test]
fn issue_18_checkpoints_detect_truncation_and_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key(tmp.path());
    let (log, _) = filled(tmp.path(), 15);
    let note = log.checkpoint(&key).unwrap();
    let mut lines_of_note = note.lines();
    assert_eq!(lines_of_note.next(), Some(ORIGIN));
    assert_eq!(lines_of_note.next(), Some("15"));
    let ok = log.verify_checkpoint(&note, &key).unwrap();
    assert_eq!((ok.size, ok.entries), (15, 15));
    // Still holds after more writes.
    log.record(&event(15)).unwrap();
    assert_eq!(log.verify_checkpoint(&note, &key).unwrap().entries, 16);

    // Cut at line 10 and head.json deleted: the chain alone looks intact; the checkpoint not.
    let l = lines(tmp.path());
    write_lines(tmp.path(), &l[..10]);
    std::fs::remove_file(tmp.path().join("audit/head.json")).unwrap();
    assert!(matches!(
        log.verify_checkpoint(&note, &key).unwrap_err(),
        CheckpointError::Truncated {
            entries: 10,
            size: 15
        }
    ));
    // ... and the writer refuses too (the kept checkpoint says 15 were committed).
    write_lines(tmp.path(), &l[..1]);
    let err = log.record(&event(99)).unwrap_err();
    assert!(
        matches!(err, AuditError::Truncated { committed: 15, .. }),
        "{err}"
    );

    // The whole directory deleted.
    std::fs::remove_dir_all(tmp.path().join("audit")).unwrap();
    assert!(matches!(
        log.verify_checkpoint(&note, &key).unwrap_err(),
        CheckpointError::Truncated {
            entries: 0,
            size: 15
        }
    ));
}

#[test]
fn issue_18_a_rewritten_log_or_a_forged_checkpoint_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let key = key(tmp.path());
    let (log, _) = filled(tmp.path(), 5);
    let note = log.checkpoint(&key).unwrap();

    // A fresh log of the same length has another root.
    std::fs::remove_dir_all(tmp.path().join("audit")).unwrap();
    let (log, _) = filled(tmp.path(), 5);
    assert!(matches!(
        log.verify_checkpoint(&note, &key).unwrap_err(),
        CheckpointError::RootMismatch { size: 5 }
    ));

    // A checkpoint edited to cover fewer entries no longer verifies.
    let forged = note.replacen("\n5\n", "\n3\n", 1);
    assert!(matches!(
        log.verify_checkpoint(&forged, &key).unwrap_err(),
        CheckpointError::BadSignature { .. }
    ));
    // Another home's key does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        log.verify_checkpoint(&note, &key_of(other.path())),
        Err(CheckpointError::BadSignature { .. })
    ));
}

fn key_of(dir: &Path) -> CheckpointKey {
    key(dir)
}

#[test]
fn merkle_root_matches_rfc_6962_for_small_trees() {
    use sha2::{Digest, Sha256};
    let leaf = |b: u8| [b; 32];
    let h = |parts: &[&[u8]]| -> [u8; 32] {
        let mut s = Sha256::new();
        for p in parts {
            s.update(p);
        }
        s.finalize().into()
    };
    let l = |b: u8| h(&[&[0], &leaf(b)]);
    assert_eq!(checkpoint::merkle_root(&[]), h(&[]));
    assert_eq!(checkpoint::merkle_root(&[leaf(1)]), l(1));
    let ab = h(&[&[1], &l(1), &l(2)]);
    // Three leaves: the left subtree has two (the largest power of two below three).
    let abc = h(&[&[1], &ab, &l(3)]);
    assert_eq!(checkpoint::merkle_root(&[leaf(1), leaf(2), leaf(3)]), abc);
}

#[test]
fn files_are_owner_only_and_an_oversized_line_is_refused_naming_the_limit() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = filled(tmp.path(), 2);
    let mode = |p: &str| {
        std::fs::metadata(tmp.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("audit"), 0o700);
    assert_eq!(mode("audit/audit.jsonl"), 0o600);
    assert_eq!(mode("audit/head.json"), 0o600);
    let big = vec![b'x'; usize::try_from(files::MAX_LINE_BYTES + 10).unwrap()];
    std::fs::write(tmp.path().join("audit/audit.jsonl"), big).unwrap();
    let err = log.verify().unwrap_err();
    assert!(
        matches!(err, ChainError::LineTooLong { line: 1, .. }),
        "{err}"
    );
}

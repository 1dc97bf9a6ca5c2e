use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn durations_parse_like_docker() {
    assert_eq!(parse_duration("500ms").unwrap(), ms(500));
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("1.5s").unwrap(), ms(1500));
    assert_eq!(parse_duration(".5m").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("2h45m0.5s").unwrap(), ms(9_900_500));
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    assert_eq!(parse_duration("3µs").unwrap(), Duration::from_micros(3));
    assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    assert_eq!(parse_duration("+5s").unwrap(), Duration::from_secs(5));
}

#[test]
fn bad_durations_are_refused_with_the_reason() {
    assert_eq!(parse_duration(""), Err(DurationError::Empty));
    assert_eq!(parse_duration("10"), Err(DurationError::MissingUnit));
    assert_eq!(parse_duration("1m30"), Err(DurationError::MissingUnit));
    assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
    assert_eq!(
        parse_duration("10sec"),
        Err(DurationError::UnknownUnit("sec".into()))
    );
    assert_eq!(
        parse_duration("5d"),
        Err(DurationError::UnknownUnit("d".into()))
    );
    assert_eq!(parse_duration("s"), Err(DurationError::Invalid));
    assert_eq!(parse_duration("."), Err(DurationError::Invalid));
    assert_eq!(parse_duration("abc"), Err(DurationError::Invalid));
    assert_eq!(
        parse_duration("99999999999999999999h"),
        Err(DurationError::Overflow)
    );
}

#[test]
fn durations_format_like_docker() {
    assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
    assert_eq!(format_duration(ms(500)), "500ms");
    assert_eq!(format_duration(ms(1500)), "1500ms");
}

fn opts(cmd: Option<&str>) -> HealthOptions {
    HealthOptions {
        cmd: cmd.map(str::to_owned),
        ..HealthOptions::default()
    }
}

#[test]
fn options_resolve_with_docker_defaults() {
    let c = opts(Some("curl -f localhost"))
        .resolve(None)
        .unwrap()
        .unwrap();
    assert_eq!(c.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!(c.argv(), ["/bin/sh", "-c", "curl -f localhost"]);
    assert_eq!(c.interval, Duration::from_secs(30));
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert_eq!(c.start_period, Duration::ZERO);
    assert_eq!(c.retries, 3);

    let o = HealthOptions::parse(
        Some("true"),
        Some("1s"),
        Some("0"),
        Some(5),
        Some("2s"),
        false,
    )
    .unwrap();
    let c = o.resolve(None).unwrap().unwrap();
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.timeout, DEFAULT_TIMEOUT, "0 means the default");
    assert_eq!(c.retries, 5);
    assert_eq!(c.start_period, Duration::from_secs(2));

    assert_eq!(opts(None).resolve(None).unwrap(), None);
}

#[test]
fn options_that_cannot_work_are_refused() {
    let e = HealthOptions::parse(Some("true"), Some("10"), None, None, None, false).unwrap_err();
    assert!(
        matches!(&e, HealthError::BadDuration { flag, value, .. } if flag == "--health-interval" && value == "10"),
        "{e:?}"
    );
    assert!(e.to_string().contains("missing unit"), "{e}");
    let e = HealthOptions::parse(None, None, Some("1us"), None, None, false).unwrap_err();
    assert!(e.to_string().contains("at least 1ms"), "{e}");
    let e = HealthOptions::parse(None, None, None, None, Some("soon"), false).unwrap_err();
    assert!(
        e.to_string().starts_with("--health-start-period \"soon\""),
        "{e}"
    );

    let no_cmd = HealthOptions {
        retries: Some(2),
        ..HealthOptions::default()
    };
    assert_eq!(
        no_cmd.resolve(None),
        Err(HealthError::NoCommand {
            flag: "--health-retries".into()
        })
    );
    let conflict = HealthOptions {
        disable: true,
        ..opts(Some("true"))
    };
    assert_eq!(conflict.resolve(None), Err(HealthError::Conflict));
    assert_eq!(
        opts(Some("  ")).resolve(None),
        Err(HealthError::EmptyCommand)
    );
}

#[test]
fn image_checks_are_tuned_or_disabled_by_the_flags() {
    let image = HealthConfig {
        test: vec!["CMD".into(), "/bin/check".into(), "--quick".into()],
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        start_period: Duration::from_secs(1),
        retries: 4,
    };
    let c = opts(None).resolve(Some(&image)).unwrap().unwrap();
    assert_eq!(c, image);
    assert_eq!(c.argv(), ["/bin/check", "--quick"]);
    let tuned = HealthOptions {
        retries: Some(1),
        ..HealthOptions::default()
    };
    assert_eq!(tuned.resolve(Some(&image)).unwrap().unwrap().retries, 1);
    let off = HealthOptions {
        disable: true,
        ..HealthOptions::default()
    };
    assert_eq!(off.resolve(Some(&image)).unwrap(), None);
}

fn config(retries: u32, start_period: Duration) -> HealthConfig {
    HealthConfig {
        test: vec!["CMD-SHELL".into(), "x".into()],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        start_period,
        retries,
    }
}

fn result(n: usize, exit_code: i32) -> Probe {
    Probe {
        start: format!("t{n}"),
        end: format!("t{n}e"),
        exit_code,
        output: format!("probe {n}"),
    }
}

fn transition(from: HealthStatus, to: HealthStatus) -> Option<Transition> {
    Some(Transition { from, to })
}

use HealthStatus::{Healthy, Starting, Unhealthy};

#[test]
fn a_passing_probe_makes_the_box_healthy() {
    let cfg = config(3, Duration::ZERO);
    let mut h = Health::starting();
    assert_eq!(h.status, Starting);
    assert_eq!(
        h.record(result(0, 0), ms(1000), &cfg),
        transition(Starting, Healthy)
    );
    assert_eq!(h.record(result(1, 0), ms(2000), &cfg), None);
    assert_eq!(h.status, Healthy);
    assert_eq!(h.failing_streak, 0);
}

#[test]
fn retries_consecutive_failures_make_it_unhealthy_and_a_pass_resets_the_streak() {
    let cfg = config(3, Duration::ZERO);
    let mut h = Health::starting();
    assert_eq!(
        h.record(result(0, 0), ms(0), &cfg),
        transition(Starting, Healthy)
    );
    assert_eq!(h.record(result(1, 1), ms(1), &cfg), None);
    assert_eq!(h.record(result(2, 1), ms(2), &cfg), None);
    assert_eq!(h.failing_streak, 2);
    assert_eq!(h.status, Healthy, "two failures of three allowed");
    assert_eq!(h.record(result(3, 0), ms(3), &cfg), None);
    assert_eq!(h.failing_streak, 0, "a pass resets the streak");
    for n in 4..6 {
        assert_eq!(h.record(result(n, 1), ms(4), &cfg), None);
    }
    assert_eq!(
        h.record(result(6, PROBE_ERROR_CODE), ms(5), &cfg),
        transition(Healthy, Unhealthy),
        "a timed-out probe counts as failed"
    );
    assert_eq!(h.failing_streak, 3);
    assert_eq!(h.record(result(7, 2), ms(6), &cfg), None, "still unhealthy");
    assert_eq!(h.failing_streak, 4);
    assert_eq!(
        h.record(result(8, 0), ms(7), &cfg),
        transition(Unhealthy, Healthy)
    );
}

#[test]
fn a_box_that_never_passes_goes_from_starting_to_unhealthy() {
    let cfg = config(2, Duration::ZERO);
    let mut h = Health::starting();
    assert_eq!(h.record(result(0, 1), ms(0), &cfg), None);
    assert_eq!(h.status, Starting);
    assert_eq!(
        h.record(result(1, 1), ms(1), &cfg),
        transition(Starting, Unhealthy)
    );
}

#[test]
fn failures_in_the_start_period_are_not_counted_until_a_first_pass() {
    let cfg = config(1, Duration::from_secs(10));
    let mut h = Health::starting();
    assert_eq!(h.record(result(0, 1), ms(1000), &cfg), None);
    assert_eq!(h.record(result(1, 1), ms(9999), &cfg), None);
    assert_eq!((h.status, h.failing_streak), (Starting, 0));
    assert_eq!(
        h.record(result(2, 1), ms(10_000), &cfg),
        transition(Starting, Unhealthy),
        "the period is over"
    );

    // After a pass the grace period no longer applies.
    let mut h = Health::starting();
    assert_eq!(
        h.record(result(0, 0), ms(1000), &cfg),
        transition(Starting, Healthy)
    );
    assert_eq!(
        h.record(result(1, 1), ms(2000), &cfg),
        transition(Healthy, Unhealthy)
    );
    assert_eq!(h.log.len(), 2, "uncounted results are still logged");
}

#[test]
fn the_log_keeps_the_last_five_results_with_bounded_output() {
    let cfg = config(3, Duration::ZERO);
    let mut h = Health::starting();
    for n in 0..8 {
        h.record(result(n, 0), ms(0), &cfg);
    }
    let starts: Vec<&str> = h.log.iter().map(|p| p.start.as_str()).collect();
    assert_eq!(starts, ["t3", "t4", "t5", "t6", "t7"]);

    let mut big = result(9, 1);
    big.output = format!("{}é", "x".repeat(MAX_OUTPUT_BYTES - 1));
    h.record(big, ms(0), &cfg);
    let out = &h.log.last().unwrap().output;
    assert_eq!(
        out.len(),
        MAX_OUTPUT_BYTES - 1,
        "cut at a character boundary"
    );
    assert!(out.bytes().all(|b| b == b'x'));
}

#[test]
fn health_round_trips_through_json_in_docker_units() {
    let cfg = config(3, ms(1500));
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["interval"], 1_000_000_000u64);
    assert_eq!(json["start_period"], 1_500_000_000u64);
    assert_eq!(serde_json::from_value::<HealthConfig>(json).unwrap(), cfg);
    let mut h = Health::starting();
    h.record(result(0, 1), ms(0), &cfg);
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["status"], "starting");
    assert_eq!(json["log"][0]["exit_code"], 1);
    assert_eq!(serde_json::from_value::<Health>(json).unwrap(), h);
}

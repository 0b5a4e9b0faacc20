use super::*;

#[test]
fn outcome_discriminants_index_all() {
    for (i, o) in Outcome::ALL.iter().enumerate() {
        assert_eq!(*o as usize, i, "{o:?}");
    }
}

#[test]
fn decision_histogram_is_cumulative() {
    let m = Metrics::default();
    m.observe_decision(Duration::from_micros(10));
    m.observe_decision(Duration::from_micros(700));
    m.observe_decision(Duration::from_secs(10));
    let mut out = String::new();
    m.render_decision(&mut out);
    assert!(
        out.contains("revgate_decision_seconds_bucket{le=\"0.00005\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("revgate_decision_seconds_bucket{le=\"0.001\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("revgate_decision_seconds_bucket{le=\"2.5\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("revgate_decision_seconds_bucket{le=\"+Inf\"} 3\n"),
        "{out}"
    );
    assert!(out.contains("revgate_decision_seconds_count 3\n"), "{out}");
    assert_eq!(m.decisions(), 3);
}

#[test]
fn route_counts_survive_a_reload_of_the_same_prefix() {
    let route = |prefix: &str| RouteConfig {
        prefix: prefix.into(),
        upstream: "http://127.0.0.1:1".into(),
        strip_prefix: false,
        timeout: Duration::from_secs(1),
        public: false,
        scopes: vec![],
    };
    let first = RouteMetrics::for_routes(&[route("/"), route("/a\"b")], None);
    first.count(Some(0), Outcome::Allowed);
    first.count(Some(1), Outcome::Revoked);
    first.count(None, Outcome::NoRoute);
    first.count(Some(7), Outcome::NoRoute);
    let second = RouteMetrics::for_routes(&[route("/new"), route("/")], Some(&first));
    assert_eq!(second.get(Some("/"), Outcome::Allowed), 1);
    assert_eq!(second.get(Some("/new"), Outcome::Allowed), 0);
    assert_eq!(second.get(Some("/a\"b"), Outcome::Revoked), 0);
    assert_eq!(second.get(None, Outcome::NoRoute), 2);
    let mut out = String::new();
    first.render(&mut out);
    assert!(
        out.contains("revgate_route_requests_total{route=\"/a\\\"b\",outcome=\"revoked\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("revgate_route_requests_total{route=\"none\",outcome=\"no_route\"} 2\n"),
        "{out}"
    );
}

#[test]
fn every_logout_reason_has_its_own_series() {
    let m = Metrics::default();
    for (i, reason) in LogoutReason::ALL.into_iter().enumerate() {
        assert_eq!(reason as usize, i, "ALL is in declaration order");
        for _ in 0..=i {
            m.backchannel_rejected(reason);
        }
    }
    let mut out = String::new();
    m.render_backchannel(&mut out);
    for (i, reason) in LogoutReason::ALL.into_iter().enumerate() {
        let series = format!(
            "revgate_backchannel_logouts_total{{result=\"rejected\",reason=\"{}\"}} {}\n",
            reason.label(),
            i + 1
        );
        assert!(out.contains(&series), "{series} in {out}");
    }
}

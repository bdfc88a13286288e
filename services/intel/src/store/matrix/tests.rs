use super::*;

#[test]
fn ranges_read_whole_days_and_hours_from_the_rollup_and_only_edges_raw() {
    let day = DAY_US;
    let from = 2 * day + 90 * 60 * 1_000_000; // day 2, 01:30
    let to = 5 * day + 3 * HOUR_US + 17; // day 5, 03:00 and a bit
    assert_eq!(
        plan(from, to),
        vec![
            Segment::Raw(from, 2 * day + 2 * HOUR_US),
            Segment::Rollup(HOUR_US, 2 * day + 2 * HOUR_US, 3 * day),
            Segment::Rollup(DAY_US, 3 * day, 5 * day),
            Segment::Rollup(HOUR_US, 5 * day, 5 * day + 3 * HOUR_US),
            Segment::Raw(5 * day + 3 * HOUR_US, to),
        ]
    );
    assert_eq!(plan(10, 20), vec![Segment::Raw(10, 20)], "inside one hour");
    assert_eq!(plan(20, 10), vec![], "empty");
    // Unbounded ranges stay in range and cover everything.
    let all = plan(i64::MIN, i64::MAX);
    assert!(all.iter().any(|s| matches!(s, Segment::Rollup(DAY_US, ..))));
    let covered: Vec<(i64, i64)> = all
        .iter()
        .map(|s| match *s {
            Segment::Raw(a, b) | Segment::Rollup(_, a, b) => (a, b),
        })
        .collect();
    assert_eq!(covered.first().unwrap().0, i64::MIN);
    assert!(covered.windows(2).all(|w| w[0].1 == w[1].0), "{covered:?}");
    assert_eq!(covered.last().unwrap().1, i64::MAX);
}

#[test]
fn filters_the_rollup_lacks_read_raw_rows_and_values_are_bound() {
    let filter = MatrixFilter {
        from_us: 0,
        to_us: 10 * DAY_US,
        entity: Some("10.0.0.5' OR 1=1".into()),
        ..Default::default()
    };
    let queries = count_queries("c", &filter);
    assert_eq!(queries.len(), 1);
    assert!(queries[0].0.contains("observation_entities"));
    assert!(!queries[0].0.contains("OR 1=1"), "values are never spliced into SQL");
    let filter = MatrixFilter {
        detector: Some("zeek".into()),
        min_severity: Some(3),
        ..filter
    };
    let queries = count_queries("c", &MatrixFilter { entity: None, ..filter });
    assert!(queries.iter().any(|(sql, _)| sql.contains("observation_rollup")));
    assert!(queries.iter().all(|(sql, _)| sql.contains("severity >= $")));
}

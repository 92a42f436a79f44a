#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn roundtrip(old: &Value, new: &Value) -> Value {
    let patch = diff(old, new);
    let mut base = old.clone();
    apply(&mut base, patch.clone()).unwrap();
    assert_eq!(&base, new, "in memory, patch {patch}");
    patch
}

/// Through JSON text, as the reader sees it: base and patch both parsed back.
fn roundtrip_text(old: &Value, new: &Value) {
    let patch = diff(old, new);
    let mut base: Value = serde_json::from_str(&old.to_string()).unwrap();
    let patch: Value = serde_json::from_str(&patch.to_string()).unwrap();
    apply(&mut base, patch).unwrap();
    let want: Value = serde_json::from_str(&new.to_string()).unwrap();
    assert_eq!(base, want);
}

#[test]
fn equal_values_give_the_empty_patch() {
    let v = json!({"a": [1, 2, {"tid": 3, "x": null}], "b": "s"});
    assert_eq!(roundtrip(&v, &v), json!({}));
    assert_eq!(roundtrip(&json!([]), &json!([])), json!({}));
}

#[test]
fn idle_threads_cost_only_what_changed() {
    let threads = |bump: u64| {
        (0..1000)
            .map(|t| json!({"tid": t, "name": "worker", "cpu_ticks": if t == 500 { 10 + bump } else { 10 }}))
            .collect::<Vec<_>>()
    };
    let old = json!({"threads": threads(0), "age_secs": 1.5});
    let new = json!({"threads": threads(3), "age_secs": 2.0});
    let patch = roundtrip(&old, &new);
    assert_eq!(
        patch,
        json!({"o": {"age_secs": {"+": 0.5},
                     "threads": {"a": [500, {"o": {"cpu_ticks": {"+": 3}}}, 499]}}})
    );
}

#[test]
fn keyed_arrays_follow_identity_through_inserts_and_removals() {
    let old =
        json!([{"tid": 1, "v": 1}, {"tid": 2, "v": 2}, {"tid": 3, "v": 3}, {"tid": 4, "v": 4}]);
    let new =
        json!([{"tid": 1, "v": 1}, {"tid": 9, "v": 9}, {"tid": 3, "v": 30}, {"tid": 4, "v": 4}]);
    let patch = roundtrip(&old, &new);
    assert_eq!(
        patch,
        json!({"a": [1, {"i": {"tid": 9, "v": 9}}, -1, {"o": {"v": {"+": 27}}}, 1]})
    );
    // Object identities (ProcKey) work too; a reordered item is re-sent whole.
    let old = json!([{"key": {"pid": 1, "start_time": 5}}, {"key": {"pid": 2, "start_time": 6}}]);
    let new = json!([{"key": {"pid": 2, "start_time": 6}}, {"key": {"pid": 1, "start_time": 5}}]);
    roundtrip(&old, &new);
}

#[test]
fn numbers_fields_and_types_change() {
    roundtrip(&json!(u64::MAX), &json!(0));
    roundtrip(&json!(-5), &json!(u64::MAX));
    roundtrip(&json!(0.1), &json!(0.3));
    roundtrip(&json!({"a": 1, "b": 2}), &json!({"b": null, "c": [1]}));
    roundtrip(&json!([1, 2, 3]), &json!([1, 2]));
    roundtrip(&json!([]), &json!([{"tid": 1}]));
    roundtrip(&json!({"tid": 1}), &json!([{"tid": 1}]));
}

#[test]
fn patches_that_do_not_fit_are_errors_not_panics() {
    let cases = [
        (json!(1), json!({"o": {}})),
        (json!([1]), json!({"a": [2]})),
        (json!([1]), json!({"a": [-2]})),
        (json!({}), json!({"o": {"x": {"+": 1}}})),
        (json!("s"), json!({"+": 1})),
        (json!(1), json!([])),
        (json!(1), json!({"?": 1})),
        (json!(u64::MAX), json!({"+": 1})),
    ];
    for (mut base, patch) in cases {
        assert!(apply(&mut base, patch).is_err());
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-10_000i64..10_000).prop_map(|n| Value::from(n as f64 / 64.0)),
        "[a-c]{0,3}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner.clone(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            // Arrays of identified items, ids drawn from a small range so they collide.
            prop::collection::vec((0u8..8, inner), 0..6).prop_map(|items| {
                Value::Array(
                    items
                        .into_iter()
                        .map(|(id, v)| json!({"tid": id, "v": v}))
                        .collect(),
                )
            }),
        ]
    })
}

/// A value and an edited copy: small edits are where the keyed diff does its work.
fn edited_pair() -> impl Strategy<Value = (Value, Value)> {
    (
        prop::collection::vec((0u16..64, leaf()), 0..40),
        prop::collection::vec((any::<bool>(), any::<bool>(), leaf()), 40),
        prop::collection::vec((0u16..64, leaf()), 0..4),
    )
        .prop_map(|(items, edits, inserts)| {
            let old: Vec<Value> = items
                .iter()
                .map(|(id, v)| json!({"tid": id, "v": v}))
                .collect();
            let mut new = Vec::new();
            for (i, item) in old.iter().enumerate() {
                let (keep, change, v) = &edits[i % edits.len()];
                if !keep && i % 3 == 0 {
                    continue;
                }
                let mut item = item.clone();
                if *change {
                    item["v"] = v.clone();
                }
                new.push(item);
            }
            for (k, (id, v)) in inserts.into_iter().enumerate() {
                let at = (k * 7) % (new.len() + 1);
                new.insert(at, json!({"tid": id, "v": v}));
            }
            (json!({"threads": old}), json!({"threads": new}))
        })
}

proptest! {
    #[test]
    fn diff_then_apply_gives_the_new_value(old in json_value(), new in json_value()) {
        roundtrip(&old, &new);
        roundtrip_text(&old, &new);
    }

    #[test]
    fn edited_values_round_trip((old, new) in edited_pair()) {
        roundtrip(&old, &new);
        roundtrip_text(&old, &new);
        roundtrip(&new, &old);
    }
}

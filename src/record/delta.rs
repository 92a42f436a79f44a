//! Delta encoding of one JSON value against the previous one of the same delta key: a patch
//! is itself a JSON value, positional against the base, so applying it needs no identity
//! fields, only the right base (the frame layer guarantees that). The diff matches array
//! items by an identity field (`key`, `tid`, `id`, ...) so an idle snapshot of 1,000 threads
//! costs a few bytes per changed counter. Patch grammar (see `docs/recording.md`):
//!
//! - `{}`: no change (only at the top: nested equal values have no patch at all).
//! - `{"=": v}`: replace with `v`.
//! - `{"+": d}`: add the number `d` (only written when `old + d` is exactly `new`).
//! - `{"o": {field: P, ...}, "r": [field, ...]}`: patch fields (a new field's P is `{"=": v}`),
//!   then remove the fields in `"r"` (omitted when empty).
//! - `{"a": [op, ...]}`: rebuild an array from the base with a cursor. `n > 0`: copy `n`
//!   items; `n < 0`: drop `-n` items; `{"i": v}`: insert `v`; any other patch `P`: the next
//!   base item patched by `P`. Base items left after the last op are dropped.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// Fields that identify an item of an array of objects, tried in this order.
pub const ID_FIELDS: &[&str] = &["key", "tid", "id", "native_id", "pid"];

/// A patch does not fit the value it is applied to (wrong base or a malformed patch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("patch does not fit its base: {0}")]
pub struct ApplyError(pub &'static str);

/// The patch turning `old` into `new`; `{}` (no op) when they are equal.
pub fn diff(old: &Value, new: &Value) -> Value {
    diff_inner(old, new).unwrap_or_else(|| Value::Object(Map::new()))
}

/// True when `patch` is a whole replacement (the delta is no smaller than a keyframe).
pub fn is_replace(patch: &Value) -> bool {
    patch.as_object().is_some_and(|m| m.contains_key("="))
}

pub(super) fn op(name: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(name.into(), v);
    Value::Object(m)
}

/// `None` when equal.
pub(super) fn diff_inner(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => diff_object(a, b),
        (Value::Array(a), Value::Array(b)) => diff_array(a, b),
        (Value::Number(a), Value::Number(b)) => {
            if a == b {
                None
            } else {
                Some(num_delta(a, b).unwrap_or_else(|| op("=", new.clone())))
            }
        }
        _ if old == new => None,
        _ => Some(op("=", new.clone())),
    }
}

/// `{"+": d}` when `old + d` reproduces `new` exactly (also after `d` goes through JSON text).
fn num_delta(a: &Number, b: &Number) -> Option<Value> {
    if let (Some(x), Some(y)) = (int_of(a), int_of(b)) {
        let d = i64::try_from(y - x).ok()?;
        return Some(op("+", Value::from(d)));
    }
    if a.is_f64() != b.is_f64() {
        return None; // an integer stays an integer and a float a float
    }
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let d = y - x;
    // The reader sees `d` parsed back from text: check that path, not only the arithmetic.
    // The base is also text to the reader: with serde_json's default float parser (before
    // the `float_roundtrip` feature was on) 1.2805938630801233e120 read back one ulp off;
    // a base that does not survive the trip gets a replacement, never an addition to a
    // drifted value (kept: recordings outlive the parser they were written with).
    let through_text =
        |v: f64| -> Option<f64> { serde_json::from_str(&serde_json::to_string(&v).ok()?).ok() };
    let d_read = through_text(d)?;
    let x_read = through_text(x)?;
    // And the new value: a reader of a full frame gets `y` parsed from text, so a delta
    // must give the same (what text would have given), or it is a replacement.
    let y_read = through_text(y)?;
    if d.is_finite()
        && d_read.to_bits() == d.to_bits()
        && x_read.to_bits() == x.to_bits()
        && y_read.to_bits() == y.to_bits()
        && (x + d).to_bits() == y.to_bits()
    {
        Some(op("+", Value::from(d)))
    } else {
        None
    }
}

fn int_of(n: &Number) -> Option<i128> {
    n.as_u64()
        .map(i128::from)
        .or_else(|| n.as_i64().map(i128::from))
}

fn add(base: &Number, d: &Number) -> Result<Number, ApplyError> {
    if let (Some(x), Some(y)) = (int_of(base), int_of(d)) {
        let s = x + y;
        return u64::try_from(s)
            .map(Number::from)
            .or_else(|_| i64::try_from(s).map(Number::from))
            .map_err(|_| ApplyError("integer add overflows"));
    }
    let (x, y) = (base.as_f64(), d.as_f64());
    match (x, y) {
        (Some(x), Some(y)) => Number::from_f64(x + y).ok_or(ApplyError("float add not finite")),
        _ => Err(ApplyError("add on a non-number")),
    }
}

fn diff_object(a: &Map<String, Value>, b: &Map<String, Value>) -> Option<Value> {
    let mut fields = Map::new();
    // Both maps iterate in key order (serde_json's BTreeMap), so walking `a` alongside `b`
    // finds most fields without a lookup; `get` stays the fallback, so any order is correct.
    let mut walk = a.iter().peekable();
    for (k, nv) in b {
        while walk.next_if(|(ka, _)| ka.as_str() < k.as_str()).is_some() {}
        let old = match walk.next_if(|(ka, _)| *ka == k) {
            Some((_, ov)) => Some(ov),
            None => a.get(k),
        };
        match old {
            Some(ov) => {
                if let Some(p) = diff_inner(ov, nv) {
                    fields.insert(k.clone(), p);
                }
            }
            None => {
                fields.insert(k.clone(), op("=", nv.clone()));
            }
        }
    }
    let removed: Vec<Value> = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(|k| Value::String(k.clone()))
        .collect();
    if fields.is_empty() && removed.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("o".into(), Value::Object(fields));
    if !removed.is_empty() {
        m.insert("r".into(), Value::Array(removed));
    }
    Some(Value::Object(m))
}

fn id_of(v: &Value) -> Option<&Value> {
    let m = v.as_object()?;
    ID_FIELDS.iter().find_map(|f| m.get(*f))
}

pub(super) struct Ops(pub(super) Vec<Value>);

impl Ops {
    /// A copy (`n > 0`) or drop (`n < 0`) run, merged with the previous one of its sign.
    pub(super) fn run(&mut self, n: i64) {
        if let Some(last) = self.0.last_mut()
            && let Some(l) = last.as_i64()
            && (l > 0) == (n > 0)
        {
            *last = Value::from(l + n);
            return;
        }
        self.0.push(Value::from(n));
    }
    fn item(&mut self, old: &Value, new: &Value) {
        match diff_inner(old, new) {
            None => self.run(1),
            Some(p) => self.0.push(p),
        }
    }
}

fn diff_array(a: &[Value], b: &[Value]) -> Option<Value> {
    let keyed = !a.is_empty()
        && !b.is_empty()
        && a.iter().all(|v| id_of(v).is_some())
        && b.iter().all(|v| id_of(v).is_some());
    let containers = |s: &[Value]| s.iter().all(|v| v.is_object() || v.is_array());
    let mut ops = Ops(Vec::new());
    if keyed {
        diff_keyed(a, b, &mut ops);
    } else if a.len() == b.len() && containers(a) && containers(b) {
        for (o, n) in a.iter().zip(b) {
            ops.item(o, n);
        }
    } else if a == b {
        return None;
    } else {
        return Some(op("=", Value::Array(b.to_vec())));
    }
    if let [Value::Number(n)] = ops.0.as_slice()
        && n.as_u64() == Some(a.len() as u64)
        && a.len() == b.len()
    {
        return None;
    }
    if ops.0.is_empty() && a.is_empty() && b.is_empty() {
        return None;
    }
    Some(op("a", Value::Array(ops.0)))
}

fn diff_keyed(a: &[Value], b: &[Value], ops: &mut Ops) {
    // Built only when items appear, vanish or move: the idle case never hashes.
    let mut by_id: Option<HashMap<String, usize>> = None;
    let mut cursor = 0usize;
    for item in b {
        let id = id_of(item);
        let found = if cursor < a.len() && id_of(&a[cursor]) == id {
            Some(cursor)
        } else {
            let map = by_id.get_or_insert_with(|| {
                let mut m = HashMap::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    if let Some(id) = id_of(v) {
                        m.entry(id.to_string()).or_insert(i);
                    }
                }
                m
            });
            id.and_then(|id| map.get(&id.to_string()).copied())
                .filter(|&j| j >= cursor)
        };
        match found {
            Some(j) => {
                if j > cursor {
                    ops.run(-((j - cursor) as i64));
                }
                ops.item(&a[j], item);
                cursor = j + 1;
            }
            None => ops.0.push(op("i", item.clone())),
        }
    }
}

/// Apply `patch` to `base` in place. On error `base` may be half patched: drop it.
pub fn apply(base: &mut Value, patch: Value) -> Result<(), ApplyError> {
    let Value::Object(mut p) = patch else {
        return Err(ApplyError("patch is not an object"));
    };
    if p.is_empty() {
        return Ok(());
    }
    if let Some(v) = p.remove("=") {
        *base = v;
        return Ok(());
    }
    if let Some(d) = p.remove("+") {
        let (Value::Number(b), Value::Number(d)) = (&*base, &d) else {
            return Err(ApplyError("add on a non-number"));
        };
        *base = Value::Number(add(b, d)?);
        return Ok(());
    }
    if let Some(fields) = p.remove("o") {
        let (Value::Object(obj), Value::Object(fields)) = (&mut *base, fields) else {
            return Err(ApplyError("object patch on a non-object"));
        };
        for (k, fp) in fields {
            match obj.get_mut(&k) {
                Some(slot) => apply(slot, fp)?,
                None => {
                    let Value::Object(mut fp) = fp else {
                        return Err(ApplyError("new field without a value"));
                    };
                    let v = fp
                        .remove("=")
                        .ok_or(ApplyError("new field without a value"))?;
                    obj.insert(k, v);
                }
            }
        }
        if let Some(Value::Array(removed)) = p.remove("r") {
            for k in removed {
                if let Value::String(k) = k {
                    obj.remove(&k);
                }
            }
        }
        return Ok(());
    }
    if let Some(Value::Array(ops)) = p.remove("a") {
        let Value::Array(old) = base else {
            return Err(ApplyError("array patch on a non-array"));
        };
        let mut old = std::mem::take(old).into_iter();
        let mut out = Vec::with_capacity(old.len());
        for o in ops {
            match o {
                Value::Number(n) => {
                    let n = n.as_i64().ok_or(ApplyError("bad run length"))?;
                    if n > 0 {
                        for _ in 0..n {
                            out.push(old.next().ok_or(ApplyError("copy past the end"))?);
                        }
                    } else {
                        for _ in 0..n.unsigned_abs() {
                            old.next().ok_or(ApplyError("drop past the end"))?;
                        }
                    }
                }
                Value::Object(mut m) if m.len() == 1 && m.contains_key("i") => {
                    out.push(m.remove("i").unwrap_or(Value::Null));
                }
                item_patch @ Value::Object(_) => {
                    let mut v = old.next().ok_or(ApplyError("patch past the end"))?;
                    apply(&mut v, item_patch)?;
                    out.push(v);
                }
                _ => return Err(ApplyError("bad array op")),
            }
        }
        *base = Value::Array(out);
        return Ok(());
    }
    Err(ApplyError("unknown patch op"))
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;

//! Typed delta encoding: the patch [`super::diff`] would write between the JSON of two typed
//! values, built from the typed values themselves, so a snapshot whose 1,000 threads did not
//! change is compared with `PartialEq` and never turned into a `Value` tree. Only what changed
//! is serialized (a changed field, an inserted item). The building blocks reproduce the JSON
//! diff exactly (same patch, same bytes): [`ObjectPatch`] for a struct's fields (serde's
//! field names, no renames, every field always present), [`keyed_array`] for a `Vec` whose
//! items carry an identity field (`key`, `tid`, ...). A type implements [`TypedDelta`] with
//! them and is appended with [`super::Writer::append_typed`], which keeps the typed value as
//! the next delta base.

use super::delta::{Ops, diff_inner, op};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// What [`TypedDelta::typed_diff`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedDiff {
    /// The two values serialize to equal JSON (the patch is `{}`).
    Same,
    /// The patch, exactly as `diff(&to_value(old), &to_value(new))` writes it.
    Patch(Value),
    /// No typed diff for this pair (say, two different enum variants): diff the JSON trees.
    Untyped,
}

/// A value the writer can delta-encode without building the JSON tree of either side.
pub trait TypedDelta: Serialize + Send + 'static {
    /// The patch from `old`'s JSON to `self`'s, equal to what [`super::diff`] gives for
    /// `serde_json::to_value` of both (tests must check that: it is what a reader rebuilds).
    fn typed_diff(&self, old: &Self) -> Result<TypedDiff, serde_json::Error>;
}

impl<T: TypedDelta + Sync> TypedDelta for Arc<T> {
    fn typed_diff(&self, old: &Self) -> Result<TypedDiff, serde_json::Error> {
        if Arc::ptr_eq(self, old) {
            return Ok(TypedDiff::Same);
        }
        (**self).typed_diff(old)
    }
}

/// The patch of one JSON object built field by field (`{"o": {...}}`, `None` when equal).
#[derive(Debug, Default)]
pub struct ObjectPatch {
    fields: Map<String, Value>,
}

impl ObjectPatch {
    /// Field `name` went from `old` to `new`: serialized (both sides, that field only) and
    /// diffed when they differ.
    pub fn field<T: Serialize + PartialEq + ?Sized>(
        &mut self,
        name: &str,
        old: &T,
        new: &T,
    ) -> Result<(), serde_json::Error> {
        if old != new {
            let p = diff_inner(&serde_json::to_value(old)?, &serde_json::to_value(new)?);
            self.patch(name, p);
        }
        Ok(())
    }

    /// Field `name`'s patch, computed by the caller (`None`: unchanged).
    pub fn patch(&mut self, name: &str, patch: Option<Value>) {
        if let Some(p) = patch {
            self.fields.insert(name.to_owned(), p);
        }
    }

    /// The object's patch; `None` when no field changed.
    pub fn finish(self) -> Option<Value> {
        if self.fields.is_empty() {
            return None;
        }
        Some(op("o", Value::Object(self.fields)))
    }
}

/// The patch of an array whose items are JSON objects with an identity field (the one
/// [`super::ID_FIELDS`] finds first in the item's JSON): `id` gives it typed (equal ids ⇔
/// equal JSON ids), `item` the patch of one matched item that is not `==` (`None`: equal
/// JSON after all). `None` when the arrays serialize equal.
pub fn keyed_array<T, K, F>(
    a: &[T],
    b: &[T],
    id: impl Fn(&T) -> K,
    mut item: F,
) -> Result<Option<Value>, serde_json::Error>
where
    T: Serialize + PartialEq,
    K: Hash + Eq,
    F: FnMut(&T, &T) -> Result<Option<Value>, serde_json::Error>,
{
    if a.is_empty() || b.is_empty() {
        // Not keyed for the JSON diff either (an empty array has no identities).
        return Ok(diff_inner(
            &serde_json::to_value(a)?,
            &serde_json::to_value(b)?,
        ));
    }
    // As `delta::diff_keyed`: built only when items appear, vanish or move; first index wins.
    let mut by_id: Option<HashMap<K, usize>> = None;
    let mut ops = Ops(Vec::new());
    let mut cursor = 0usize;
    for new in b {
        let key = id(new);
        let found = if cursor < a.len() && id(&a[cursor]) == key {
            Some(cursor)
        } else {
            let map = by_id.get_or_insert_with(|| {
                let mut m = HashMap::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    m.entry(id(v)).or_insert(i);
                }
                m
            });
            map.get(&key).copied().filter(|&j| j >= cursor)
        };
        match found {
            Some(j) => {
                if j > cursor {
                    ops.run(-((j - cursor) as i64));
                }
                let old = &a[j];
                match if old == new { None } else { item(old, new)? } {
                    None => ops.run(1),
                    Some(p) => ops.0.push(p),
                }
                cursor = j + 1;
            }
            None => ops.0.push(op("i", serde_json::to_value(new)?)),
        }
    }
    // As `delta::diff_array`: one copy run over all of an equal-length base is no change.
    if let [Value::Number(n)] = ops.0.as_slice()
        && n.as_u64() == Some(a.len() as u64)
        && a.len() == b.len()
    {
        return Ok(None);
    }
    Ok(Some(op("a", Value::Array(ops.0))))
}

//! Reference values: what attestation policies compare claims with (`data.reference_values`
//! in ours, `query_reference_value(name)` in trustee's).
//!
//! Each value is stored under its name as JSON. Names this broker knows are checked on the way
//! in: ours (`snp_launch_measurement` as a list of 96-hex-digit digests, `snp_min_<component>`
//! as one SPL) and trustee's (`snp_<field>` lists of strings or numbers, as trustee's RVPS
//! hands them to its policies: `snp_bootloader`, `snp_microcode`, `snp_snp_svn`,
//! `snp_tee_svn`, `snp_fmc`, `snp_measurement`, `snp_launch_measurement`, ...).
//! Other names pass as any JSON, for custom policies.

use std::sync::Mutex;

use serde_json::Value;

use crate::error::KbsError;
use crate::storage::{Namespace, Storage};

/// The reference value of launch measurements, appended to by `reference-value add`.
pub const LAUNCH_MEASUREMENT: &str = "snp_launch_measurement";

/// Trustee's SNP reference-value names whose items are TCB SPLs: lists of numbers (a
/// policy's `x in query_reference_value(...)` compares types, so "3" would never match 3).
const TRUSTEE_TCB: [&str; 5] = [
    "snp_bootloader",
    "snp_microcode",
    "snp_snp_svn",
    "snp_tee_svn",
    "snp_fmc",
];

/// Serialises read-modify-write of list values in this process (add/remove are an append
/// and a removal, never a lost update between two admins of one broker).
static LIST_WRITES: Mutex<()> = Mutex::new(());

fn is_hex_digest(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks the format of a reference value this broker's policies, or trustee's, read.
///
/// # Errors
/// [`KbsError::Rvps`] naming the value and what is wrong.
pub fn check(name: &str, value: &Value) -> Result<(), KbsError> {
    let bad = |why: String| Err(KbsError::Rvps(format!("{name}: {why}")));
    if name == LAUNCH_MEASUREMENT || name == "snp_measurement" {
        let Some(list) = value.as_array() else {
            return bad("must be a list of 96-hex-digit measurements".into());
        };
        for m in list {
            if !m.as_str().is_some_and(|s| is_hex_digest(s, 96)) {
                return bad(format!("{m} is not a 96-hex-digit measurement"));
            }
        }
    } else if name.starts_with("snp_min_") {
        if value.as_u64().is_none_or(|n| n > 255) {
            return bad(format!("{value} is not an SPL between 0 and 255"));
        }
        let known = ["bootloader", "tee", "snp", "microcode", "fmc"];
        if !known.iter().any(|k| name == format!("snp_min_{k}")) {
            return bad(format!(
                "unknown TCB component (known: {})",
                known.join(", ")
            ));
        }
    } else if TRUSTEE_TCB.contains(&name) {
        let Some(list) = value.as_array() else {
            return bad("must be a list of SPLs, e.g. [3] (trustee's shape)".into());
        };
        for v in list {
            if v.as_u64().is_none_or(|n| n > 255) {
                return bad(format!(
                    "{v} is not an SPL between 0 and 255 (numbers, not strings: policies compare types)"
                ));
            }
        }
    }
    Ok(())
}

fn storage_err(e: crate::storage::StorageError) -> KbsError {
    KbsError::Internal(e.to_string())
}

fn load(storage: &dyn Storage, name: &str) -> Result<Option<Value>, KbsError> {
    storage
        .get(Namespace::ReferenceValue, name)
        .map_err(storage_err)?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| KbsError::Internal(format!("reference value {name}: {e}")))
        })
        .transpose()
}

/// Every stored reference value as one JSON object.
///
/// # Errors
/// [`KbsError::Internal`] on storage failure or corrupt values.
pub fn all(storage: &dyn Storage) -> Result<Value, KbsError> {
    let mut out = serde_json::Map::new();
    for (name, bytes) in storage
        .list(Namespace::ReferenceValue)
        .map_err(storage_err)?
    {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| KbsError::Internal(format!("reference value {name}: {e}")))?;
        out.insert(name, v);
    }
    Ok(Value::Object(out))
}

/// Appends `item` to the list `name` (created when absent; an item already there is kept
/// once). Returns the list.
///
/// # Errors
/// [`KbsError::Rvps`] when `name` holds no list or the result is not a valid value.
pub fn add(storage: &dyn Storage, name: &str, item: Value) -> Result<Value, KbsError> {
    let _one = LIST_WRITES.lock().unwrap_or_else(|p| p.into_inner());
    let mut list = match load(storage, name)? {
        None => Vec::new(),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(KbsError::Rvps(format!(
                "{name} holds {other}, not a list: set it with `reference-value set`"
            )))
        }
    };
    let item = normalise(name, item);
    if !list.contains(&item) {
        list.push(item);
    }
    let value = Value::Array(list);
    check(name, &value)?;
    storage
        .put(
            Namespace::ReferenceValue,
            name,
            value.to_string().as_bytes(),
        )
        .map_err(storage_err)?;
    Ok(value)
}

/// Removes `item` from the list `name`. Returns the list.
///
/// # Errors
/// [`KbsError::ResourceNotFound`] when the list or the item is not there.
pub fn remove(storage: &dyn Storage, name: &str, item: Value) -> Result<Value, KbsError> {
    let _one = LIST_WRITES.lock().unwrap_or_else(|p| p.into_inner());
    let item = normalise(name, item);
    let Some(Value::Array(mut list)) = load(storage, name)? else {
        return Err(KbsError::ResourceNotFound(format!(
            "reference value list {name}"
        )));
    };
    let before = list.len();
    list.retain(|v| v != &item);
    if list.len() == before {
        return Err(KbsError::ResourceNotFound(format!(
            "{item} in reference value {name}"
        )));
    }
    let value = Value::Array(list);
    storage
        .put(
            Namespace::ReferenceValue,
            name,
            value.to_string().as_bytes(),
        )
        .map_err(storage_err)?;
    Ok(value)
}

/// Measurements compare in lower case (the policies lower-case the claim too).
fn normalise(name: &str, item: Value) -> Value {
    match (name, item) {
        (LAUNCH_MEASUREMENT | "snp_measurement", Value::String(s)) => {
            Value::String(s.to_ascii_lowercase())
        }
        (_, other) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteStorage;
    use serde_json::json;

    #[test]
    fn add_appends_once_and_remove_takes_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(&dir.path().join("kbs.db")).unwrap();
        let a = "AB".repeat(48);
        let b = "cd".repeat(48);
        assert_eq!(
            add(&s, LAUNCH_MEASUREMENT, json!(a)).unwrap(),
            json!([a.to_lowercase()])
        );
        add(&s, LAUNCH_MEASUREMENT, json!(b)).unwrap();
        let both = add(&s, LAUNCH_MEASUREMENT, json!(a)).unwrap();
        assert_eq!(both, json!([a.to_lowercase(), b]), "appended, no duplicate");
        assert_eq!(
            remove(&s, LAUNCH_MEASUREMENT, json!(a)).unwrap(),
            json!([b])
        );
        assert!(matches!(
            remove(&s, LAUNCH_MEASUREMENT, json!(a)),
            Err(KbsError::ResourceNotFound(_))
        ));
        assert!(matches!(
            add(&s, LAUNCH_MEASUREMENT, json!("not-hex")),
            Err(KbsError::Rvps(_))
        ));
        assert_eq!(all(&s).unwrap()[LAUNCH_MEASUREMENT], json!([b]));
    }

    #[test]
    fn trustee_shaped_values_are_checked() {
        check("snp_bootloader", &json!([3])).unwrap();
        check("snp_snp_svn", &json!([8, 9])).unwrap();
        check("snp_tee_svn", &json!([0])).unwrap();
        assert!(check("snp_microcode", &json!(115)).is_err(), "not a list");
        assert!(check("snp_microcode", &json!(["115"])).is_err(), "a string");
        assert!(check("snp_microcode", &json!([256])).is_err());
        // Trustee's configuration values are scalars compared with ==.
        check("snp_smt_enabled", &json!(true)).unwrap();
        check("snp_guest_abi_major", &json!(0)).unwrap();
        check("my_custom_value", &json!({"any": "shape"})).unwrap();
    }
}

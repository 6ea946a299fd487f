//! Defaulting of built-in kinds, following the upstream `SetDefaults_*` functions
//! (and the few admission plugins whose effect every user sees, such as the
//! `default` service account).

pub(crate) mod core;
pub(crate) mod pod;
pub(crate) mod workloads;

/// Sets `slot` to `value` when it is unset.
pub(crate) fn or<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Sets a string `slot` to `value` when it is unset or empty (Go's zero value).
pub(crate) fn or_str(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().is_none_or(str::is_empty) {
        *slot = Some(value.to_string());
    }
}

#[cfg(test)]
mod tests;

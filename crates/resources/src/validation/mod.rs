//! Validation of built-in kinds: field paths and messages follow upstream
//! (`pkg/apis/*/validation`) so that `kubectl` shows familiar errors.

pub(crate) mod meta;
pub(crate) mod names;

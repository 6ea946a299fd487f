/// Patch-relevant metadata of one field, from the OpenAPI extensions
/// `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
/// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMeta {
    /// `merge`, `replace`, `retainKeys` or `merge,retainKeys`.
    pub patch_strategy: Option<String>,
    pub patch_merge_key: Option<String>,
    /// `atomic`, `set` or `map`.
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    /// `atomic` or `granular` (for maps and structs).
    pub map_type: Option<String>,
}

/// Looks up [`FieldMeta`] for a field of one kind.
///
/// `path` is the chain of property names from the object root; list items add
/// nothing to the path (so `["spec", "template", "spec", "containers", "ports"]`
/// names every container's `ports`). Map values (`additionalProperties`) are
/// addressed by the literal map key. `None` means "no metadata": plain replace for
/// lists, recursive merge for objects.
pub trait PatchSchema: Send + Sync {
    fn field(&self, path: &[&str]) -> Option<FieldMeta>;
}

/// A schema that knows nothing: every list is atomic. Used for kinds without
/// metadata (and in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSchema;

impl PatchSchema for NoSchema {
    fn field(&self, _path: &[&str]) -> Option<FieldMeta> {
        None
    }
}

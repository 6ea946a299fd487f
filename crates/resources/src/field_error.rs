use serde_json::Value;

/// The kind of a validation failure, as Kubernetes names them (`field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl ErrorType {
    /// The `StatusCause.reason` Kubernetes uses, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }
}

/// One invalid field: becomes a `StatusCause` of a 422 `Invalid` Status.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path as Kubernetes prints it: `spec.template.spec.containers[0].image`,
    /// `metadata.labels[app]`.
    pub field: String,
    pub kind: ErrorType,
    /// The offending value, when there is one to show.
    pub value: Option<Value>,
    /// Human explanation (for `NotSupported`: the supported values, pre-formatted).
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: ErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value), detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self::new(
            ErrorType::NotSupported,
            field,
            Some(value),
            format!("supported values: {}", list.join(", ")),
        )
    }
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value), "")
    }

    /// The cause message without the field, as Kubernetes formats it, e.g.
    /// `Invalid value: -1: must be greater than or equal to 0`.
    pub fn message(&self) -> String {
        let head = match self.kind {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
        };
        let mut out = head.to_string();
        let shows_value = matches!(
            self.kind,
            ErrorType::Invalid
                | ErrorType::NotSupported
                | ErrorType::Duplicate
                | ErrorType::TooMany
                | ErrorType::NotFound
        );
        if shows_value {
            if let Some(v) = &self.value {
                out.push_str(": ");
                out.push_str(&render_value(v));
            }
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_match_kubernetes_wording() {
        let e = FieldError::invalid(
            "spec.replicas",
            json!(-1),
            "must be greater than or equal to 0",
        );
        assert_eq!(
            e.message(),
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(e.kind.reason(), "FieldValueInvalid");
        let e = FieldError::required("spec.containers", "");
        assert_eq!(e.message(), "Required value");
        let e = FieldError::not_supported(
            "spec.restartPolicy",
            json!("Sometimes"),
            &["Always", "Never"],
        );
        assert_eq!(
            e.message(),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\""
        );
    }
}

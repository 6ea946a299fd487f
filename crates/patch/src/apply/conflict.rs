//! Apply conflicts and their Kubernetes wording.

use super::managed::Operation;

/// A field the applier wanted to change but another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name.
    pub manager: String,
    pub operation: Operation,
    /// The owner's apiVersion (printed for Update owners only, like upstream).
    pub api_version: String,
    pub subresource: Option<String>,
    /// The field, as Kubernetes prints paths: `.data.a`,
    /// `.spec.containers[name="web"].image`.
    pub field: String,
}

impl Conflict {
    /// The owner as upstream prints it: `"m"` for an applier,
    /// `"m" using v1` for an updater, with `with subresource "status"` if any.
    pub fn manager_description(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn identity(&self) -> (&str, Operation, &str, &Option<String>) {
        (
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
    }
}

/// One entry of `details.causes` in the 409 Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCause {
    /// Always `FieldManagerConflict`.
    pub reason: &'static str,
    /// `conflict with "m" using v1`.
    pub message: String,
    /// `.data.a`.
    pub field: String,
}

/// Orders conflicts like the message lists them: by owner, then path.
pub(crate) fn sort(conflicts: &mut [Conflict]) {
    conflicts.sort_by(|a, b| {
        a.identity()
            .cmp(&b.identity())
            .then_with(|| a.field.cmp(&b.field))
    });
}

/// The Status `message` for a failed apply.
pub(crate) fn message(conflicts: &[Conflict]) -> String {
    match conflicts {
        [] => "Apply failed with 0 conflicts".to_string(),
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager_description(),
            one.field
        ),
        many => {
            let mut lines = Vec::new();
            let mut last = None;
            for c in many {
                if last != Some(c.identity()) {
                    lines.push(format!("conflicts with {}:", c.manager_description()));
                    last = Some(c.identity());
                }
                lines.push(format!("- {}", c.field));
            }
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    }
}

pub(crate) fn causes(conflicts: &[Conflict]) -> Vec<ConflictCause> {
    conflicts
        .iter()
        .map(|c| ConflictCause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {}", c.manager_description()),
            field: c.field.clone(),
        })
        .collect()
}

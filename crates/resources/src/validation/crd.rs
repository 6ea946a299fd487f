//! CustomResourceDefinition validation: delegated to the CRD serving code, which
//! checks names, versions and the structural schema together.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::FieldError;

pub(crate) fn crd(
    c: &CustomResourceDefinition,
    old: Option<&CustomResourceDefinition>,
) -> Vec<FieldError> {
    let Ok(value) = serde_json::to_value(c) else {
        return vec![FieldError::invalid(
            "",
            serde_json::Value::Null,
            "the object could not be encoded",
        )];
    };
    let old = old.and_then(|o| serde_json::to_value(o).ok());
    crate::crd::validate_crd(&value, old.as_ref())
}

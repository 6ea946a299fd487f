//! Content negotiation: request bodies in, response shapes out.

use http::HeaderMap;
use serde_json::Value;

use crate::error::ApiError;

/// The largest request body accepted (Kubernetes' limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the client asked to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The object(s) as JSON.
    Object,
    /// `as=Table;g=meta.k8s.io;v=v1`, with rows' `object` per `includeObject`.
    Table,
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`.
    PartialMetadata,
}

pub fn negotiate(headers: &HeaderMap) -> Output {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable alternative wins, as the client lists them by preference.
    for alt in accept.split(',') {
        let alt = alt.trim();
        let params: Vec<&str> = alt.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && (has("g=meta.k8s.io") || !alt.contains("g=")) {
            return Output::Table;
        }
        if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList"))
            && has("g=meta.k8s.io")
        {
            return Output::PartialMetadata;
        }
        if params.first().is_some_and(|m| {
            matches!(
                *m,
                "application/json" | "*/*" | "application/*" | "application/yaml"
            ) || m.starts_with("application/vnd.kubernetes.protobuf")
        }) && !alt.contains("as=")
        {
            return Output::Object;
        }
    }
    Output::Object
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into())
}

/// Decode a JSON, YAML or Kubernetes protobuf body into a JSON value.
pub fn decode_body(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    match media {
        "application/json" | "" | "application/merge-patch+json" | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("error decoding JSON body: {e}"))
        }),
        "application/yaml" | "application/apply-patch+yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("error decoding YAML body: not valid UTF-8"))?;
            // JSON is valid YAML; parse it as JSON first to keep numbers exact.
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                return Ok(v);
            }
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => skiff_protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}"))),
        other => Err(ApiError::UnsupportedMediaType {
            message: format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(accept: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(http::header::ACCEPT, accept.parse().unwrap());
        m
    }

    #[test]
    fn kubectl_table_accept() {
        assert_eq!(
            negotiate(&h("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")),
            Output::Table
        );
        assert_eq!(negotiate(&h("application/json")), Output::Object);
        assert_eq!(
            negotiate(&h("application/vnd.kubernetes.protobuf,application/json")),
            Output::Object
        );
        assert_eq!(
            negotiate(&h(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Output::PartialMetadata
        );
    }

    #[test]
    fn yaml_and_json_bodies() {
        let v = decode_body("application/yaml", b"a: 1\nb: [x, y]\n").unwrap();
        assert_eq!(v["a"], 1);
        assert!(matches!(
            decode_body("application/json", b"{bad"),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            decode_body("application/foo", b"{}"),
            Err(ApiError::UnsupportedMediaType { .. })
        ));
    }
}

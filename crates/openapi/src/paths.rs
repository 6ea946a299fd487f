//! The REST paths and operations of a resource, rendered as OpenAPI v3 path items
//! or Swagger 2.0 path items.
//!
//! One neutral description ([`Op`]) is built per operation and rendered twice, so
//! both documents advertise the same verbs, parameters and patch types.

use serde_json::{json, Map, Value};
use skiff_resources::ResourceDef;

use crate::components::{Gvk, DELETE_OPTIONS, PATCH, SCALE, STATUS, WATCH_EVENT};

/// Which document a path item is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn schema_ref(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }
}

/// Schema names a resource's operations refer to.
pub(crate) struct ResourceSchemas<'a> {
    pub kind: &'a str,
    pub list: &'a str,
    /// Whether `application/strategic-merge-patch+json` is advertised: only for
    /// built-ins, whose schemas carry complete merge metadata (kubectl computes a
    /// strategic patch from the schemas when it sees this type).
    pub strategic_merge: bool,
}

#[derive(Clone, Copy)]
enum ParamType {
    String,
    Integer,
    Boolean,
}

type Param = (&'static str, ParamType, &'static str);

const PRETTY: Param = (
    "pretty",
    ParamType::String,
    "If 'true', the output is pretty printed.",
);
const DRY_RUN: Param = ("dryRun", ParamType::String, "When present (the only value is 'All'), the request is validated and admitted but not persisted.");
const FIELD_MANAGER: Param = (
    "fieldManager",
    ParamType::String,
    "Name of the actor making the change, recorded in managedFields.",
);
const FIELD_VALIDATION: Param = (
    "fieldValidation",
    ParamType::String,
    "What to do with unknown or duplicate fields in the body: Ignore, Warn or Strict.",
);
const FORCE: Param = (
    "force",
    ParamType::Boolean,
    "For apply patches: take ownership of fields that conflict with other managers.",
);

const LIST_PARAMS: &[Param] = &[
    ("allowWatchBookmarks", ParamType::Boolean, "Ask a watch to send BOOKMARK events."),
    ("continue", ParamType::String, "Continue token from a previous paginated list."),
    ("fieldSelector", ParamType::String, "Restrict the result by fields."),
    ("labelSelector", ParamType::String, "Restrict the result by labels."),
    ("limit", ParamType::Integer, "Maximum number of items to return; more may follow with the continue token."),
    ("resourceVersion", ParamType::String, "Which resourceVersion the result must be at least as new as (or equal to, see resourceVersionMatch)."),
    ("resourceVersionMatch", ParamType::String, "How resourceVersion applies: Exact or NotOlderThan."),
    ("sendInitialEvents", ParamType::Boolean, "Start a watch with synthetic ADDED events for the current state."),
    ("timeoutSeconds", ParamType::Integer, "Time limit of the list or watch call."),
    ("watch", ParamType::Boolean, "Stream changes instead of returning a list."),
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    (
        "gracePeriodSeconds",
        ParamType::Integer,
        "Seconds before the object is deleted; 0 deletes at once.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        ParamType::Boolean,
        "Delete an object that cannot be read back from storage.",
    ),
    (
        "orphanDependents",
        ParamType::Boolean,
        "Deprecated: use propagationPolicy.",
    ),
    (
        "propagationPolicy",
        ParamType::String,
        "Garbage collection of dependents: Orphan, Background or Foreground.",
    ),
];

const JSON: &str = "application/json";
const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const STRATEGIC: &str = "application/strategic-merge-patch+json";

/// One operation before rendering.
struct Op {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    gvk: Gvk,
    query: Vec<Param>,
    /// Request body schema and its content types.
    body: Option<(String, Vec<&'static str>)>,
    /// Response schema and whether 201 is possible.
    response: String,
    created: bool,
    stream: bool,
}

/// A path and its operations before rendering.
struct Item {
    path: String,
    namespaced: bool,
    named: bool,
    ops: Vec<Op>,
}

/// Every path of `def` (collection, item, status, scale, all-namespaces list and
/// the watch paths), each with the operations its verbs allow, rendered for `flavor`.
pub(crate) fn resource_paths(
    def: &ResourceDef,
    schemas: &ResourceSchemas<'_>,
    flavor: Flavor,
) -> Vec<(String, Value)> {
    items(def, schemas)
        .into_iter()
        .filter(|item| !item.ops.is_empty())
        .map(|item| (item.path.clone(), render_item(&item, def, flavor)))
        .collect()
}

fn items(def: &ResourceDef, schemas: &ResourceSchemas<'_>) -> Vec<Item> {
    let can = |verb: &str| def.verbs.iter().any(|v| v == verb);
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let ns = if def.namespaced {
        "namespaces/{namespace}/"
    } else {
        ""
    };
    let scope = if def.namespaced { "Namespaced" } else { "" };
    let id_base = format!("{}{}", group_id(&def.group), capitalize(&def.version));
    let kind = &def.kind;
    let gvk = Gvk::of(def);
    let id = |verb: &str, suffix: &str| format!("{verb}{id_base}{scope}{kind}{suffix}");
    let op =
        |method, action, id: String, description: String, query: &[Param], body, response: &str| {
            Op {
                method,
                action,
                id,
                description,
                gvk: gvk.clone(),
                query: query.to_vec(),
                body,
                response: response.to_owned(),
                created: matches!(action, "post" | "put" | "patch"),
                stream: matches!(action, "watch" | "watchlist"),
            }
        };
    let mut patch_types: Vec<&'static str> = PATCH_TYPES.to_vec();
    if !schemas.strategic_merge {
        patch_types.retain(|t| *t != STRATEGIC);
    }
    let patch_body = |_: ()| Some((PATCH.to_owned(), patch_types.clone()));

    let collection = format!("{prefix}/{ns}{}", def.plural);
    let item_path = format!("{collection}/{{name}}");
    let mut out = Vec::new();

    let mut ops = Vec::new();
    if can("list") {
        ops.push(op(
            "get",
            "list",
            id("list", ""),
            format!("list or watch objects of kind {kind}"),
            LIST_PARAMS,
            None,
            schemas.list,
        ));
    }
    if can("create") {
        ops.push(op(
            "post",
            "post",
            id("create", ""),
            format!("create a {kind}"),
            WRITE_PARAMS,
            Some((schemas.kind.to_owned(), vec![JSON])),
            schemas.kind,
        ));
    }
    if can("deletecollection") {
        let query: Vec<Param> = DELETE_PARAMS
            .iter()
            .chain(
                LIST_PARAMS
                    .iter()
                    .filter(|p| p.0 != "watch" && p.0 != "allowWatchBookmarks"),
            )
            .copied()
            .collect();
        ops.push(op(
            "delete",
            "deletecollection",
            format!("delete{id_base}Collection{scope}{kind}"),
            format!("delete collection of {kind}"),
            &query,
            Some((DELETE_OPTIONS.to_owned(), vec![JSON])),
            STATUS,
        ));
    }
    out.push(Item {
        path: collection,
        namespaced: def.namespaced,
        named: false,
        ops,
    });

    let mut ops = Vec::new();
    if can("get") {
        ops.push(op(
            "get",
            "get",
            id("read", ""),
            format!("read the specified {kind}"),
            &[],
            None,
            schemas.kind,
        ));
    }
    if can("update") {
        ops.push(op(
            "put",
            "put",
            id("replace", ""),
            format!("replace the specified {kind}"),
            WRITE_PARAMS,
            Some((schemas.kind.to_owned(), vec![JSON])),
            schemas.kind,
        ));
    }
    if can("patch") {
        ops.push(op(
            "patch",
            "patch",
            id("patch", ""),
            format!("partially update the specified {kind}"),
            PATCH_PARAMS,
            patch_body(()),
            schemas.kind,
        ));
    }
    if can("delete") {
        ops.push(op(
            "delete",
            "delete",
            id("delete", ""),
            format!("delete a {kind}"),
            DELETE_PARAMS,
            Some((DELETE_OPTIONS.to_owned(), vec![JSON])),
            STATUS,
        ));
    }
    out.push(Item {
        path: item_path.clone(),
        namespaced: def.namespaced,
        named: true,
        ops,
    });

    for (sub, response, sub_gvk) in [
        (
            "status",
            def.has_status.then_some(schemas.kind),
            gvk.clone(),
        ),
        (
            "scale",
            def.scale.as_ref().map(|_| SCALE),
            Gvk {
                group: "autoscaling".into(),
                version: "v1".into(),
                kind: "Scale".into(),
            },
        ),
    ] {
        let Some(response) = response else { continue };
        let suffix = capitalize(sub);
        let mut ops = Vec::new();
        if can("get") {
            ops.push(op(
                "get",
                "get",
                id("read", &suffix),
                format!("read {sub} of the specified {kind}"),
                &[],
                None,
                response,
            ));
        }
        if can("update") {
            ops.push(op(
                "put",
                "put",
                id("replace", &suffix),
                format!("replace {sub} of the specified {kind}"),
                WRITE_PARAMS,
                Some((response.to_owned(), vec![JSON])),
                response,
            ));
        }
        if can("patch") {
            ops.push(op(
                "patch",
                "patch",
                id("patch", &suffix),
                format!("partially update {sub} of the specified {kind}"),
                PATCH_PARAMS,
                patch_body(()),
                response,
            ));
        }
        for o in &mut ops {
            o.gvk = sub_gvk.clone();
        }
        out.push(Item {
            path: format!("{item_path}/{sub}"),
            namespaced: def.namespaced,
            named: true,
            ops,
        });
    }

    if def.namespaced && can("list") {
        let all = op(
            "get",
            "list",
            format!("list{id_base}{kind}ForAllNamespaces"),
            format!("list or watch objects of kind {kind}"),
            LIST_PARAMS,
            None,
            schemas.list,
        );
        out.push(Item {
            path: format!("{prefix}/{}", def.plural),
            namespaced: false,
            named: false,
            ops: vec![all],
        });
    }
    if can("watch") {
        let watch_list = op(
            "get",
            "watchlist",
            id("watch", "List"),
            format!("watch changes to a list of {kind}"),
            LIST_PARAMS,
            None,
            WATCH_EVENT,
        );
        out.push(Item {
            path: format!("{prefix}/watch/{ns}{}", def.plural),
            namespaced: def.namespaced,
            named: false,
            ops: vec![watch_list],
        });
        let watch_one = op(
            "get",
            "watch",
            id("watch", ""),
            format!("watch changes to an object of kind {kind}"),
            LIST_PARAMS,
            None,
            WATCH_EVENT,
        );
        out.push(Item {
            path: format!("{prefix}/watch/{ns}{}/{{name}}", def.plural),
            namespaced: def.namespaced,
            named: true,
            ops: vec![watch_one],
        });
        if def.namespaced {
            let all = op(
                "get",
                "watchlist",
                format!("watch{id_base}{kind}ListForAllNamespaces"),
                format!("watch changes to a list of {kind}"),
                LIST_PARAMS,
                None,
                WATCH_EVENT,
            );
            out.push(Item {
                path: format!("{prefix}/watch/{}", def.plural),
                namespaced: false,
                named: false,
                ops: vec![all],
            });
        }
    }
    out
}

fn render_item(item: &Item, def: &ResourceDef, flavor: Flavor) -> Value {
    let mut obj = Map::new();
    let mut params = Vec::new();
    if item.named {
        params.push(path_param(
            "name",
            &format!("name of the {}", def.kind),
            flavor,
        ));
    }
    if item.namespaced {
        params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
            flavor,
        ));
    }
    params.push(query_param(&PRETTY, flavor));
    for op in &item.ops {
        obj.insert(op.method.into(), render_op(op, def, flavor));
    }
    obj.insert("parameters".into(), Value::Array(params));
    Value::Object(obj)
}

fn render_op(op: &Op, def: &ResourceDef, flavor: Flavor) -> Value {
    let tag = format!("{}_{}", tag_group(&def.group), def.version);
    let mut params: Vec<Value> = op.query.iter().map(|p| query_param(p, flavor)).collect();
    let response_types: Vec<&str> = if op.stream {
        vec![JSON, "application/json;stream=watch"]
    } else {
        vec![JSON]
    };
    let mut out = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": op.id,
    });
    let mut responses = Map::new();
    let ok = |description: &str| match flavor {
        Flavor::V3 => {
            let content: Map<String, Value> = response_types
                .iter()
                .map(|t| {
                    (
                        (*t).to_owned(),
                        json!({"schema": flavor.schema_ref(&op.response)}),
                    )
                })
                .collect();
            json!({"description": description, "content": content})
        }
        Flavor::V2 => {
            json!({"description": description, "schema": flavor.schema_ref(&op.response)})
        }
    };
    responses.insert("200".into(), ok("OK"));
    if op.created {
        responses.insert("201".into(), ok("Created"));
    }
    if matches!(op.action, "post" | "delete") {
        responses.insert("202".into(), ok("Accepted"));
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));

    let Value::Object(map) = &mut out else {
        return out;
    };
    match (flavor, &op.body) {
        (Flavor::V3, Some((schema, types))) => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| {
                    (
                        (*t).to_owned(),
                        json!({"schema": flavor.schema_ref(schema)}),
                    )
                })
                .collect();
            map.insert("requestBody".into(), json!({"content": content, "required": op.action != "delete" && op.action != "deletecollection"}));
        }
        (Flavor::V2, body) => {
            if let Some((schema, types)) = body {
                params.insert(0, json!({"name": "body", "in": "body", "required": op.action != "delete" && op.action != "deletecollection", "schema": flavor.schema_ref(schema)}));
                map.insert("consumes".into(), json!(types));
            } else {
                map.insert("consumes".into(), json!(["*/*"]));
            }
            map.insert("produces".into(), json!(response_types));
            map.insert("schemes".into(), json!(["https"]));
        }
        (Flavor::V3, None) => {}
    }
    map.insert("parameters".into(), Value::Array(params));
    map.insert("responses".into(), Value::Object(responses));
    map.insert("x-kubernetes-action".into(), op.action.into());
    map.insert("x-kubernetes-group-version-kind".into(), op.gvk.to_value());
    out
}

fn path_param(name: &str, description: &str, flavor: Flavor) -> Value {
    match flavor {
        Flavor::V3 => {
            json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
        }
        Flavor::V2 => {
            json!({"name": name, "in": "path", "description": description, "required": true, "type": "string", "uniqueItems": true})
        }
    }
}

fn query_param(param: &Param, flavor: Flavor) -> Value {
    let (name, ty, description) = *param;
    let ty = match ty {
        ParamType::String => "string",
        ParamType::Integer => "integer",
        ParamType::Boolean => "boolean",
    };
    match flavor {
        Flavor::V3 => {
            json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
        }
        Flavor::V2 => {
            json!({"name": name, "in": "query", "description": description, "type": ty, "uniqueItems": true})
        }
    }
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, `""` → `Core`
/// (the operationId convention of the Kubernetes API server).
fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed.split(['.', '-']).map(capitalize).collect()
}

/// `rbac.authorization.k8s.io` → `rbacAuthorization` (the tag convention).
fn tag_group(group: &str) -> String {
    let id = group_id(group);
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => id,
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_id_parts() {
        assert_eq!(group_id(""), "Core");
        assert_eq!(group_id("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_id("example.com"), "ExampleCom");
        assert_eq!(tag_group("rbac.authorization.k8s.io"), "rbacAuthorization");
        assert_eq!(tag_group(""), "core");
    }
}

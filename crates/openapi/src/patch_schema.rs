//! [`PatchSchema`] implementations backed by a precompiled schema graph.
//!
//! Strategic merge patch and server-side apply ask for field metadata on every
//! PATCH, so the component schemas are compiled once into nodes whose properties
//! are hash-map lookups; answering a query walks the path and never touches JSON.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use skiff_patch::{FieldMeta, PatchSchema};

use crate::components::V3_REF_PREFIX;
use crate::patch_meta::field_meta_of;
use crate::walk;

type NodeId = u32;

#[derive(Debug, Default)]
struct Edge {
    meta: Option<FieldMeta>,
    next: Option<NodeId>,
}

#[derive(Debug, Default)]
struct Node {
    props: HashMap<Box<str>, Edge>,
    /// `additionalProperties`: every map key leads here.
    additional: Option<Edge>,
    /// The node's own `x-kubernetes-map-type` (atomic structs and maps).
    map_type: Option<String>,
}

/// Compiled schemas: nodes for objects and maps, edges for their properties.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    fn field(&self, root: NodeId, path: &[&str]) -> Option<FieldMeta> {
        let (last, parents) = path.split_last()?;
        let mut node = root;
        for segment in parents {
            node = self.edge(node, segment)?.next?;
        }
        self.edge(node, last)?.meta.clone()
    }

    fn edge(&self, node: NodeId, segment: &str) -> Option<&Edge> {
        let node = self.nodes.get(node as usize)?;
        node.props.get(segment).or(node.additional.as_ref())
    }
}

/// Builds a [`Graph`] from named component schemas (canonical v3 form).
pub(crate) struct GraphBuilder<'a> {
    lookup: &'a dyn Fn(&str) -> Option<&'a Value>,
    by_name: HashMap<String, NodeId>,
    graph: Graph,
}

impl<'a> GraphBuilder<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<&'a Value>) -> Self {
        GraphBuilder {
            lookup,
            by_name: HashMap::new(),
            graph: Graph::default(),
        }
    }

    /// The node of the named component schema, compiled on first use.
    pub(crate) fn definition(&mut self, name: &str) -> Option<NodeId> {
        if let Some(id) = self.by_name.get(name) {
            return Some(*id);
        }
        let schema = (self.lookup)(name)?;
        // Reserve the node first: definitions may be recursive (JSONSchemaProps).
        let id = self.reserve();
        self.by_name.insert(name.to_owned(), id);
        self.fill(id, schema);
        Some(id)
    }

    /// Compiles an inline schema; `None` for leaves (scalars, opaque objects).
    pub(crate) fn schema(&mut self, schema: &'a Value) -> Option<NodeId> {
        if let Some(reference) = walk::ref_of(schema) {
            return self.definition(reference.strip_prefix(V3_REF_PREFIX)?);
        }
        if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
            // List items add nothing to the path.
            return self.schema(items);
        }
        let has_own = schema.get("properties").is_some_and(Value::is_object)
            || schema
                .get("additionalProperties")
                .is_some_and(Value::is_object);
        if !has_own {
            // A reference wrapped as `allOf: [{$ref}]` (or a plain composition):
            // the first member that compiles to a node stands for the schema.
            let members = schema.get("allOf").and_then(Value::as_array)?;
            return members.iter().find_map(|m| self.schema(m));
        }
        let id = self.reserve();
        self.fill(id, schema);
        Some(id)
    }

    fn reserve(&mut self) -> NodeId {
        let id = NodeId::try_from(self.graph.nodes.len()).unwrap_or(NodeId::MAX);
        self.graph.nodes.push(Node::default());
        id
    }

    fn fill(&mut self, id: NodeId, schema: &'a Value) {
        let mut node = Node {
            map_type: schema
                .get(crate::patch_meta::MAP_TYPE)
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Node::default()
        };
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let edge = self.edge(prop);
                node.props.insert(name.as_str().into(), edge);
            }
        }
        if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            node.additional = Some(self.edge(additional));
        }
        if node.props.is_empty() && node.additional.is_none() {
            // A definition that is only a composition (`allOf`) or a list: alias it.
            if let Some(target) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|m| m.iter().find_map(|m| self.schema(m)))
            {
                node = self.copy_node(target);
            }
        }
        if let Some(slot) = self.graph.nodes.get_mut(id as usize) {
            *slot = node;
        }
    }

    /// A shallow copy of a node whose edges point at the same targets.
    fn copy_node(&self, id: NodeId) -> Node {
        let Some(source) = self.graph.nodes.get(id as usize) else {
            return Node::default();
        };
        let copy = |e: &Edge| Edge {
            meta: e.meta.clone(),
            next: e.next,
        };
        Node {
            props: source
                .props
                .iter()
                .map(|(k, e)| (k.clone(), copy(e)))
                .collect(),
            additional: source.additional.as_ref().map(copy),
            map_type: source.map_type.clone(),
        }
    }

    fn edge(&mut self, schema: &'a Value) -> Edge {
        let meta = schema.as_object().and_then(field_meta_of);
        Edge {
            meta,
            next: self.schema(schema),
        }
    }

    /// Finishes the graph: an edge to an atomic struct carries that `map_type`
    /// even when the referring property says nothing (Kubernetes puts
    /// `x-kubernetes-map-type` on the definition, e.g. `LabelSelector`).
    pub(crate) fn finish(mut self) -> Graph {
        let map_types: Vec<Option<String>> = self
            .graph
            .nodes
            .iter()
            .map(|n| n.map_type.clone())
            .collect();
        for node in &mut self.graph.nodes {
            for edge in node.props.values_mut().chain(node.additional.as_mut()) {
                let inherited = edge
                    .next
                    .and_then(|n| map_types.get(n as usize).cloned().flatten());
                if let Some(map_type) = inherited {
                    let meta = edge.meta.get_or_insert_with(FieldMeta::default);
                    meta.map_type.get_or_insert(map_type);
                }
            }
        }
        self.graph
    }
}

/// The patch schema of one kind: a root node in a shared graph.
#[derive(Debug, Clone)]
pub(crate) struct KindSchema {
    pub graph: Arc<Graph>,
    pub root: NodeId,
}

impl PatchSchema for KindSchema {
    fn field(&self, path: &[&str]) -> Option<FieldMeta> {
        self.graph.field(self.root, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_refs_items_maps_and_recursion() {
        let defs = json!({
            "Root": {"properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/Spec"}], "description": "d"},
                "byName": {"additionalProperties": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}},
            }},
            "Spec": {"properties": {
                "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"$ref": "#/components/schemas/Item"}},
                "selector": {"allOf": [{"$ref": "#/components/schemas/Selector"}]},
                "self": {"$ref": "#/components/schemas/Spec"},
            }},
            "Item": {"properties": {"name": {"type": "string"}, "ports": {"type": "array", "x-kubernetes-patch-merge-key": "port", "x-kubernetes-patch-strategy": "merge"}}},
            "Selector": {"x-kubernetes-map-type": "atomic", "properties": {"a": {"type": "string"}}},
        });
        let lookup = |name: &str| defs.get(name);
        let mut builder = GraphBuilder::new(&lookup);
        let root = builder.definition("Root").unwrap();
        let schema = KindSchema {
            graph: Arc::new(builder.finish()),
            root,
        };

        let items = schema.field(&["spec", "items"]).unwrap();
        assert_eq!(items.list_type.as_deref(), Some("map"));
        assert_eq!(items.list_map_keys, vec!["name"]);
        let ports = schema.field(&["spec", "items", "ports"]).unwrap();
        assert_eq!(ports.patch_merge_key.as_deref(), Some("port"));
        assert_eq!(
            schema.field(&["spec", "self", "self", "items"]),
            Some(items)
        );
        assert_eq!(
            schema
                .field(&["spec", "selector"])
                .unwrap()
                .map_type
                .as_deref(),
            Some("atomic")
        );
        assert_eq!(
            schema
                .field(&["byName", "anything"])
                .unwrap()
                .list_type
                .as_deref(),
            Some("set")
        );
        assert_eq!(schema.field(&["spec", "items", "name"]), None);
        assert_eq!(schema.field(&["nope", "items"]), None);
        assert_eq!(schema.field(&[]), None);
    }
}

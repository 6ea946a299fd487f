//! Service validation (`ValidateService`, `ValidateServiceUpdate`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::meta::validate_labels;
use super::pod::PROTOCOLS;
use super::{one_of, port_number};
use crate::FieldError;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub(crate) fn service(svc: &Service, old: Option<&Service>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = &svc.spec else {
        return vec![FieldError::required("spec.ports", "")];
    };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    one_of(&mut errs, "spec.type", Some(type_), TYPES);
    one_of(
        &mut errs,
        "spec.sessionAffinity",
        spec.session_affinity.as_deref(),
        &["ClientIP", "None"],
    );
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if type_ == "ExternalName" {
        match spec.external_name.as_deref().filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required("spec.externalName", "")),
            Some(name) => {
                for msg in super::names::dns1123_subdomain(name.trim_end_matches('.')) {
                    errs.push(FieldError::invalid(
                        "spec.externalName",
                        Value::String(name.into()),
                        msg,
                    ));
                }
            }
        }
    } else if ports.is_empty() && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = p.name.as_deref().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            for msg in super::names::dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{pp}.name"),
                    Value::String(name.into()),
                    msg,
                ));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    format!("{pp}.name"),
                    Value::String(name.into()),
                ));
            }
        }
        port_number(&mut errs, &format!("{pp}.port"), p.port);
        match p.protocol.as_deref() {
            None | Some("") => errs.push(FieldError::required(format!("{pp}.protocol"), "")),
            proto => one_of(&mut errs, &format!("{pp}.protocol"), proto, PROTOCOLS),
        }
        match &p.target_port {
            Some(IntOrString::Int(t)) => port_number(&mut errs, &format!("{pp}.targetPort"), *t),
            Some(IntOrString::String(s)) => {
                for msg in super::names::port_name(s) {
                    errs.push(FieldError::invalid(
                        format!("{pp}.targetPort"),
                        Value::String(s.clone()),
                        msg,
                    ));
                }
            }
            _ => {}
        }
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            if type_ == "ClusterIP" || type_ == "ExternalName" {
                errs.push(FieldError::forbidden(
                    format!("{pp}.nodePort"),
                    format!("may not be used when `type` is '{type_}'"),
                ));
            } else {
                port_number(&mut errs, &format!("{pp}.nodePort"), np);
            }
        }
    }
    errs.extend(validate_labels(spec.selector.as_ref(), "spec.selector"));
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        let old_ip = old_spec.cluster_ip.as_deref().unwrap_or_default();
        let new_ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let old_type = old_spec.type_.as_deref().unwrap_or("ClusterIP");
        // An empty clusterIP on update means "keep it" (kubectl apply omits it); only
        // a different address is a change. Switching to or from ExternalName releases
        // or allocates the address, as upstream allows.
        let type_switch = (old_type == "ExternalName") != (type_ == "ExternalName");
        if !old_ip.is_empty() && !new_ip.is_empty() && new_ip != old_ip && !type_switch {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                Value::String(new_ip.into()),
                "may not change once set",
            ));
        }
    }
    errs
}

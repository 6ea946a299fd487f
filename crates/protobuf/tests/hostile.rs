//! Malformed, truncated, random and malicious bodies: always an error, never a panic.

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use skiff_protobuf::{decode, Error, MAX_DEPTH};

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(encoding.to_owned()),
        content_type: None,
    };
    let mut out = b"k8s\0".to_vec();
    unknown.encode(&mut out).expect("a Vec grows as needed");
    out
}

fn sample_pod() -> Vec<u8> {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            labels: [("a".to_owned(), "b".to_owned())].into(),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                args: vec!["sleep".into(), "1".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    envelope("v1", "Pod", pod.encode_to_vec(), "")
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn envelope_errors_are_typed() {
    assert!(matches!(decode(b""), Err(Error::BadMagic)));
    assert!(matches!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(Error::BadMagic)
    ));
    assert!(matches!(decode(b"k8s\0"), Err(Error::MissingTypeMeta)));
    assert!(matches!(
        decode(&envelope("example.com/v1", "Widget", vec![], "")),
        Err(Error::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&envelope("v1", "Pod", vec![], "gzip")),
        Err(Error::UnsupportedEncoding(e)) if e == "gzip"
    ));
    // metadata (field 1) as a varint instead of a message.
    assert!(matches!(
        decode(&envelope("v1", "Pod", vec![0x08, 0x01], "")),
        Err(Error::WrongWireType {
            number: 1,
            wire_type: 0,
            ..
        })
    ));
    // IntOrString with an undefined type.
    let bad = core::ServicePort {
        target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
            r#type: Some(7),
            int_val: None,
            str_val: None,
        }),
        ..Default::default()
    };
    let service = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![bad],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        decode(&envelope("v1", "Service", service.encode_to_vec(), "")),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    // field 99 of every wire type
    raw.extend([0x98, 0x06, 0x05]); // varint
    raw.extend([0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]); // fixed64
    raw.extend([0x9a, 0x06, 2, b'h', b'i']); // bytes
    raw.extend([0x9d, 0x06, 1, 2, 3, 4]); // fixed32
    let got = decode(&envelope("v1", "Namespace", raw, "")).unwrap();
    assert_eq!(got["metadata"]["name"], "x");
}

#[test]
fn every_truncation_is_an_error_or_a_prefix_not_a_panic() {
    let body = sample_pod();
    assert!(decode(&body).is_ok());
    for len in 0..body.len() {
        let _ = decode(&body[..len]);
    }
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let body = sample_pod();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut mutated = body.clone();
        for _ in 0..(rng.next() % 4 + 1) {
            let i = 4 + (rng.next() as usize) % (mutated.len() - 4);
            mutated[i] = rng.next() as u8;
        }
        let _ = decode(&mutated);
    }
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let mut random: Vec<u8> = b"k8s\0".to_vec();
        random.extend((0..len).map(|_| rng.next() as u8));
        let _ = decode(&random);
        // Random payloads inside a valid envelope reach the object decoder.
        let raw = random[4..].to_vec();
        let _ = decode(&envelope("v1", "Pod", raw.clone(), ""));
        let _ = decode(&envelope("apps/v1", "Deployment", raw, ""));
    }
}

/// Wraps `inner` as field `number` of a message, `levels` times.
fn nest(number: u32, levels: usize, inner: Vec<u8>) -> Vec<u8> {
    let mut msg = inner;
    for _ in 0..levels {
        let mut outer = Vec::with_capacity(msg.len() + 12);
        prost::encoding::encode_key(
            number,
            prost::encoding::WireType::LengthDelimited,
            &mut outer,
        );
        prost::encoding::encode_varint(msg.len() as u64, &mut outer);
        outer.extend(msg);
        msg = outer;
    }
    msg
}

#[test]
fn depth_bomb_is_rejected() {
    // CRD → spec(2) → versions(7) → schema(4) → openAPIV3Schema(1) → not(28) → not → ...
    let schema = nest(28, 100_000, Vec::new());
    let raw = nest(2, 1, nest(7, 1, nest(4, 1, nest(1, 1, schema))));
    let body = envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        raw,
        "",
    );
    assert!(matches!(decode(&body), Err(Error::TooDeep(MAX_DEPTH))));

    // Shallow enough nesting is fine.
    let schema = nest(28, 20, Vec::new());
    let raw = nest(2, 1, nest(7, 1, nest(4, 1, nest(1, 1, schema))));
    let got = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        raw,
        "",
    ))
    .unwrap();
    assert!(got["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["not"]["not"].is_object());
}

#[test]
fn nested_raw_extension_envelopes_are_bounded_too() {
    // ControllerRevision.data (field 2) = RawExtension whose raw (field 1) is
    // another k8s\0 ControllerRevision, many times over.
    let mut body = envelope("apps/v1", "ControllerRevision", Vec::new(), "");
    for _ in 0..200 {
        let raw = nest(2, 1, nest(1, 1, body));
        body = envelope("apps/v1", "ControllerRevision", raw, "");
    }
    assert!(matches!(decode(&body), Err(Error::TooDeep(_))));
}

#[test]
fn expansion_bomb_is_rejected() {
    // 100k empty NodeList items: two bytes each on the wire, about 19 JSON
    // values each once Go's always-present fields are filled in.
    let mut raw = Vec::new();
    for _ in 0..100_000 {
        raw.extend([0x12, 0x00]);
    }
    let result = decode(&envelope("v1", "NodeList", raw, ""));
    assert!(
        matches!(result, Err(Error::TooLarge)),
        "not rejected: {:?}",
        result.err()
    );

    // The same shape at a sane size is fine.
    let raw = [0x12, 0x00].repeat(10);
    let list = decode(&envelope("v1", "NodeList", raw, "")).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 10);
}

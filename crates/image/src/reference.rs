//! Image reference normalization, as Kubernetes and containerd do it:
//! `busybox` is `docker.io/library/busybox:latest`, `localhost:5000/x:1`
//! keeps its registry, `name@sha256:...` pins a manifest digest.

pub use oci_spec::distribution::Reference;

use crate::error::{Error, Result};

/// Parse and normalize a reference.
pub fn parse(s: &str) -> Result<Reference> {
    Reference::try_from(s.trim()).map_err(|e| Error::InvalidReference {
        reference: s.to_string(),
        reason: e.to_string(),
    })
}

/// The normalized form of a reference, e.g. `docker.io/library/busybox:latest`.
pub fn normalize(s: &str) -> Result<String> {
    Ok(parse(s)?.whole())
}

/// `registry/repository` of a reference, without tag or digest.
pub fn repository(r: &Reference) -> String {
    format!("{}/{}", r.registry(), r.repository())
}

/// The tag form `registry/repository:tag` of a reference, if it has a tag.
pub fn tagged(r: &Reference) -> Option<String> {
    r.tag().map(|t| format!("{}:{t}", repository(r)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_kubernetes() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("nginx:1.27").unwrap(),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize("bitnami/redis").unwrap(),
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            normalize("localhost:5000/x:1").unwrap(),
            "localhost:5000/x:1"
        );
        assert_eq!(normalize("quay.io/a/b").unwrap(), "quay.io/a/b:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d));
        assert_eq!(r.tag(), None);
        assert_eq!(repository(&r), "docker.io/library/busybox");
        assert!(parse("Not_Valid::x").is_err());
        assert!(parse("").is_err());
    }
}

//! `skiff-openapi`: the OpenAPI documents kubectl reads (`/openapi/v3`,
//! `/openapi/v3/<gv>`, `/openapi/v2`) and the patch metadata
//! (`x-kubernetes-patch-merge-key` and friends) that strategic merge patch and
//! server-side apply need, for built-in kinds and CRDs alike.

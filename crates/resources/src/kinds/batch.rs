//! batch/v1 kinds.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};

use crate::tables::batch as t;
use crate::typed::BuiltinKind;
use crate::validation::meta::NameRule;
use crate::{Column, Row};

impl BuiltinKind for Job {
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::job(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::job(self);
    }
    table!(t::job_columns, t::job_row);
    fn field_value(&self, field: &str) -> Option<String> {
        (field == "status.successful").then(|| {
            self.status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or(0)
                .to_string()
        })
    }
}

impl BuiltinKind for CronJob {
    /// Job names are `<cronjob>-<11 digit timestamp>`, and must stay within 63.
    const NAME_RULE: NameRule = NameRule::SubdomainMax(52);
    schema!();
    fn validate_kind(&self, old: Option<&Self>) -> Vec<crate::FieldError> {
        crate::validation::workloads::cron_job(self, old)
    }
    fn apply_defaults(&mut self) {
        crate::defaults::workloads::cron_job(self);
    }
    table!(t::cron_job_columns, t::cron_job_row);
}

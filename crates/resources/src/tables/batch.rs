//! Tables of batch/v1 kinds.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};

use super::{
    age_cell, col, containers_cols, human_duration, name_cell, selector_cell, since,
    template_cells, text, NONE,
};
use crate::{Column, Row};

pub(crate) fn job_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        col("Status", "Status of the job."),
        col(
            "Completions",
            "The desired number of successfully finished pods the job should be run with.",
        ),
        col("Duration", "Time required to complete the job."),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols.push(
        col(
            "Selector",
            "A label query over pods that should match the pod count.",
        )
        .wide(),
    );
    cols
}

fn condition_true(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The job status cell (kubectl 1.32): the first matching of a fixed list of states.
fn job_status(job: &Job) -> &'static str {
    if condition_true(job, "Complete") {
        "Complete"
    } else if condition_true(job, "Failed") {
        "Failed"
    } else if job.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if condition_true(job, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(job, "Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

pub(crate) fn job_row(job: &Job, now: DateTime<Utc>) -> Row {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match spec.completions {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec.parallelism.unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (Some(start), end) => {
            let end = end
                .as_ref()
                .and_then(|e| super::chrono_of(&e.0))
                .unwrap_or(now);
            super::chrono_of(&start.0).map_or(String::new(), |start| {
                human_duration(end.signed_duration_since(start))
            })
        }
        (None, _) => String::new(),
    };
    let (containers, images) = template_cells(Some(&spec.template));
    vec![
        name_cell(&job.metadata),
        text(job_status(job)),
        text(completions),
        text(duration),
        age_cell(&job.metadata, now),
        containers,
        images,
        text(selector_cell(spec.selector.as_ref())),
    ]
}

pub(crate) fn cron_job_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::name(),
        col("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        col("Timezone", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
        Column::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
        super::int_col("Active", "A list of pointers to currently running jobs."),
        col("Last Schedule", "Information when was the last time the job was successfully scheduled."),
        Column::age(),
    ];
    cols.extend(containers_cols());
    cols.push(
        col(
            "Selector",
            "A label query over pods that should match the pod count.",
        )
        .wide(),
    );
    cols
}

pub(crate) fn cron_job_row(cj: &CronJob, now: DateTime<Utc>) -> Row {
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let last = match &status.last_schedule_time {
        Some(t) => since(Some(t), now),
        None => NONE.into(),
    };
    let job_spec = spec.job_template.spec.clone().unwrap_or_default();
    let (containers, images) = template_cells(Some(&job_spec.template));
    vec![
        name_cell(&cj.metadata),
        text(spec.schedule.clone()),
        text(spec.time_zone.clone().unwrap_or_else(|| NONE.into())),
        text(if spec.suspend.unwrap_or(false) {
            "True"
        } else {
            "False"
        }),
        super::count(status.active.as_ref().map_or(0, Vec::len)),
        text(last),
        age_cell(&cj.metadata, now),
        containers,
        images,
        text(selector_cell(job_spec.selector.as_ref())),
    ]
}

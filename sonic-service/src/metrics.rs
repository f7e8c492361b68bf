//! [`Metrics`]: what a worker process did, in Prometheus' text format.
//!
//! One `Metrics` is shared by every [`Worker`](crate::Worker) and
//! [`PipelineHandler`](crate::PipelineHandler) of a process (clones share the counts);
//! [`Metrics::render`] writes them for a `/metrics` endpoint (`sonic worker --metrics ADDR`
//! serves it).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `sonic_jobs_started_total` | counter | deliveries a handler started |
//! | `sonic_jobs_redelivered_total` | counter | of those, deliveries after the first |
//! | `sonic_jobs_taken_over_total` | counter | jobs taken from a worker whose lease ran out |
//! | `sonic_jobs_finished_total{outcome}` | counter | `succeeded`, `failed`, `retrying`, `exhausted`, `cancelled`, `poison`, `handed_back` |
//! | `sonic_late_writes_refused_total` | counter | writes refused because the lease was lost |
//! | `sonic_stage_seconds_sum{stage}` / `_count` | summary | seconds per pipeline stage, succeeded jobs |
//! | `sonic_job_seconds_sum` / `_count` | summary | seconds per delivery, start to settle |
//! | `sonic_devices` | gauge | devices (workers) of this process |
//! | `sonic_devices_busy` | gauge | of those, running a job now |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::worker::Disposition;

const OUTCOMES: [&str; 7] = [
    "succeeded",
    "failed",
    "retrying",
    "exhausted",
    "cancelled",
    "poison",
    "handed_back",
];

/// Counters and gauges of a worker process (see the [module docs](self)). Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    started: AtomicU64,
    redelivered: AtomicU64,
    taken_over: AtomicU64,
    finished: [AtomicU64; OUTCOMES.len()],
    late_writes_refused: AtomicU64,
    devices: AtomicI64,
    busy: AtomicI64,
    job_seconds: Mutex<Summary>,
    stages: Mutex<BTreeMap<String, Summary>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    sum: f64,
    count: u64,
}

impl Summary {
    fn add(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.sum += seconds;
            self.count += 1;
        }
    }
}

fn outcome_index(disposition: &Disposition) -> usize {
    match disposition {
        Disposition::Succeeded => 0,
        Disposition::Failed { .. } => 1,
        Disposition::Retrying { .. } => 2,
        Disposition::Exhausted { .. } => 3,
        Disposition::Cancelled => 4,
        Disposition::Poison { .. } => 5,
        Disposition::HandedBack => 6,
    }
}

impl Metrics {
    /// Fresh counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// A worker (one device) joined the process.
    pub fn add_device(&self) {
        self.inner.devices.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery was handed to a handler (`attempt` counts from 1); the device is busy until
    /// the guard drops.
    pub(crate) fn job_started(&self, attempt: u32) -> Busy {
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        if attempt > 1 {
            self.inner.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.inner.clone())
    }

    /// A delivery was settled after `elapsed`.
    pub(crate) fn job_settled(&self, disposition: &Disposition, elapsed: Duration) {
        self.inner.finished[outcome_index(disposition)].fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.job_seconds).add(elapsed.as_secs_f64());
    }

    /// A delivery that was settled without running a handler (poison, handed back unopened).
    pub(crate) fn delivery_settled(&self, disposition: &Disposition) {
        self.inner.finished[outcome_index(disposition)].fetch_add(1, Ordering::Relaxed);
    }

    /// A job was taken from a worker whose lease had run out.
    pub(crate) fn taken_over(&self) {
        self.inner.taken_over.fetch_add(1, Ordering::Relaxed);
    }

    /// A write was refused because this worker no longer held the job.
    pub(crate) fn late_write_refused(&self) {
        self.inner
            .late_writes_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Seconds per stage of a job that succeeded (the manifest's `timings`).
    pub(crate) fn stage_timings(&self, timings: &BTreeMap<String, f64>) {
        let mut stages = lock(&self.inner.stages);
        for (stage, seconds) in timings {
            stages.entry(stage.clone()).or_default().add(*seconds);
        }
    }

    /// Deliveries started so far.
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }

    /// Jobs taken over so far.
    pub fn taken_over_count(&self) -> u64 {
        self.inner.taken_over.load(Ordering::Relaxed)
    }

    /// Writes refused so far.
    pub fn late_writes_refused(&self) -> u64 {
        self.inner.late_writes_refused.load(Ordering::Relaxed)
    }

    /// The counts in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let inner = &self.inner;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "sonic_jobs_started_total",
            "Deliveries a handler started.",
            inner.started.load(Ordering::Relaxed),
        );
        counter(
            "sonic_jobs_redelivered_total",
            "Deliveries after a job's first.",
            inner.redelivered.load(Ordering::Relaxed),
        );
        counter(
            "sonic_jobs_taken_over_total",
            "Jobs taken from a worker whose lease ran out.",
            inner.taken_over.load(Ordering::Relaxed),
        );
        counter(
            "sonic_late_writes_refused_total",
            "Writes refused because the worker no longer held the job.",
            inner.late_writes_refused.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP sonic_jobs_finished_total Deliveries settled, by outcome.\n\
             # TYPE sonic_jobs_finished_total counter"
        );
        for (outcome, count) in OUTCOMES.iter().zip(&inner.finished) {
            let _ = writeln!(
                out,
                "sonic_jobs_finished_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let job = *lock(&inner.job_seconds);
        let _ = writeln!(
            out,
            "# HELP sonic_job_seconds Seconds per delivery, start to settle.\n\
             # TYPE sonic_job_seconds summary\n\
             sonic_job_seconds_sum {}\nsonic_job_seconds_count {}",
            job.sum, job.count
        );
        let _ = writeln!(
            out,
            "# HELP sonic_stage_seconds Seconds per pipeline stage of succeeded jobs.\n\
             # TYPE sonic_stage_seconds summary"
        );
        for (stage, summary) in lock(&inner.stages).iter() {
            let stage = stage.replace(['\\', '"', '\n'], "_");
            let _ = writeln!(
                out,
                "sonic_stage_seconds_sum{{stage=\"{stage}\"}} {}\n\
                 sonic_stage_seconds_count{{stage=\"{stage}\"}} {}",
                summary.sum, summary.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP sonic_devices Devices (workers) of this process.\n# TYPE sonic_devices gauge\n\
             sonic_devices {}\n\
             # HELP sonic_devices_busy Devices running a job now.\n# TYPE sonic_devices_busy gauge\n\
             sonic_devices_busy {}",
            inner.devices.load(Ordering::Relaxed),
            inner.busy.load(Ordering::Relaxed).max(0)
        );
        out
    }
}

/// A busy device: counted in `sonic_devices_busy` until dropped.
pub(crate) struct Busy(Arc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value` with a number, and every family has its
    /// TYPE line before its samples.
    #[test]
    fn renders_the_text_format() {
        let metrics = Metrics::new();
        metrics.add_device();
        let _first = metrics.job_started(1);
        drop(metrics.job_started(2));
        metrics.job_settled(&Disposition::Succeeded, Duration::from_millis(1500));
        metrics.taken_over();
        metrics.late_write_refused();
        metrics.stage_timings(&BTreeMap::from([("unet".to_owned(), 2.5)]));
        let text = metrics.render();
        for expected in [
            "sonic_jobs_started_total 2",
            "sonic_jobs_redelivered_total 1",
            "sonic_jobs_taken_over_total 1",
            "sonic_late_writes_refused_total 1",
            "sonic_jobs_finished_total{outcome=\"succeeded\"} 1",
            "sonic_jobs_finished_total{outcome=\"failed\"} 0",
            "sonic_job_seconds_sum 1.5",
            "sonic_job_seconds_count 1",
            "sonic_stage_seconds_sum{stage=\"unet\"} 2.5",
            "sonic_devices 1",
            "sonic_devices_busy 1",
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "{expected:?} missing in\n{text}"
            );
        }
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let (name, value) = line.rsplit_once(' ').unwrap();
                let family = name.split('{').next().unwrap();
                let family = family
                    .strip_suffix("_sum")
                    .or_else(|| family.strip_suffix("_count"))
                    .filter(|f| typed.contains(*f))
                    .unwrap_or(family);
                assert!(typed.contains(family), "{line}: no TYPE before it");
                value.parse::<f64>().unwrap();
            }
        }
    }
}

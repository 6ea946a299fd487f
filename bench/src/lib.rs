//! Helpers shared by skiff's benchmarks: latency summaries, medians over
//! repetitions, and the memory of a process as Linux reports it.

pub mod procfs;
pub mod server;
pub mod stats;

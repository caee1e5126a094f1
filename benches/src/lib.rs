//! Shared helpers of the benchmarks: building a busybox bundle.

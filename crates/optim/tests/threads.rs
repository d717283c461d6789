//! `set_num_threads`: the number of worker threads tempo-optim starts. A test binary of
//! its own, because the setting is the process's and holds only before the workers start
//! (at the first shared step), which the other tests' large steps would do first.

use tempo_optim::{join, num_threads, set_num_threads, OptimError};

/// The threads of this process named as tempo-optim names its workers, once as many as
/// `expected` are (a thread takes its name when it first runs), or after 10 s.
#[cfg(target_os = "linux")]
fn workers_running(expected: usize) -> usize {
    let count = || {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("tempo-optim-"))
            .count()
    };
    let start = std::time::Instant::now();
    while count() < expected && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    count()
}

#[test]
fn the_number_of_threads_is_set_before_the_workers_start_and_checked_after() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(num_threads(), cpus, "the default: every CPU");
    #[cfg(target_os = "linux")]
    assert_eq!(
        workers_running(0),
        0,
        "no worker before the first shared step"
    );

    let zero = set_num_threads(0).expect_err("0 threads");
    assert!(
        matches!(zero, OptimError::NumThreads { requested: 0, .. }),
        "{zero:?}"
    );
    assert_eq!(
        zero.to_string(),
        "set_num_threads: expected at least 1, found 0"
    );
    assert_eq!(num_threads(), cpus, "a refused number changes nothing");

    // Another number than the default on any machine, and more than one worker.
    let threads = cpus.max(2) + 1;
    set_num_threads(threads).expect("before the start");
    assert_eq!(num_threads(), threads);

    // The first call of `join` starts the workers; both closures run.
    let (mut a, mut b) = (0, 0);
    join(|| a += 1, || b += 1);
    assert_eq!((a, b), (1, 1));
    #[cfg(target_os = "linux")]
    assert_eq!(
        workers_running(threads - 1),
        threads - 1,
        "the caller is one of the threads"
    );

    // Now the workers run: the same number is accepted, another is an error naming it.
    set_num_threads(threads).expect("the number they started with");
    let late = set_num_threads(1).expect_err("after the start");
    assert!(
        matches!(late, OptimError::NumThreads { requested: 1, .. }),
        "{late:?}"
    );
    let message = late.to_string();
    assert!(
        message.contains(&format!(
            "expected {threads}: the threads started with {threads}"
        )) && message.ends_with("found 1"),
        "{message}"
    );
    assert_eq!(num_threads(), threads);
    #[cfg(target_os = "linux")]
    assert_eq!(workers_running(threads - 1), threads - 1);
}

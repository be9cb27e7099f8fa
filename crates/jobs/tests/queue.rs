//! The durable job queue in a real `control.db` (a file, migrated with the control plane's
//! migrations): leases, lost workers, retries with backoff, dead letters, cancel and retry,
//! pruning, and the worker pool running handlers. Time moves on a test clock.

use std::time::Duration;

use silo_core::db::Engine;
use silo_core::{Clock, ProcessClock, TestClock};
use silo_jobs::{JobError, PoolSettings, Workers};
use silo_jobs::{JobStatus, Jobs, NewJob};

/// The control plane's migrations, as the application assembles them (`silo_web::schema`).
static CONTROL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");
static CONTROL_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control-postgres");

silo_core::on_both_engines!(
    a_job_is_claimed_once_and_only_its_holder_records_the_outcome,
    a_job_whose_worker_died_is_taken_up_after_its_lease,
    failures_back_off_then_dead_letter_and_operators_cancel_or_retry,
    the_pool_runs_handlers_reports_progress_and_stops,
    a_panicking_handler_fails_its_attempt_retries_and_is_dead_lettered,
    finished_jobs_are_pruned_after_their_time_and_open_ones_never,
    a_lane_runs_its_kinds_beside_the_rest,
    concurrent_claimers_take_each_job_once,
    a_job_handed_back_for_another_server_keeps_its_attempts,
);

struct Fixture {
    jobs: Jobs,
    // Last: the pools let go of the file before it is deleted.
    _dir: tempfile::TempDir,
}

/// A queue in a fresh control plane on `engine` and `clock`; `None` when the engine cannot
/// be had here (PostgreSQL, unless required).
async fn fixture_on(clock: &TestClock, engine: Engine) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let (write, read) =
        silo_core::db::testing::control_plane(engine, dir.path(), &CONTROL_MIGRATIONS, &CONTROL_POSTGRES)
            .await?;
    Some(Fixture { jobs: Jobs::new(write, read, ProcessClock::new(clock.shared())), _dir: dir })
}

/// A queue on a clock standing at the system's time now.
async fn fixture(engine: Engine) -> Option<Fixture> {
    fixture_on(&TestClock::starting_now(), engine).await
}

const LEASE: Duration = Duration::from_millis(300);

async fn a_job_is_claimed_once_and_only_its_holder_records_the_outcome(engine: Engine) {
    let Some(f) = fixture(engine).await else { return };
    let jobs = f.jobs.clone();
    let job = jobs.enqueue(NewJob::new("test.echo", serde_json::json!({ "n": 1 })), "test").await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let claimed = jobs.claim("a", &["test.echo"], LEASE).await.unwrap().expect("due");
    assert_eq!((claimed.id.as_str(), claimed.attempts), (job.id.as_str(), 1));
    assert!(jobs.claim("b", &["test.echo"], LEASE).await.unwrap().is_none(), "held by a");
    assert!(jobs.claim("a", &["other.kind"], LEASE).await.unwrap().is_none(), "kinds filter");
    assert!(jobs.heartbeat(&job.id, "a", LEASE, 1, Some(2)).await.unwrap());
    assert!(!jobs.heartbeat(&job.id, "b", LEASE, 1, Some(2)).await.unwrap(), "not b's");
    assert!(!jobs.complete(&job.id, "b", &serde_json::json!("b"), None).await.unwrap());
    assert!(jobs.complete(&job.id, "a", &serde_json::json!({ "ok": true }), None).await.unwrap());
    let done = jobs.get(&job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(done.result, Some(serde_json::json!({ "ok": true })));
    assert_eq!((done.progress_done, done.progress_total), (2, Some(2)));
    assert!(done.finished_at.is_some());
    assert!(matches!(jobs.get("nope").await, Err(silo_jobs::Error::UnknownJob(_))));
}

async fn a_job_whose_worker_died_is_taken_up_after_its_lease(engine: Engine) {
    let clock = TestClock::starting_now();
    let Some(f) = fixture_on(&clock, engine).await else { return };
    let jobs = f.jobs.clone();
    let job = jobs.enqueue(NewJob::new("test.echo", serde_json::json!({})), "test").await.unwrap();
    jobs.claim("dead", &["test.echo"], LEASE).await.unwrap().expect("due");
    // The worker dies: no heartbeat. Before the lease runs out nobody else gets it…
    assert!(jobs.claim("next", &["test.echo"], LEASE).await.unwrap().is_none());
    clock.advance(LEASE + Duration::from_millis(1));
    // …after, the next worker does, and the dead one can no longer record anything.
    let again = jobs.claim("next", &["test.echo"], LEASE).await.unwrap().expect("lease ran out");
    assert_eq!((again.id.as_str(), again.attempts), (job.id.as_str(), 2));
    assert!(!jobs.complete(&job.id, "dead", &serde_json::json!("late"), None).await.unwrap());
    assert!(jobs.complete(&job.id, "next", &serde_json::json!("once"), None).await.unwrap());
    assert_eq!(jobs.get(&job.id).await.unwrap().result, Some(serde_json::json!("once")));
}

async fn failures_back_off_then_dead_letter_and_operators_cancel_or_retry(engine: Engine) {
    let clock = TestClock::starting_now();
    let Some(f) = fixture_on(&clock, engine).await else { return };
    let jobs = f.jobs.clone();
    let job = jobs
        .enqueue(NewJob { max_attempts: 2, ..NewJob::new("test.flaky", serde_json::json!({})) }, "test")
        .await
        .unwrap();
    jobs.claim("w", &["test.flaky"], LEASE).await.unwrap().expect("due");
    assert!(jobs.fail(&job.id, "w", "store down", true).await.unwrap());
    let waiting = jobs.get(&job.id).await.unwrap();
    assert_eq!((waiting.status, waiting.last_error.as_deref()), (JobStatus::Queued, Some("store down")));
    assert!(waiting.run_after > waiting.updated_at, "backs off");
    assert!(jobs.claim("w", &["test.flaky"], LEASE).await.unwrap().is_none(), "not before its backoff");
    clock.advance(silo_jobs::backoff(waiting.attempts) - Duration::from_millis(1));
    assert!(jobs.claim("w", &["test.flaky"], LEASE).await.unwrap().is_none(), "a moment before");
    clock.advance(Duration::from_millis(1));
    // The second (last) attempt fails too: dead-lettered.
    jobs.claim("w", &["test.flaky"], LEASE).await.unwrap().expect("due again");
    assert!(jobs.fail(&job.id, "w", "still down", true).await.unwrap());
    let dead = jobs.get(&job.id).await.unwrap();
    assert_eq!((dead.status, dead.attempts), (JobStatus::Failed, 2));
    assert!(jobs.cancel(&job.id, "test").await.is_err(), "a dead job cannot be cancelled");
    // An operator retries it: queued with its attempts reset.
    let retried = jobs.retry(&job.id, "test").await.unwrap();
    assert_eq!((retried.status, retried.attempts, retried.last_error), (JobStatus::Queued, 0, None));
    // Cancelling a running job tells its worker at the next heartbeat.
    jobs.claim("w", &["test.flaky"], LEASE).await.unwrap().expect("due");
    assert_eq!(jobs.cancel(&job.id, "test").await.unwrap().status, JobStatus::Cancelled);
    assert!(!jobs.heartbeat(&job.id, "w", LEASE, 0, None).await.unwrap());
    assert!(!jobs.complete(&job.id, "w", &serde_json::json!(1), None).await.unwrap());
    assert_eq!(jobs.get(&job.id).await.unwrap().status, JobStatus::Cancelled);
}

async fn the_pool_runs_handlers_reports_progress_and_stops(engine: Engine) {
    let Some(f) = fixture(engine).await else { return };
    let jobs = f.jobs.clone();
    let mut workers = Workers::new();
    workers.register("test.count", |ctx| async move {
        let to = ctx.job.payload["to"].as_i64().unwrap_or(0);
        for i in 1..=to {
            ctx.progress(i, to);
        }
        Ok(serde_json::json!({ "counted": to }))
    });
    workers.register("test.broken", |_| async { Err(JobError::fatal("bad input")) });
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let settings =
        PoolSettings { concurrency: 2, lease: Duration::from_secs(5), poll: Duration::from_millis(20) };
    let pool = tokio::spawn(workers.run(jobs.clone(), settings, async move {
        let _ = stopping.await;
    }));
    let counted =
        jobs.enqueue(NewJob::new("test.count", serde_json::json!({ "to": 3 })), "test").await.unwrap();
    let broken = jobs.enqueue(NewJob::new("test.broken", serde_json::json!({})), "test").await.unwrap();
    let unknown = jobs.enqueue(NewJob::new("test.nobody", serde_json::json!({})), "test").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (jobs.get(&counted.id).await.unwrap(), jobs.get(&broken.id).await.unwrap());
        if a.status == JobStatus::Done && b.status == JobStatus::Failed {
            assert_eq!(a.result, Some(serde_json::json!({ "counted": 3 })));
            assert_eq!((a.progress_done, a.progress_total), (3, Some(3)));
            assert_eq!((b.attempts, b.last_error.as_deref()), (1, Some("bad input")), "fatal: no retry");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "jobs did not finish: {a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        jobs.get(&unknown.id).await.unwrap().status,
        JobStatus::Queued,
        "no handler: left for a pool that has one"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops").unwrap();
}

async fn a_panicking_handler_fails_its_attempt_retries_and_is_dead_lettered(engine: Engine) {
    let clock = TestClock::starting_now();
    let Some(f) = fixture_on(&clock, engine).await else { return };
    let jobs = f.jobs.clone();
    let mut workers = Workers::new();
    workers.register("test.panics", |ctx| async move {
        if ctx.job.payload["text"].as_bool() == Some(true) {
            panic!("the handler broke on attempt {}", ctx.job.attempts);
        }
        std::panic::panic_any(42_u8)
    });
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let lease = Duration::from_millis(600);
    let settings = PoolSettings { concurrency: 2, lease, poll: Duration::from_millis(20) };
    let pool = tokio::spawn(workers.run(jobs.clone(), settings, async move {
        let _ = stopping.await;
    }));
    let job = jobs
        .enqueue(
            NewJob { max_attempts: 2, ..NewJob::new("test.panics", serde_json::json!({ "text": true })) },
            "test",
        )
        .await
        .unwrap();
    let other = jobs
        .enqueue(NewJob { max_attempts: 1, ..NewJob::new("test.panics", serde_json::json!({})) }, "test")
        .await
        .unwrap();
    // The first attempt fails with the panic's message and backs off (not stuck "running").
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        let seen = jobs.get(&job.id).await.unwrap();
        if seen.last_error.is_some() {
            break seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "the panic was not recorded: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.status, JobStatus::Queued, "{first:?}");
    assert_eq!(first.last_error.as_deref(), Some("the job panicked: the handler broke on attempt 1"));
    assert!(first.run_after > first.updated_at, "backs off");
    // No heartbeat renews a lease after the run ended.
    tokio::time::sleep(lease).await;
    let still = jobs.get(&job.id).await.unwrap();
    assert_eq!((still.status, still.lease_owner.as_deref()), (JobStatus::Queued, None));
    // Its backoff over, its last attempt dead-letters it.
    clock.set(&first.run_after);
    let dead = loop {
        let seen = jobs.get(&job.id).await.unwrap();
        if seen.status == JobStatus::Failed {
            break seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (dead.attempts, dead.last_error.as_deref()),
        (2, Some("the job panicked: the handler broke on attempt 2"))
    );
    let other = jobs.get(&other.id).await.unwrap();
    assert_eq!(
        (other.status, other.last_error.as_deref()),
        (JobStatus::Failed, Some("the job panicked: a panic without a message"))
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops").unwrap();
}

async fn finished_jobs_are_pruned_after_their_time_and_open_ones_never(engine: Engine) {
    let clock = TestClock::starting_now();
    let Some(f) = fixture_on(&clock, engine).await else { return };
    let jobs = f.jobs.clone();
    // Thirty days ago: one job finished, one enqueued that no worker takes.
    let today = clock.now();
    clock.set(&silo_core::Timestamp::from_unix_ms(today.unix_ms() - 30 * 86_400_000));
    let old = jobs.enqueue(NewJob::new("test.echo", serde_json::json!({})), "test").await.unwrap();
    jobs.claim("w", &["test.echo"], LEASE).await.unwrap().expect("due");
    jobs.complete(&old.id, "w", &serde_json::json!(1), None).await.unwrap();
    let waiting = jobs.enqueue(NewJob::new("test.other", serde_json::json!({})), "test").await.unwrap();
    // Today: one cancelled.
    clock.set(&today);
    let recent = jobs.enqueue(NewJob::new("test.echo", serde_json::json!({})), "test").await.unwrap();
    jobs.cancel(&recent.id, "test").await.unwrap();
    assert_eq!(jobs.prune(Duration::from_secs(7 * 86_400)).await.unwrap(), 1);
    assert!(
        matches!(jobs.get(&old.id).await, Err(silo_jobs::Error::UnknownJob(_))),
        "the old finished job went"
    );
    assert_eq!(jobs.get(&waiting.id).await.unwrap().status, JobStatus::Queued, "an old queued one stays");
    assert_eq!(
        jobs.get(&recent.id).await.unwrap().status,
        JobStatus::Cancelled,
        "a recent finished one stays"
    );
}

async fn a_lane_runs_its_kinds_beside_the_rest(engine: Engine) {
    let Some(f) = fixture(engine).await else { return };
    let jobs = f.jobs.clone();
    let mut workers = Workers::new();
    let (release, held) = tokio::sync::watch::channel(false);
    workers.register("test.slow", move |_| {
        let mut held = held.clone();
        async move {
            let _ = held.wait_for(|go| *go).await;
            Ok(serde_json::json!("slow"))
        }
    });
    workers.register("test.quick", |_| async { Ok(serde_json::json!("quick")) });
    let slow_lane = workers.lane(&["test.slow"]);
    assert_eq!((slow_lane.kinds(), workers.kinds()), (vec!["test.slow"], vec!["test.quick"]));
    let settings =
        PoolSettings { concurrency: 1, lease: Duration::from_secs(5), poll: Duration::from_millis(20) };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut pools = Vec::new();
    for lane in [slow_lane, workers] {
        let (jobs, settings, mut stopping) = (jobs.clone(), settings.clone(), stopping.clone());
        pools.push(tokio::spawn(lane.run(jobs, settings, async move {
            let _ = stopping.wait_for(|s| *s).await;
        })));
    }
    let mut slow = Vec::new();
    for _ in 0..3 {
        slow.push(jobs.enqueue(NewJob::new("test.slow", serde_json::json!({})), "test").await.unwrap());
    }
    let quick = jobs.enqueue(NewJob::new("test.quick", serde_json::json!({})), "test").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jobs.get(&quick.id).await.unwrap().status != JobStatus::Done {
        assert!(tokio::time::Instant::now() < deadline, "the quick job waited behind the slow lane");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(jobs.get(&slow[2].id).await.unwrap().status, JobStatus::Done, "the slow lane is still busy");
    release.send(true).unwrap();
    stop.send(true).unwrap();
    for pool in pools {
        tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops").unwrap();
    }
}

/// Workers claiming at once (on PostgreSQL each on a connection of its own, as the workers of
/// several nodes would) take every job exactly once.
async fn concurrent_claimers_take_each_job_once(engine: Engine) {
    let Some(f) = fixture(engine).await else { return };
    let jobs = f.jobs.clone();
    let mut enqueued = Vec::new();
    for n in 0..60 {
        enqueued.push(
            jobs.enqueue(NewJob::new("test.echo", serde_json::json!({ "n": n })), "test").await.unwrap().id,
        );
    }
    let claimers = (0..6).map(|w| {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            while let Some(job) = jobs.claim(&worker, &["test.echo"], Duration::from_secs(60)).await.unwrap()
            {
                assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
                mine.push(job.id);
            }
            mine
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers.collect::<Vec<_>>() {
        claimed.extend(claimer.await.unwrap());
    }
    claimed.sort();
    enqueued.sort();
    assert_eq!(claimed, enqueued, "{engine:?}: every job claimed, none twice");
    for id in &enqueued {
        assert_eq!(jobs.get(id).await.unwrap().attempts, 1, "{engine:?}: claimed once");
    }
}

/// A job whose tenant another server of the cluster serves is handed back: queued again a
/// moment later, without spending an attempt, however often it happens; only its holder may.
async fn a_job_handed_back_for_another_server_keeps_its_attempts(engine: Engine) {
    let clock = TestClock::starting_now();
    let Some(f) = fixture_on(&clock, engine).await else { return };
    let jobs = f.jobs.clone();
    let job = jobs
        .enqueue(NewJob { max_attempts: 2, ..NewJob::new("test.there", serde_json::json!({})) }, "test")
        .await
        .unwrap();
    for _ in 0..5 {
        jobs.claim("w", &["test.there"], LEASE).await.unwrap().expect("due");
        assert!(!jobs.hand_back(&job.id, "other", "not mine").await.unwrap(), "only its holder");
        assert!(jobs.hand_back(&job.id, "w", "tenant `acme` is served by node `n2`").await.unwrap());
        let back = jobs.get(&job.id).await.unwrap();
        assert_eq!((back.status, back.attempts), (JobStatus::Queued, 0), "no attempt spent");
        assert!(jobs.claim("w", &["test.there"], LEASE).await.unwrap().is_none(), "not at once");
        clock.advance(Duration::from_secs(1));
    }
    // The worker pool hands back what a handler says belongs elsewhere.
    let mut workers = Workers::new();
    workers.register("test.there", |_| async move {
        Err(JobError::of_kind(silo_core::ErrorKind::Elsewhere, "served by node `n3`"))
    });
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let settings =
        PoolSettings { concurrency: 1, lease: Duration::from_secs(5), poll: Duration::from_millis(20) };
    let pool = tokio::spawn(workers.run(jobs.clone(), settings, async move {
        let _ = stopping.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = jobs.get(&job.id).await.unwrap();
        if seen.status == JobStatus::Queued && seen.last_error.as_deref() == Some("served by node `n3`") {
            assert_eq!(seen.attempts, 0, "no attempt spent");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pool did not hand it back: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    pool.await.unwrap();
}

//! The storage contract, run against both databases: SQLite (a temporary
//! file) and PostgreSQL (a fresh schema on the local server). The same
//! assertions hold for each.

use psa_billing::StagedState;
use psa_billing::pipeline::RetryPolicy;
use psa_billing::storage::{CommitOutcome, Db, EventMeta, NewEffect};
use psa_billing::testing::fresh_postgres_url;
use serde_json::json;

/// A SQLite database in file `name` of a new temporary directory, which
/// must live as long as it; and the file's path.
async fn sqlite_file(name: &str) -> (Db, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    let db = Db::open(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    (db, dir, file)
}

/// Both backends; the temporary directory lives as long as the SQLite one.
async fn backends(label: &str) -> Vec<(Db, Option<tempfile::TempDir>)> {
    let (sqlite, dir, _) = sqlite_file("s.db").await;
    let pg = Db::open(&fresh_postgres_url(label).await).await.unwrap();
    assert_eq!((sqlite.backend(), pg.backend()), ("sqlite", "postgres"));
    vec![(sqlite, Some(dir)), (pg, None)]
}

fn meta(id: &str) -> EventMeta {
    EventMeta {
        id: id.into(),
        event_type: "payment_intent.succeeded".into(),
        account: Some("acct_1".into()),
        created: 1_763_800_000,
        livemode: false,
    }
}

fn effects(n: usize) -> Vec<NewEffect> {
    (0..n)
        .map(|i| NewEffect {
            kind: "payment.succeeded".into(),
            body: json!({"kind": "payment.succeeded", "n": i}),
        })
        .collect()
}

fn key(k: &str) -> (String, String) {
    ("objects".into(), k.into())
}

#[tokio::test]
async fn an_event_commits_once_with_its_state_and_effects() {
    for (db, _dir) in backends("once").await {
        let mut staged = StagedState::new(db.clone(), "evt_1");
        assert_eq!(staged.read(key("pi_1")).await.unwrap(), None);
        staged.write(key("pi_1"), Some("succeeded".into()));
        let out = db
            .commit(&meta("evt_1"), b"{}", &staged, &effects(2), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed, "{}", db.backend());
        let again = db
            .commit(&meta("evt_1"), b"{}", &staged, &effects(2), "processed")
            .await
            .unwrap();
        assert_eq!(again, CommitOutcome::Duplicate, "{}", db.backend());
        assert_eq!(db.counts().await.unwrap(), (1, 1, 2), "{}", db.backend());
        let rec = db.event("evt_1").await.unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.attempts), ("processed", 1));
        assert_eq!(rec.account.as_deref(), Some("acct_1"));
        let fx = db.effects_after(0, 10).await.unwrap();
        assert_eq!(fx.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(fx[1].effect["n"], 1);
        assert_eq!(db.effects_after(1, 10).await.unwrap().len(), 1);
        assert_eq!(
            db.read_state(&key("pi_1")).await.unwrap(),
            Some(("succeeded".into(), 1))
        );
    }
}

#[tokio::test]
async fn a_stale_read_conflicts_and_writes_nothing() {
    for (db, _dir) in backends("conflict").await {
        // Two events read the same absent key, then both write it.
        let mut first = StagedState::new(db.clone(), "evt_a");
        let mut second = StagedState::new(db.clone(), "evt_b");
        first.read(key("sub_1")).await.unwrap();
        second.read(key("sub_1")).await.unwrap();
        first.write(key("sub_1"), Some("active".into()));
        second.write(key("sub_1"), Some("canceled".into()));
        let a = db
            .commit(&meta("evt_a"), b"a", &first, &effects(1), "processed")
            .await;
        assert_eq!(a.unwrap(), CommitOutcome::Committed);
        let b = db
            .commit(&meta("evt_b"), b"b", &second, &effects(1), "processed")
            .await;
        assert_eq!(b.unwrap(), CommitOutcome::Conflict, "{}", db.backend());
        // Nothing of the conflicting event stayed: not its row, not its effect.
        assert_eq!(db.counts().await.unwrap(), (1, 1, 1), "{}", db.backend());
        assert_eq!(
            db.read_state(&key("sub_1")).await.unwrap().unwrap().0,
            "active"
        );
        // commit_state checks the same way.
        let mut late = StagedState::new(db.clone(), "ledger:t");
        late.write(key("sub_1"), None);
        let mut stale = StagedState::new(db.clone(), "ledger:t");
        stale.read(key("sub_1")).await.unwrap();
        stale.write(key("sub_1"), Some("x".into()));
        assert_eq!(
            db.commit_state(&late).await.unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(
            db.commit_state(&stale).await.unwrap(),
            CommitOutcome::Conflict
        );
        assert_eq!(db.read_state(&key("sub_1")).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_failure_is_recorded_and_a_later_success_replaces_it() {
    for (db, _dir) in backends("failure").await {
        db.record_failure(&meta("evt_f"), b"body", "plugin trapped", |n| {
            RetryPolicy::default().delay_after(n)
        })
        .await
        .unwrap();
        db.record_failure(&meta("evt_f"), b"body", "plugin trapped again", |n| {
            RetryPolicy::default().delay_after(n)
        })
        .await
        .unwrap();
        let rec = db.event("evt_f").await.unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.attempts), ("failed", 2));
        assert_eq!(rec.last_error.as_deref(), Some("plugin trapped again"));
        assert_eq!(db.counts().await.unwrap(), (1, 0, 0));
        let staged = StagedState::new(db.clone(), "evt_f");
        let out = db
            .commit(&meta("evt_f"), b"body", &staged, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed);
        let rec = db.event("evt_f").await.unwrap().unwrap();
        assert_eq!((rec.status.as_str(), rec.attempts), ("processed", 3));
        assert_eq!(rec.last_error, None);
        // A processed event never goes back to failed, and says so.
        let late = db
            .record_failure(&meta("evt_f"), b"body", "late", |n| {
                RetryPolicy::default().delay_after(n)
            })
            .await
            .unwrap();
        assert_eq!(late, None, "already processed");
        assert_eq!(
            db.event_status("evt_f").await.unwrap().as_deref(),
            Some("processed")
        );
    }
}

#[tokio::test]
async fn failures_back_off_then_land_in_the_dead_letter_list() {
    let policy = RetryPolicy {
        max_attempts: 3,
        base: std::time::Duration::from_secs(10),
        cap: std::time::Duration::from_secs(15),
    };
    assert_eq!(
        policy.delay_after(1),
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(
        policy.delay_after(2),
        Some(std::time::Duration::from_secs(15)),
        "capped"
    );
    assert_eq!(policy.delay_after(3), None);
    for (db, _dir) in backends("dead_letters").await {
        let now = psa_billing::clock::unix_now();
        assert_eq!(
            db.record_failure(&meta("evt_d"), b"body-d", "1", |n| policy.delay_after(n))
                .await
                .unwrap(),
            Some(1)
        );
        assert!(
            db.due_retries(now, 10).await.unwrap().is_empty(),
            "not due yet"
        );
        let due = db.due_retries(now + 10, 10).await.unwrap();
        assert_eq!(due, vec![("evt_d".to_string(), b"body-d".to_vec())]);
        db.record_failure(&meta("evt_d"), b"body-d", "2", |n| policy.delay_after(n))
            .await
            .unwrap();
        assert!(db.dead_letters().await.unwrap().is_empty());
        db.record_failure(&meta("evt_d"), b"body-d", "3", |n| policy.delay_after(n))
            .await
            .unwrap();
        let dead = db.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].0.status.as_str(), dead[0].0.attempts), ("dead", 3));
        assert_eq!(dead[0].1, b"body-d");
        assert!(
            db.due_retries(now + 3600, 10).await.unwrap().is_empty(),
            "dead is not retried"
        );
        // A dead event can still be applied (a replay, or Stripe's redelivery).
        let staged = StagedState::new(db.clone(), "evt_d");
        let out = db
            .commit(&meta("evt_d"), b"body-d", &staged, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed);
        assert!(db.dead_letters().await.unwrap().is_empty());
    }
}

/// Many tasks bump one counter under optimistic concurrency while others
/// commit events: no update is lost and the outbox numbers have no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_lose_nothing_and_number_the_outbox_without_gaps() {
    for (db, _dir) in backends("concurrent").await {
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    loop {
                        let mut staged = StagedState::new(db.clone(), format!("evt_{i}"));
                        let n: i64 = staged
                            .read(key("counter"))
                            .await
                            .unwrap()
                            .map_or(0, |v| v.parse().unwrap());
                        staged.write(key("counter"), Some((n + 1).to_string()));
                        let out = db
                            .commit(
                                &meta(&format!("evt_{i}")),
                                b"{}",
                                &staged,
                                &effects(3),
                                "processed",
                            )
                            .await
                            .unwrap();
                        match out {
                            CommitOutcome::Committed => break,
                            CommitOutcome::Conflict => continue,
                            CommitOutcome::Duplicate => panic!("evt_{i} is new"),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let counter = db.read_state(&key("counter")).await.unwrap().unwrap();
        assert_eq!(counter.0, "24", "{}", db.backend());
        let seqs: Vec<i64> = db
            .effects_after(0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=72).collect::<Vec<i64>>(), "{}", db.backend());
    }
}

#[tokio::test]
async fn an_unsupported_or_unreachable_database_is_a_clear_error() {
    let err = Db::open("mysql://localhost/x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unsupported database URL"), "{err}");
    let err = format!(
        "{:#}",
        Db::open("postgres://someone:secret@127.0.0.1:1/none")
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("connecting to"), "{err}");
    assert!(!err.contains("secret"), "the password leaked: {err}");
}

/// Deliveries committed at once share group commits, and each keeps its own
/// outcome: a duplicate or a conflict inside a group rolls back only itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_keeps_each_deliverys_outcome_apart() {
    for (db, _dir) in backends("group").await {
        let (groups_before, _) = db.group_commits();
        let mut commits = Vec::new();
        // 36 independent events, each with its own state key.
        for i in 0..36 {
            let mut staged = StagedState::new(db.clone(), format!("evt_g{i}"));
            staged.read(key(&format!("pi_g{i}"))).await.unwrap();
            staged.write(key(&format!("pi_g{i}")), Some("succeeded".into()));
            commits.push((format!("evt_g{i}"), staged));
        }
        // The same event twice, and two events that read the same absent key.
        for _ in 0..2 {
            commits.push(("evt_same".into(), StagedState::new(db.clone(), "evt_same")));
        }
        for id in ["evt_race_a", "evt_race_b"] {
            let mut staged = StagedState::new(db.clone(), id);
            assert_eq!(staged.read(key("shared")).await.unwrap(), None);
            staged.write(key("shared"), Some(id.into()));
            commits.push((id.into(), staged));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (id, staged) in commits {
            let db = db.clone();
            tasks.spawn(async move {
                db.commit(&meta(&id), b"{}", &staged, &effects(1), "processed")
                    .await
                    .unwrap()
            });
        }
        let outcomes = tasks.join_all().await;
        let count = |o: CommitOutcome| outcomes.iter().filter(|x| **x == o).count();
        assert_eq!(
            count(CommitOutcome::Committed),
            36 + 1 + 1,
            "{}",
            db.backend()
        );
        assert_eq!(count(CommitOutcome::Duplicate), 1, "{}", db.backend());
        assert_eq!(count(CommitOutcome::Conflict), 1, "{}", db.backend());
        // The loser of the race left nothing: no event row, no effect.
        let winner = db.read_state(&key("shared")).await.unwrap().unwrap().0;
        let loser = if winner == "evt_race_a" {
            "evt_race_b"
        } else {
            "evt_race_a"
        };
        assert!(db.event(loser).await.unwrap().is_none(), "{}", db.backend());
        let effects = db.effects_after(0, 1000).await.unwrap();
        assert!(effects.iter().all(|e| e.event_id != loser));
        let seqs: Vec<i64> = effects.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=38).collect::<Vec<i64>>(), "{}", db.backend());
        // 40 deliveries in fewer commits than deliveries.
        let (groups, _) = db.group_commits();
        assert!(
            groups - groups_before < 40,
            "{}: {} commits for 40 deliveries",
            db.backend(),
            groups - groups_before
        );
    }
}

/// More keys than one statement carries: every write lands, and a stale
/// read in the last chunk still conflicts.
#[tokio::test]
async fn a_delivery_touching_many_keys_commits_them_all_and_checks_them_all() {
    for (db, _dir) in backends("many").await {
        let keys: Vec<_> = (0..1200).map(|i| key(&format!("k{i:04}"))).collect();
        let mut staged = StagedState::new(db.clone(), "evt_many");
        for k in &keys {
            staged.read(k.clone()).await.unwrap();
            staged.write(k.clone(), Some("1".into()));
        }
        let out = db
            .commit(&meta("evt_many"), b"{}", &staged, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed, "{}", db.backend());
        assert_eq!(db.state_entries("objects").await.unwrap().len(), 1200);

        // Read everything, then the last key changes underneath.
        let mut stale = StagedState::new(db.clone(), "evt_stale");
        for k in &keys {
            stale.read(k.clone()).await.unwrap();
            stale.write(k.clone(), Some("2".into()));
        }
        let mut bump = StagedState::new(db.clone(), "evt_bump");
        bump.read(keys[1199].clone()).await.unwrap();
        bump.write(keys[1199].clone(), Some("bumped".into()));
        let out = db
            .commit(&meta("evt_bump"), b"{}", &bump, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed);
        let out = db
            .commit(&meta("evt_stale"), b"{}", &stale, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Conflict, "{}", db.backend());
        let values = db.state_entries("objects").await.unwrap();
        assert!(
            values.iter().take(1199).all(|(_, v)| v == "1"),
            "{}",
            db.backend()
        );
        assert_eq!(values[1199].1, "bumped");
    }
}

/// A group is one transaction, so one delivery the database refuses (here
/// PostgreSQL, which stores no NUL in text) fails it; the committer then
/// commits each delivery alone, and only the bad one gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_the_database_refuses_fails_alone_in_its_group() {
    let db = Db::open(&fresh_postgres_url("refused").await)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let db = db.clone();
        tasks.spawn(async move {
            let mut event = meta(&format!("evt_r{i}"));
            if i == 5 {
                event.event_type = "bad\0type".into();
            }
            let mut staged = StagedState::new(db.clone(), event.id.clone());
            staged.write(key(&format!("pi_r{i}")), Some("x".into()));
            let out = db
                .commit(&event, b"{}", &staged, &effects(1), "processed")
                .await;
            (i, out.map_err(|e| e.to_string()))
        });
    }
    for (i, out) in tasks.join_all().await {
        if i == 5 {
            let err = out.unwrap_err();
            assert!(err.contains("0x00") || err.contains("invalid"), "{err}");
            assert!(db.event("evt_r5").await.unwrap().is_none());
        } else {
            assert_eq!(out.unwrap(), CommitOutcome::Committed, "evt_r{i}");
        }
    }
    assert_eq!(db.effects_after(0, 100).await.unwrap().len(), 11);
}

/// Deliveries that write a key without reading it both commit, in one
/// group or two: the value is the last one's, and the version counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_writes_to_one_key_both_count_in_its_version() {
    for (db, _dir) in backends("blind").await {
        let mut tasks = tokio::task::JoinSet::new();
        for id in ["evt_w1", "evt_w2", "evt_w3"] {
            let db = db.clone();
            tasks.spawn(async move {
                let mut staged = StagedState::new(db.clone(), id);
                staged.write(key("shared"), Some(id.into()));
                db.commit(&meta(id), b"{}", &staged, &effects(0), "processed")
                    .await
                    .unwrap()
            });
        }
        assert!(
            tasks
                .join_all()
                .await
                .iter()
                .all(|o| *o == CommitOutcome::Committed)
        );
        let (value, version) = db.read_state(&key("shared")).await.unwrap().unwrap();
        assert!(value.starts_with("evt_w"), "{value}");
        assert_eq!(version, 3, "{}", db.backend());
    }
}

/// `commit_alone` (the bench's one-transaction-per-delivery floor) keeps
/// the contract of `commit`: applied once, then a duplicate, then a stale
/// read conflicts; and a file read back by a new process sees it all.
#[tokio::test]
async fn a_delivery_committed_alone_follows_the_same_rules() {
    for (db, dir) in backends("alone").await {
        let mut staged = StagedState::new(db.clone(), "evt_a");
        assert_eq!(staged.read(key("pi_a")).await.unwrap(), None);
        staged.write(key("pi_a"), Some("one".into()));
        let commit = async |id: &str| {
            db.commit_alone(&meta(id), b"{}", &staged, &effects(1), "processed")
                .await
                .unwrap()
        };
        assert_eq!(commit("evt_a").await, CommitOutcome::Committed);
        assert_eq!(commit("evt_a").await, CommitOutcome::Duplicate);
        // The same stale read (pi_a absent) under another event id.
        assert_eq!(commit("evt_b").await, CommitOutcome::Conflict);
        assert_eq!(db.counts().await.unwrap(), (1, 1, 1), "{}", db.backend());
        if let Some(dir) = dir {
            drop(db);
            let again = Db::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
                .await
                .unwrap();
            assert_eq!(
                again.read_state(&key("pi_a")).await.unwrap(),
                Some(("one".into(), 1))
            );
            assert_eq!(again.counts().await.unwrap(), (1, 1, 1));
        }
    }
}

#[tokio::test]
async fn sqlite_copies_its_wal_into_the_database_file_in_the_background() {
    let (db, _dir, file) = sqlite_file("c.db").await;
    let size = || std::fs::metadata(&file).unwrap().len();
    let before = size();
    // Sequential commits are groups of one; the commit connection's own
    // checkpoint interval (10 000 pages) is far from reached, so only the
    // checkpoint thread can move these pages into the file.
    let body = vec![b'x'; 2000];
    for i in 0..150 {
        let staged = StagedState::new(db.clone(), format!("evt_ck{i}"));
        let outcome = db
            .commit(
                &meta(&format!("evt_ck{i}")),
                &body,
                &staged,
                &effects(2),
                "processed",
            )
            .await
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Committed);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() < before + 150 * 2000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (was {before}): no checkpoint ran",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(db.counts().await.unwrap().0, 150);
}

/// Under a steady stream of commits the WAL keeps starting over: it stays
/// far below the 10,000 pages (some 40 MB) at which SQLite's own
/// checkpoint, inside a COMMIT, would take over.
#[tokio::test]
async fn the_wal_starts_over_under_steady_commits() {
    let (db, dir, _) = sqlite_file("wal.db").await;
    let payload = vec![b'x'; 2048];
    for i in 0..2500 {
        let id = format!("evt_wal_{i}");
        let mut staged = StagedState::new(db.clone(), id.clone());
        staged.write(key(&format!("pi_{i}")), Some("succeeded".into()));
        let out = db
            .commit(&meta(&id), &payload, &staged, &effects(1), "processed")
            .await
            .unwrap();
        assert_eq!(out, CommitOutcome::Committed);
    }
    let wal = std::fs::metadata(dir.path().join("wal.db-wal"))
        .unwrap()
        .len();
    // 2,500 commits of 6 to 10 pages each would be 15,000 to 25,000 pages
    // if the WAL never started over.
    assert!(wal < 16 << 20, "the WAL grew to {wal} bytes");
    assert_eq!(db.counts().await.unwrap(), (2500, 2500, 2500));
}

/// The commit and checkpoint threads of a SQLite file wait under
/// SCHED_BATCH, so waking them does not preempt the tokio worker.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_threads_are_batch_scheduled() {
    let (_db, _dir, _) = sqlite_file("b.db").await;
    // (name, policy) of the threads named psa-billing-commit and
    // psa-billing-checkpoint (cut to 15 bytes); each names itself and sets
    // its policy once it runs, so wait for them a little.
    let threads = || {
        let mut seen = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if !name.starts_with("psa-billing-c") {
                continue;
            }
            let sched = std::fs::read_to_string(task.join("sched")).unwrap_or_default();
            let policy = sched
                .lines()
                .find_map(|l| l.strip_prefix("policy")?.trim().strip_prefix(':'))
                .map(|p| p.trim().to_string());
            seen.push((name.trim().to_string(), policy));
        }
        seen.sort();
        seen
    };
    // 3 is SCHED_BATCH. Other tests of this binary may have theirs too.
    let batch = |seen: &[(String, Option<String>)]| {
        let named = |n: &str| seen.iter().any(|(name, _)| name == n);
        named("psa-billing-com")
            && named("psa-billing-che")
            && seen.iter().all(|(_, p)| p.as_deref() == Some("3"))
    };
    let mut seen = threads();
    for _ in 0..200 {
        if batch(&seen) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        seen = threads();
    }
    assert!(batch(&seen), "threads and policies: {seen:?}");
}

/// Two processes on one PostgreSQL database polling for due retries at
/// once take different events: each due event is claimed by one of them.
#[tokio::test]
async fn due_retries_are_claimed_by_one_process_at_a_time() {
    let url = fresh_postgres_url("claims").await;
    let (a, b) = (Db::open(&url).await.unwrap(), Db::open(&url).await.unwrap());
    let now = psa_billing::clock::unix_now();
    for i in 0..40 {
        a.record_failure(&meta(&format!("evt_c{i}")), b"body", "failed", |_| {
            Some(std::time::Duration::from_secs(1))
        })
        .await
        .unwrap();
    }
    let (x, y) = tokio::join!(a.due_retries(now + 5, 30), b.due_retries(now + 5, 30));
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut all: Vec<String> = x.iter().chain(y.iter()).map(|(id, _)| id.clone()).collect();
    let taken = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), taken, "no event taken twice");
    assert_eq!(taken, 40, "every due event taken");
    // Claimed: not due again until the claim lapses.
    assert!(a.due_retries(now + 5, 30).await.unwrap().is_empty());
    let lapsed = now + 5 + psa_billing::storage::CLAIM_SECONDS;
    assert_eq!(a.due_retries(lapsed, 100).await.unwrap().len(), 40);
}

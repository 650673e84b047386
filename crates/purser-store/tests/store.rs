//! The storage suite: every test runs against SQLite and PostgreSQL alike.

// Tests and their helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use purser_core::account::{AccountDraft, Owners};
use purser_core::audit::{Actor, ChainBreak};
use purser_core::identity::{NewUser, secret_digest};
use purser_core::{AccountScope, BoundaryRule, Role};
use purser_store::{AccountFilter, Dialect, Location, OpenMode, PageRequest, Store, StoreError};
use purser_testkit::{TestDatabase, both_backends, scope};

fn boundaries() -> Vec<purser_core::BoundaryName> {
    BoundaryRule::built_in()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn draft(name: &str, external_id: &str, boundary: &str) -> AccountDraft {
    AccountDraft {
        name: name.into(),
        external_id: external_id.into(),
        marketplace: "gcp".into(),
        marketplace_account_id: Some(format!("E-{external_id}")),
        crm_account_id: None,
        boundary: Some(boundary.into()),
        region: "us-central1".into(),
        owners: Owners::default(),
        status: Some("active".into()),
    }
}

fn admin() -> AccountScope {
    scope(
        "root",
        &[Role::Admin],
        &["us-gov", "sg-gov", "eu-sovereign"],
        Some("US"),
    )
}

async fn add(
    store: &Store,
    scope: &AccountScope,
    name: &str,
    boundary: &str,
) -> purser_core::Account {
    let fields = draft(name, &name.to_lowercase().replace(' ', "-"), boundary)
        .validate(&boundaries())
        .expect("valid draft");
    store.create_account(scope, fields).await.expect("created")
}

both_backends!(
    migrations_are_versioned_and_refuse_a_newer_database,
    |db: TestDatabase| async move {
        let store = db.open().await;
        drop(store);
        // Opening again applies nothing and succeeds.
        let store = db.open().await;
        let mut tx = store.db().begin().await.expect("tx");
        tx.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)",
        &[],
    )
    .await
    .expect("insert");
        tx.commit().await.expect("commit");
        drop(store);
        match Store::open(&db.location, OpenMode::Write).await {
            Err(StoreError::DatabaseNewer {
                database: 999,
                binary,
            }) => {
                assert_eq!(binary, purser_store::migrate::latest_version())
            }
            Err(other) => panic!("expected DatabaseNewer, got {other}"),
            Ok(_) => panic!("a newer database was opened"),
        }
    }
);

both_backends!(
    accounts_are_created_listed_and_paged_by_name,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let admin = admin();
        for name in ["Delta", "Alpha", "Charlie", "Bravo", "Echo"] {
            add(&store, &admin, name, "standard").await;
        }
        let mut names = Vec::new();
        let mut page = PageRequest {
            after: None,
            limit: Some(2),
        };
        loop {
            let result = store
                .list_accounts(&admin, &AccountFilter::default(), &page)
                .await
                .expect("list");
            assert!(result.items.len() <= 2);
            names.extend(result.items.into_iter().map(|a| a.fields.name));
            match result.next_cursor {
                Some(cursor) => page.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(names, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]);

        let found = store
            .list_accounts(
                &admin,
                &AccountFilter {
                    q: Some("HARL".into()),
                    ..AccountFilter::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("search");
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].fields.name, "Charlie");

        let bad_cursor = store
            .list_accounts(
                &admin,
                &AccountFilter::default(),
                &PageRequest {
                    after: Some("zz".into()),
                    limit: None,
                },
            )
            .await;
        assert!(matches!(bad_cursor, Err(StoreError::Invalid(_))));
    }
);

both_backends!(
    a_duplicate_external_id_is_a_conflict_on_that_field,
    |db: TestDatabase| async move {
        let store = db.open().await;
        add(&store, &admin(), "Acme", "standard").await;
        let again = draft("Acme Two", "acme", "standard")
            .validate(&boundaries())
            .expect("valid");
        match store.create_account(&admin(), again).await {
            Err(StoreError::Conflict { field, .. }) => {
                assert_eq!(field.as_deref(), Some("external_id"))
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.count_accounts().await.expect("count"), 1);
    }
);

both_backends!(
    restricted_accounts_are_invisible_to_the_uncleared_and_denials_are_audited,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let admin = admin();
        let open = add(&store, &admin, "Open Co", "standard").await;
        let gov = add(&store, &admin, "Agency", "us-gov").await;

        let uncleared = scope("sam", &[Role::Admin], &[], Some("US"));
        let listed = store
            .list_accounts(
                &uncleared,
                &AccountFilter::default(),
                &PageRequest::default(),
            )
            .await
            .expect("list");
        assert_eq!(
            listed.items.iter().map(|a| &a.id).collect::<Vec<_>>(),
            [&open.id]
        );
        assert!(matches!(
            store.account(&uncleared, &gov.id.0).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.account(&uncleared, "no-such-id").await,
            Err(StoreError::NotFound)
        ));

        // Cleared, but residing abroad: still refused.
        let abroad = scope("ines", &[Role::Support], &["us-gov"], Some("DE"));
        assert!(matches!(
            store.account(&abroad, &gov.id.0).await,
            Err(StoreError::NotFound)
        ));

        let cleared = scope("cora", &[Role::Support], &["us-gov"], Some("US"));
        assert_eq!(
            store
                .account(&cleared, &gov.id.0)
                .await
                .expect("visible")
                .id,
            gov.id
        );

        let log = store
            .audit_entries(
                &admin,
                &purser_store::AuditFilter {
                    account_id: Some(gov.id.0.clone()),
                    ..Default::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("log");
        let actions: Vec<(String, String)> = log
            .items
            .iter()
            .map(|e| (e.actor.clone(), e.action.clone()))
            .collect();
        assert!(
            actions.contains(&("user:sam".into(), "account.read_denied".into())),
            "{actions:?}"
        );
        assert!(
            actions.contains(&("user:ines".into(), "account.read_denied".into())),
            "{actions:?}"
        );
        assert!(
            actions.contains(&("user:cora".into(), "account.read".into())),
            "{actions:?}"
        );

        // The log's entries about the restricted account are hidden from the uncleared too.
        let auditor = scope("audrey", &[Role::Auditor], &[], Some("US"));
        let seen = store
            .audit_entries(
                &auditor,
                &purser_store::AuditFilter::default(),
                &PageRequest::default(),
            )
            .await
            .expect("log");
        assert!(
            seen.items
                .iter()
                .all(|e| e.account_id.as_deref() != Some(gov.id.0.as_str()))
        );
        assert!(
            seen.items
                .iter()
                .any(|e| e.account_id.as_deref() == Some(open.id.0.as_str()))
        );

        // Nobody can place an account in a boundary they are not cleared for.
        let fields = draft("Sneaky", "sneaky", "us-gov")
            .validate(&boundaries())
            .expect("valid");
        assert!(matches!(
            store.create_account(&uncleared, fields).await,
            Err(StoreError::Invalid(_))
        ));
    }
);

both_backends!(
    updates_are_audited_with_before_and_after_and_refuse_stale_writes,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let admin = admin();
        let account = add(&store, &admin, "Acme", "standard").await;
        let mut changed = account.fields.clone();
        changed.status = purser_core::AccountStatus::Suspended;
        let updated = store
            .update_account(&admin, &account.id.0, account.updated_at, changed.clone())
            .await
            .expect("update");
        assert!(updated.updated_at > account.updated_at);
        // A second writer who read the old version is refused.
        let stale = store
            .update_account(&admin, &account.id.0, account.updated_at, changed)
            .await;
        assert!(matches!(
            stale,
            Err(StoreError::Conflict { field: None, .. })
        ));

        let log = store
            .audit_entries(
                &admin,
                &purser_store::AuditFilter {
                    action: Some("account.update".into()),
                    ..Default::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("log");
        assert_eq!(log.items.len(), 1);
        let details: serde_json::Value = serde_json::from_str(&log.items[0].details).expect("json");
        assert_eq!(details["before"]["status"], "active");
        assert_eq!(details["after"]["status"], "suspended");
    }
);

both_backends!(
    the_audit_log_is_append_only_and_tampering_is_named,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let actor = Actor::new("user:root", None);
        for i in 0..6 {
            store
                .record(
                    actor
                        .draft("test.event")
                        .details(serde_json::json!({ "i": i })),
                )
                .await
                .expect("append");
        }
        let verified = store
            .verify_audit(None)
            .await
            .expect("walk")
            .expect("intact");
        assert_eq!(verified.n_entries, 6);
        let checkpoint = verified.head.clone();

        // The database itself refuses edits.
        let mut tx = store.db().begin().await.expect("tx");
        assert!(
            tx.execute(
                "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2",
                &[]
            )
            .await
            .is_err()
        );
        drop(tx);
        let mut tx = store.db().begin().await.expect("tx");
        assert!(
            tx.execute("DELETE FROM audit_log WHERE seq = 2", &[])
                .await
                .is_err()
        );
        drop(tx);

        // Someone who can drop the triggers edits an entry: verification names it.
        let drop_triggers = match store.db().dialect() {
            Dialect::Sqlite => {
                "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;"
            }
            Dialect::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log;",
        };
        let mut tx = store.db().begin().await.expect("tx");
        tx.batch(drop_triggers).await.expect("drop triggers");
        tx.execute(
            "UPDATE audit_log SET details = '{\"i\":99}' WHERE seq = 3",
            &[],
        )
        .await
        .expect("tamper");
        tx.commit().await.expect("commit");
        assert_eq!(
            store.verify_audit(None).await.expect("walk"),
            Err(ChainBreak::Edited { seq: 3 })
        );

        // …and a deletion elsewhere, after the edit is undone by restoring from the entry's twin.
        let mut tx = store.db().begin().await.expect("tx");
        tx.execute(
            "UPDATE audit_log SET details = '{\"i\":2}' WHERE seq = 3",
            &[],
        )
        .await
        .expect("restore");
        tx.execute("DELETE FROM audit_log WHERE seq = 5", &[])
            .await
            .expect("delete");
        tx.commit().await.expect("commit");
        assert_eq!(
            store.verify_audit(None).await.expect("walk"),
            Err(ChainBreak::Deleted { seq: 5, count: 1 })
        );

        // A rewrite of the whole log is caught by a checkpoint kept outside.
        let mut tx = store.db().begin().await.expect("tx");
        tx.execute("DELETE FROM audit_log", &[])
            .await
            .expect("wipe");
        tx.execute(
            &format!(
                "UPDATE audit_head SET seq = 0, hash = '{}'",
                purser_core::audit::GENESIS_HASH
            ),
            &[],
        )
        .await
        .expect("reset");
        tx.commit().await.expect("commit");
        for i in 0..6 {
            store
                .record(
                    Actor::new("user:mallory", None)
                        .draft("test.event")
                        .details(serde_json::json!({ "i": i })),
                )
                .await
                .expect("append");
        }
        assert!(
            store.verify_audit(None).await.expect("walk").is_ok(),
            "a rewritten chain is self-consistent"
        );
        assert!(matches!(
            store.verify_audit(Some(checkpoint)).await.expect("walk"),
            Err(ChainBreak::CheckpointMismatch { seq: 6, .. })
        ));
    }
);

both_backends!(
    concurrent_appends_keep_one_unbroken_chain,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    store
                        .record(
                            Actor::new(format!("user:w{worker}"), None)
                                .draft("test.event")
                                .details(serde_json::json!({ "i": i })),
                        )
                        .await
                        .expect("append");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let verified = store
            .verify_audit(None)
            .await
            .expect("walk")
            .expect("intact");
        assert_eq!(verified.n_entries, 80);
        assert_eq!(verified.head.seq, 80);
    }
);

both_backends!(
    tokens_work_until_revoked_expired_or_their_user_disabled,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let actor = Actor::new("user:root", None);
        let user = NewUser::validate(
            "ana",
            "Ana",
            &["support".into()],
            &["us-gov".into()],
            Some("US"),
        )
        .expect("valid");
        let user = store.create_user(&actor, user, None).await.expect("user");
        let now = Timestamp::now();
        let live = store
            .create_token(
                &actor,
                &user.id,
                "ci",
                &secret_digest("live-secret"),
                now + SignedDuration::from_hours(1),
            )
            .await
            .expect("token");
        store
            .create_token(
                &actor,
                &user.id,
                "old",
                &secret_digest("old-secret"),
                now - SignedDuration::from_secs(1),
            )
            .await
            .expect("token");
        assert!(matches!(
            store
                .create_token(
                    &actor,
                    &user.id,
                    "ci",
                    &secret_digest("other"),
                    now + SignedDuration::from_hours(1)
                )
                .await,
            Err(StoreError::Conflict { .. })
        ));

        let principal = store
            .principal_for_token(&secret_digest("live-secret"), now)
            .await
            .expect("lookup")
            .expect("live");
        assert_eq!(principal.username, "ana");
        assert_eq!(principal.via_token.as_deref(), Some("ci"));
        assert!(principal.clearances.contains("us-gov"));
        assert!(
            store
                .principal_for_token(&secret_digest("old-secret"), now)
                .await
                .expect("lookup")
                .is_none()
        );
        assert!(
            store
                .principal_for_token(&secret_digest("never-issued"), now)
                .await
                .expect("lookup")
                .is_none()
        );

        store
            .set_user_disabled(&actor, &user.id, true)
            .await
            .expect("disable");
        assert!(
            store
                .principal_for_token(&secret_digest("live-secret"), now)
                .await
                .expect("lookup")
                .is_none()
        );
        store
            .set_user_disabled(&actor, &user.id, false)
            .await
            .expect("enable");
        // Someone else cannot revoke ana's token as their own.
        assert!(matches!(
            store
                .revoke_token(&actor, &live.id, Some("someone-else"))
                .await,
            Err(StoreError::NotFound)
        ));
        store
            .revoke_token(&actor, &live.id, Some(&user.id))
            .await
            .expect("revoke");
        assert!(
            store
                .principal_for_token(&secret_digest("live-secret"), now)
                .await
                .expect("lookup")
                .is_none()
        );
        assert_eq!(store.tokens(Some(&user.id)).await.expect("list").len(), 2);
    }
);

both_backends!(
    sessions_expire_and_are_pruned,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let actor = Actor::new("user:root", None);
        let user = NewUser::validate("ben", "", &["viewer".into()], &[], None).expect("valid");
        let user = store
            .create_user(&actor, user, Some("hash".into()))
            .await
            .expect("user");
        let now = Timestamp::now();
        store
            .create_session(
                &user.id,
                &secret_digest("s1"),
                "csrf1",
                now + SignedDuration::from_hours(8),
            )
            .await
            .expect("session");
        store
            .create_session(
                &user.id,
                &secret_digest("s2"),
                "csrf2",
                now - SignedDuration::from_secs(1),
            )
            .await
            .expect("session");
        let session = store
            .session(&secret_digest("s1"), now)
            .await
            .expect("lookup")
            .expect("live");
        assert_eq!(session.csrf_token, "csrf1");
        assert!(
            store
                .session(&secret_digest("s2"), now)
                .await
                .expect("lookup")
                .is_none()
        );
        assert_eq!(store.prune_sessions(now).await.expect("prune"), 1);
        store.end_session(&secret_digest("s1")).await.expect("end");
        assert!(
            store
                .session(&secret_digest("s1"), now)
                .await
                .expect("lookup")
                .is_none()
        );
    }
);

both_backends!(
    a_job_run_is_claimed_once_and_taken_over_only_after_its_lease,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let slot: Timestamp = "2026-11-23T10:00:00Z".parse().expect("ts");
        let now = store.now().await.expect("now");
        assert!(
            store
                .schedule_job("prune", slot, now)
                .await
                .expect("schedule")
        );
        assert!(
            !store
                .schedule_job("prune", slot, now)
                .await
                .expect("schedule"),
            "scheduled once"
        );

        let lease = SignedDuration::from_secs(30);
        let a = store
            .claim_job(&["prune"], "a", lease, now)
            .await
            .expect("claim")
            .expect("a claims");
        assert_eq!(a.attempts, 1);
        assert!(
            store
                .claim_job(&["prune"], "b", lease, now)
                .await
                .expect("claim")
                .is_none(),
            "leased to a"
        );
        assert!(
            store
                .claim_job(&["other"], "b", lease, now + SignedDuration::from_mins(5))
                .await
                .expect("claim")
                .is_none()
        );

        // a stops renewing; after the lease, b takes over.
        let later = now + SignedDuration::from_secs(31);
        let b = store
            .claim_job(&["prune"], "b", lease, later)
            .await
            .expect("claim")
            .expect("b takes over");
        assert_eq!(b.attempts, 2);
        assert!(
            !store
                .renew_job_lease(&a, "a", lease, later)
                .await
                .expect("renew"),
            "a lost its lease"
        );
        assert!(
            !store
                .finish_job(&a, "a", Ok("late".into()), later)
                .await
                .expect("finish")
        );
        assert!(
            store
                .finish_job(&b, "b", Ok("pruned 3".into()), later)
                .await
                .expect("finish")
        );
        let runs = store.job_runs(Some("prune"), 10).await.expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (
                runs[0].state.as_str(),
                runs[0].owner.as_deref(),
                runs[0].outcome.as_deref()
            ),
            ("done", Some("b"), Some("pruned 3"))
        );
        assert!(
            store
                .claim_job(
                    &["prune"],
                    "c",
                    lease,
                    later + SignedDuration::from_hours(1)
                )
                .await
                .expect("claim")
                .is_none()
        );
    }
);

#[tokio::test]
async fn a_second_sqlite_writer_is_refused_but_readers_work_beside_it() {
    let db = TestDatabase::new(purser_testkit::Backend::Sqlite).await;
    let store = db.open().await;
    store
        .record(Actor::new("user:root", None).draft("test.event"))
        .await
        .expect("append");
    match Store::open(&db.location, OpenMode::Write).await {
        Err(error @ StoreError::Locked { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&std::process::id().to_string()),
                "{message}"
            );
            assert!(message.contains("SQLite allows one writer"), "{message}");
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two writers opened one SQLite file"),
    }
    let reader = Store::open(&db.location, OpenMode::ReadOnly)
        .await
        .expect("read-only open");
    assert_eq!(
        reader
            .verify_audit(None)
            .await
            .expect("walk")
            .expect("intact")
            .n_entries,
        1
    );
    assert!(matches!(
        reader.record(Actor::new("x", None).draft("y")).await,
        Err(StoreError::ReadOnly(_))
    ));
    drop(store);
    // Once the writer is gone, another may open.
    Store::open(&db.location, OpenMode::Write)
        .await
        .expect("writer after the first closed");
}

#[tokio::test]
async fn read_only_open_of_a_missing_database_says_what_to_do() {
    let dir = tempfile::tempdir().expect("dir");
    let error = Store::open(&Location::sqlite_in(dir.path()), OpenMode::ReadOnly)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("start `purser serve` once"),
        "{error}"
    );
}

fn offer() -> purser_core::commercial::Offer {
    purser_core::commercial::OfferDraft {
        name: "Private: capacity with overage".into(),
        kind: "private".into(),
        marketplace: "gcp".into(),
        currency: None,
        dimensions: vec![purser_core::commercial::OfferDimensionDraft {
            key: "capacity_tib_hours".into(),
            marketplace_name: None,
            unit: "TiB-hour".into(),
            reporting: None,
            settle: None,
        }],
        pricing: None,
    }
    .validate("offer-1".into())
    .expect("valid offer")
}

fn entitlement_for(
    account: &purser_core::Account,
    offer: &purser_core::commercial::Offer,
) -> purser_core::commercial::Entitlement {
    purser_core::commercial::EntitlementDraft {
        offer_id: offer.id.clone(),
        start: "2026-12-01T00:00:00Z".into(),
        end: "2027-12-01T00:00:00Z".into(),
        status: Some("active".into()),
        commitments: std::collections::BTreeMap::from([(
            "capacity_tib_hours".into(),
            purser_core::commercial::CommitmentDraft {
                committed_per_period: "360000".into(),
                overage_threshold: Some("100".into()),
                overage_price: "0.0125".into(),
                overage_reporting: None,
                committed_fee: None,
            },
        )]),
        marketplace_binding: None,
    }
    .validate(format!("ent-{}", account.id), account.id.0.clone(), offer)
    .expect("valid entitlement")
}

both_backends!(
    entitlements_follow_their_account_s_scope,
    |db: TestDatabase| async move {
        let store = db.open().await;
        let admin = admin();
        let offer = store
            .create_offer(&Actor::new("user:root", None), offer())
            .await
            .expect("offer");
        assert_eq!(store.offers().await.expect("offers"), vec![offer.clone()]);
        assert_eq!(store.offer(&offer.id).await.expect("offer"), offer);

        let open = add(&store, &admin, "Open Co", "standard").await;
        let gov = add(&store, &admin, "Agency", "us-gov").await;
        let open_entitlement = store
            .create_entitlement(&admin, entitlement_for(&open, &offer))
            .await
            .expect("created");
        let gov_entitlement = store
            .create_entitlement(&admin, entitlement_for(&gov, &offer))
            .await
            .expect("created");
        assert_eq!(
            store.entitlements(&admin, &gov.id.0).await.expect("list"),
            vec![gov_entitlement.clone()]
        );

        let uncleared = scope("sam", &[Role::Finance], &[], Some("US"));
        assert!(matches!(
            store.entitlement(&uncleared, &gov_entitlement.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.entitlements(&uncleared, &gov.id.0).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store
                .create_entitlement(&uncleared, entitlement_for(&gov, &offer))
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store
                .set_entitlement_status(
                    &uncleared,
                    &gov_entitlement.id,
                    purser_core::commercial::EntitlementStatus::Cancelled
                )
                .await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store
                .entitlement(&admin, &gov_entitlement.id)
                .await
                .expect("unchanged"),
            gov_entitlement
        );
        assert_eq!(
            store
                .entitlement(&uncleared, &open_entitlement.id)
                .await
                .expect("visible"),
            open_entitlement
        );

        let suspended = store
            .set_entitlement_status(
                &admin,
                &open_entitlement.id,
                purser_core::commercial::EntitlementStatus::Suspended,
            )
            .await
            .expect("update");
        assert_eq!(
            store
                .entitlement(&admin, &open_entitlement.id)
                .await
                .expect("read"),
            suspended
        );
        let log = store
            .audit_entries(
                &admin,
                &purser_store::AuditFilter {
                    action: Some("entitlement.*".into()),
                    ..Default::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("log");
        let actions: Vec<&str> = log.items.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "entitlement.update",
                "entitlement.create",
                "entitlement.create"
            ]
        );
        let denied = store
            .audit_entries(
                &admin,
                &purser_store::AuditFilter {
                    actor: Some("user:sam".into()),
                    ..Default::default()
                },
                &PageRequest::default(),
            )
            .await
            .expect("log");
        assert_eq!(denied.items.len(), 4, "every denied attempt is audited");
    }
);

/// PostgreSQL's binary COPY, encoded by Purser and sent a megabyte at a time: rows
/// of every value kind, NULLs among them, over several sends, read back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_copied_into_postgres_read_back_exactly() {
    use purser_store::db::Value;
    let db = TestDatabase::new(purser_testkit::Backend::Postgres).await;
    let store = db.open().await;
    let mut tx = store.db().begin().await.unwrap();
    tx.batch("CREATE TABLE copied (n BIGINT, t TEXT, b BYTEA)")
        .await
        .unwrap();
    // About 3 MB in all, so the rows go over more than one send.
    let rows: Vec<Vec<Value>> = (0..3000i64)
        .map(|i| {
            vec![
                if i % 7 == 0 {
                    Value::Null
                } else {
                    Value::Int(i - 1500)
                },
                if i % 11 == 0 {
                    Value::Null
                } else {
                    Value::Text(format!("{i}:{}é", "x".repeat((i % 900) as usize)))
                },
                Value::Bytes(vec![(i % 256) as u8; (i % 1300) as usize]),
            ]
        })
        .collect();
    tx.copy_in("copied", &["n", "t", "b"], &rows).await.unwrap();
    let back = tx.query("SELECT n, t, b FROM copied", &[]).await.unwrap();
    assert_eq!(back.len(), rows.len());
    let mut expected: Vec<(Option<i64>, Option<String>, Vec<u8>)> = rows
        .iter()
        .map(|r| {
            let n = match &r[0] {
                Value::Int(n) => Some(*n),
                _ => None,
            };
            let t = match &r[1] {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            };
            let Value::Bytes(b) = &r[2] else {
                unreachable!()
            };
            (n, t, b.clone())
        })
        .collect();
    let mut got: Vec<(Option<i64>, Option<String>, Vec<u8>)> = back
        .iter()
        .map(|row| {
            (
                row.opt_int(0).unwrap(),
                row.opt_text(1).unwrap(),
                row.bytes(2).unwrap(),
            )
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // A row that does not match the columns is refused with a clear error.
    let wrong = tx
        .copy_in("copied", &["n", "t", "b"], &[vec![Value::Int(1)]])
        .await;
    assert!(matches!(wrong, Err(StoreError::Backend(_))), "{wrong:?}");
}

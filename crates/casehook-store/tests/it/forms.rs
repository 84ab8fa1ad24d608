//! Forms against stored data: a change that would invalidate stored values is refused naming
//! each field, a compatible one bumps the version, a case validated against an older version
//! is refused, and an archived form takes no new cases.

use casehook_core::FieldErrorCode;
use casehook_core::case::CaseRef;
use casehook_core::form::{FieldDef, FieldType, FormSpec};
use casehook_store::{Store, StoreError};
use serde_json::json;

use crate::fixtures::{Setup, customer_form};
use crate::harness::contract_tests;

/// The customer form with `key`'s type replaced.
fn retyped(key: &str, field_type: FieldType) -> FormSpec {
    let mut spec = customer_form();
    let field = spec
        .fields
        .iter_mut()
        .find(|f| f.key == key)
        .expect("a field of the customer form");
    *field = FieldDef::new(key, field_type);
    spec
}

/// The fields a rejected change names, by key.
fn rejected_fields(
    result: Result<casehook_store::FormRecord, StoreError>,
) -> Vec<(String, FieldErrorCode)> {
    match result {
        Err(StoreError::Rejected { details, .. }) => {
            let mut fields: Vec<_> = details.into_iter().map(|d| (d.field, d.code)).collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            fields
        }
        other => panic!("expected the change to be rejected, got {other:?}"),
    }
}

async fn change_invalidating_stored_data_is_rejected(store: Store) {
    let s = Setup::new(&store, "w").await;
    s.create(&store, json!({"name": "Ada", "amount": 10})).await;
    s.create(&store, json!({"name": "Bob"})).await;

    // Number → text: a stored 10 is not text.
    let fields = rejected_fields(
        store
            .update_form(s.ws, s.form.id, retyped("amount", FieldType::Text), Some(1))
            .await,
    );
    assert_eq!(
        fields,
        [("amount".to_string(), FieldErrorCode::IncompatibleChange)]
    );

    // Removing a field that holds values, together with the retyping: both are named.
    let mut spec = retyped("amount", FieldType::Boolean);
    spec.fields.retain(|f| f.key != "name");
    let fields = rejected_fields(store.update_form(s.ws, s.form.id, spec, None).await);
    assert_eq!(
        fields,
        [
            ("amount".to_string(), FieldErrorCode::IncompatibleChange),
            ("name".to_string(), FieldErrorCode::IncompatibleChange)
        ]
    );

    let form = store.get_form(s.ws, s.form.id).await.expect("get form");
    assert_eq!(form, s.form, "a rejected change leaves the form as it was");
    assert_eq!(s.feed(&store).await.len(), 2);
}

async fn compatible_change_bumps_the_version(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s
        .create(&store, json!({"name": "Ada", "amount": 10, "tier": "gold"}))
        .await;

    // select → text always fits; text → number fits while no case holds notes.
    let mut spec = retyped("tier", FieldType::Text);
    let notes = spec
        .fields
        .iter_mut()
        .find(|f| f.key == "notes")
        .expect("notes");
    *notes = FieldDef::new("notes", FieldType::Number);
    spec.fields.push(FieldDef::new("phone", FieldType::Text));
    let updated = store
        .update_form(s.ws, s.form.id, spec.clone(), Some(1))
        .await
        .expect("a compatible change");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.spec, spec);
    assert_eq!(updated.id, s.form.id);
    assert_eq!(updated.created_at, s.form.created_at);
    assert_eq!(store.get_form(s.ws, s.form.id).await.expect("get"), updated);

    // The same definition again changes nothing.
    let same = store
        .update_form(s.ws, s.form.id, spec, Some(2))
        .await
        .expect("an unchanged definition");
    assert_eq!(same.version, 2);
    // Cases keep their data.
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("get"),
        case
    );

    let stale = store
        .update_form(s.ws, s.form.id, customer_form(), Some(1))
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::VersionMismatch {
                expected: 1,
                current: 2
            })
        ),
        "{stale:?}"
    );
}

async fn deleted_cases_do_not_block_form_changes(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"amount": 10})).await;
    store
        .delete_case(s.ws, case.id, None, crate::fixtures::actor())
        .await
        .expect("delete");
    let updated = store
        .update_form(s.ws, s.form.id, retyped("amount", FieldType::Text), None)
        .await;
    assert_eq!(updated.expect("only live cases count").version, 2);
}

async fn case_of_a_stale_form_version_is_refused(store: Store) {
    let s = Setup::new(&store, "w").await;
    let stale = s.case(json!({"name": "Ada"}));
    let mut spec = customer_form();
    spec.fields.push(FieldDef::new("phone", FieldType::Text));
    let form = store
        .update_form(s.ws, s.form.id, spec, None)
        .await
        .expect("update");
    assert_eq!(form.version, 2);

    let refused = store.create_case(stale.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::FormChanged)),
        "{refused:?}"
    );
    assert!(s.feed(&store).await.is_empty());

    let current = casehook_store::NewCase {
        form_version: 2,
        ..stale
    };
    let (case, event) = store
        .create_case(current)
        .await
        .expect("the current version is accepted");
    assert_eq!(
        (case.number, event.sequence),
        (1, 1),
        "the refused creation used no number"
    );
}

async fn archived_form_takes_no_new_cases(store: Store) {
    let s = Setup::new(&store, "w").await;
    let case = s.create(&store, json!({"name": "Ada"})).await;
    let archived = store.archive_form(s.ws, s.form.id).await.expect("archive");
    assert!(archived.archived_at.is_some());
    assert_eq!(archived.version, 2);
    assert_eq!(
        store
            .archive_form(s.ws, s.form.id)
            .await
            .expect("archiving is idempotent"),
        archived
    );

    for version in [1, archived.version] {
        let new = casehook_store::NewCase {
            form_version: version,
            ..s.case(json!({}))
        };
        let refused = store.create_case(new).await;
        // Validated against the archived version: archived. Against an older one: changed
        // (validate again, then learn it is archived).
        let expected_archived = version == archived.version;
        assert!(
            if expected_archived {
                matches!(refused, Err(StoreError::FormArchived))
            } else {
                matches!(refused, Err(StoreError::FormChanged))
            },
            "version {version}: {refused:?}"
        );
    }
    assert_eq!(s.feed(&store).await.len(), 1);
    assert_eq!(
        store
            .get_case(s.ws, CaseRef::Id(case.id))
            .await
            .expect("old cases stay"),
        case
    );
    assert!(
        store
            .list_forms(s.ws, false)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.list_forms(s.ws, true).await.expect("list"),
        [archived]
    );
}

contract_tests!(
    change_invalidating_stored_data_is_rejected,
    compatible_change_bumps_the_version,
    deleted_cases_do_not_block_form_changes,
    case_of_a_stale_form_version_is_refused,
    archived_form_takes_no_new_cases,
);

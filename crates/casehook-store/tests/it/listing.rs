//! Listing cases: filters by form, status, data equality and time ranges, and cursor
//! pagination, newest first.

use std::collections::BTreeSet;

use casehook_core::case::Case;
use casehook_core::form::{FieldDef, FieldType, FormSpec};
use casehook_store::{CaseFilter, Store, to_micros};
use serde_json::{Value, json};

use crate::fixtures::{Setup, all_cases, patch};
use crate::harness::contract_tests;

fn numbers(cases: &[Case]) -> Vec<i64> {
    cases.iter().map(|c| c.number).collect()
}

async fn list(store: &Store, s: &Setup, filter: CaseFilter) -> Vec<i64> {
    numbers(&all_cases(store, s.ws, filter).await)
}

async fn list_filters_by_form_and_status(store: Store) {
    let s = Setup::new(&store, "w").await;
    let order_spec = FormSpec {
        fields: vec![FieldDef::new("total", FieldType::Number)],
        ..FormSpec::new("Order")
    };
    let order = store
        .create_form(s.ws, order_spec)
        .await
        .expect("second form");
    for (form_id, form_version, status) in [
        (s.form.id, s.form.version, "open"),
        (order.id, order.version, "open"),
        (s.form.id, s.form.version, "closed"),
        (s.form.id, s.form.version, "open"),
        (order.id, order.version, "closed"),
    ] {
        let new = casehook_store::NewCase {
            form_id,
            form_version,
            status: status.into(),
            ..s.case(json!({}))
        };
        store.create_case(new).await.expect("create");
    }
    let by = |form_id, status: Option<&str>| CaseFilter {
        form_id,
        status: status.map(Into::into),
        ..CaseFilter::default()
    };
    assert_eq!(list(&store, &s, by(None, None)).await, [5, 4, 3, 2, 1]);
    assert_eq!(list(&store, &s, by(Some(s.form.id), None)).await, [4, 3, 1]);
    assert_eq!(list(&store, &s, by(Some(order.id), None)).await, [5, 2]);
    assert_eq!(list(&store, &s, by(None, Some("open"))).await, [4, 2, 1]);
    assert_eq!(list(&store, &s, by(None, Some("closed"))).await, [5, 3]);
    assert_eq!(
        list(&store, &s, by(Some(order.id), Some("open"))).await,
        [2]
    );
    assert!(list(&store, &s, by(None, Some("nope"))).await.is_empty());
}

async fn list_filters_by_data_equality(store: Store) {
    let s = Setup::new(&store, "w").await;
    for data in [
        json!({"name": "Ada", "amount": 10, "tier": "gold"}),
        json!({"name": "Bob", "amount": 10}),
        json!({"name": "Ada", "amount": 12.5}),
        json!({"name": "10", "amount": -3}),
        json!({}),
    ] {
        s.create(&store, data).await;
    }
    let by = |pairs: &[(&str, Value)]| CaseFilter {
        data_equals: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..CaseFilter::default()
    };
    assert_eq!(
        list(&store, &s, by(&[("name", json!("Ada"))])).await,
        [3, 1]
    );
    assert_eq!(list(&store, &s, by(&[("amount", json!(10))])).await, [2, 1]);
    assert_eq!(list(&store, &s, by(&[("amount", json!(12.5))])).await, [3]);
    assert_eq!(list(&store, &s, by(&[("amount", json!(-3))])).await, [4]);
    assert_eq!(
        list(
            &store,
            &s,
            by(&[("name", json!("Ada")), ("amount", json!(10))])
        )
        .await,
        [1],
        "conditions combine"
    );
    assert_eq!(list(&store, &s, by(&[("tier", json!("gold"))])).await, [1]);
    assert_eq!(list(&store, &s, by(&[("name", json!("10"))])).await, [4]);
    assert!(
        list(&store, &s, by(&[("name", json!(10))]))
            .await
            .is_empty(),
        "a number does not equal a string"
    );
    assert!(
        list(&store, &s, by(&[("amount", json!("10"))]))
            .await
            .is_empty(),
        "a string does not equal a number"
    );
    assert!(
        list(&store, &s, by(&[("name", json!("ada"))]))
            .await
            .is_empty(),
        "equality is exact"
    );
    assert!(
        list(&store, &s, by(&[("notes", json!("x"))]))
            .await
            .is_empty(),
        "an absent field equals nothing"
    );
}

async fn number_filters_compare_by_value(store: Store) {
    let s = Setup::new(&store, "w").await;
    // Stored as a client sent it: JSON `10.0` is the number ten, as `10` is.
    s.create(&store, json!({"amount": 10.0})).await;
    s.create(&store, json!({"amount": 10})).await;
    let filter = |v: Value| CaseFilter {
        data_equals: vec![("amount".into(), v)],
        ..CaseFilter::default()
    };
    assert_eq!(list(&store, &s, filter(json!(10))).await, [2, 1]);
    assert_eq!(list(&store, &s, filter(json!(10.0))).await, [2, 1]);
}

async fn list_filters_by_time_ranges(store: Store) {
    let s = Setup::new(&store, "w").await;
    let c1 = s.create(&store, json!({})).await;
    let c2 = s.create(&store, json!({})).await;
    let c3 = s.create(&store, json!({})).await;
    assert!(
        c1.created_at < c2.created_at && c2.created_at < c3.created_at,
        "commits one after another get later times"
    );
    let at = |c: &Case| to_micros(c.created_at);

    let range = |after: Option<i64>, before: Option<i64>| CaseFilter {
        created_after: after,
        created_before: before,
        ..CaseFilter::default()
    };
    assert_eq!(
        list(&store, &s, range(Some(at(&c1)), None)).await,
        [3, 2],
        "bounds are exclusive"
    );
    assert_eq!(list(&store, &s, range(None, Some(at(&c3)))).await, [2, 1]);
    assert_eq!(
        list(&store, &s, range(Some(at(&c1)), Some(at(&c3)))).await,
        [2]
    );
    assert!(
        list(&store, &s, range(Some(at(&c3)), None))
            .await
            .is_empty()
    );

    let (c1, _) = s
        .update(&store, c1.id, patch(json!({"name": "touched"})))
        .await;
    assert!(c1.updated_at > c3.updated_at);
    let updated = |after: Option<&Case>, before: Option<&Case>| CaseFilter {
        updated_after: after.map(|c| to_micros(c.updated_at)),
        updated_before: before.map(|c| to_micros(c.updated_at)),
        ..CaseFilter::default()
    };
    assert_eq!(
        list(&store, &s, updated(Some(&c3), None)).await,
        [1],
        "only the case touched since"
    );
    assert_eq!(list(&store, &s, updated(None, Some(&c1))).await, [3, 2]);
    assert_eq!(list(&store, &s, updated(Some(&c2), Some(&c1))).await, [3]);
    // Created ranges still go by creation.
    assert_eq!(list(&store, &s, range(None, Some(at(&c2)))).await, [1]);
}

async fn list_paginates_newest_first(store: Store) {
    let s = Setup::new(&store, "w").await;
    for i in 0..25 {
        s.create(&store, json!({"amount": i})).await;
    }
    let mut filter = CaseFilter {
        limit: 10,
        ..CaseFilter::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = store.list_cases(s.ws, &filter).await.expect("list");
        pages.push(numbers(&page.items));
        match page.next_cursor {
            Some(cursor) => {
                assert_eq!(
                    Some(cursor),
                    page.items.last().map(|c| c.number),
                    "the cursor is the page's last number"
                );
                filter.before_number = Some(cursor);
            }
            None => break,
        }
        assert!(pages.len() <= 3, "more pages than 25 cases fill: {pages:?}");
    }
    let expected: Vec<Vec<i64>> = vec![
        (16..=25).rev().collect(),
        (6..=15).rev().collect(),
        (1..=5).rev().collect(),
    ];
    assert_eq!(pages, expected);
    let seen: BTreeSet<i64> = pages.iter().flatten().copied().collect();
    assert_eq!(seen, (1..=25).collect(), "every case exactly once");

    // A page that ends exactly at the last case says so.
    let exact = store
        .list_cases(
            s.ws,
            &CaseFilter {
                limit: 5,
                before_number: Some(6),
                ..CaseFilter::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(numbers(&exact.items), [5, 4, 3, 2, 1]);
    assert_eq!(exact.next_cursor, None);
}

async fn pagination_combines_with_filters(store: Store) {
    let s = Setup::new(&store, "w").await;
    for i in 0..12 {
        s.create(
            &store,
            json!({"tier": if i % 2 == 0 { "gold" } else { "silver" }}),
        )
        .await;
    }
    let gold = CaseFilter {
        limit: 4,
        data_equals: vec![("tier".into(), json!("gold"))],
        ..CaseFilter::default()
    };
    let first = store.list_cases(s.ws, &gold).await.expect("list");
    assert_eq!(numbers(&first.items), [11, 9, 7, 5]);
    let rest = store
        .list_cases(
            s.ws,
            &CaseFilter {
                before_number: first.next_cursor,
                ..gold
            },
        )
        .await
        .expect("list");
    assert_eq!(numbers(&rest.items), [3, 1]);
    assert_eq!(rest.next_cursor, None);
}

contract_tests!(
    list_filters_by_form_and_status,
    list_filters_by_data_equality,
    number_filters_compare_by_value,
    list_filters_by_time_ranges,
    list_paginates_newest_first,
    pagination_combines_with_filters,
);

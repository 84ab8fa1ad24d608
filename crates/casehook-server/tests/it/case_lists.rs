//! Listing cases: filters by form, status, field values and creation time, newest first,
//! walked page by page with a cursor.

use serde_json::{Value, json};

use crate::support::{TestApp, api_tests, text};

api_tests!(
    lists_filter_by_form_status_data_and_creation_time,
    data_filters_compare_numbers_by_value,
    the_cursor_walks_every_case_once_newest_first,
);

fn numbers(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|c| c["number"].as_i64().expect("a case number"))
        .collect()
}

/// The case numbers `GET /cases<query>` answers, in order.
pub async fn list(app: &TestApp, query: &str) -> Vec<i64> {
    numbers(
        &app.get(&format!("/cases{query}"), &app.admin_key)
            .await
            .expect_status(200)
            .items(),
    )
}

fn new_case(form: &str, status: &str, data: Value) -> Value {
    json!({"form_id": form, "status": status, "data": data})
}

async fn lists_filter_by_form_status_data_and_creation_time(app: TestApp) {
    let claims = text(&app.create_claims_form().await["id"]);
    let other = text(
        &app.create_form(json!({"name": "Other", "fields": [{"key": "kind", "type": "text"}]}))
            .await["id"],
    );
    let mut cases = Vec::new();
    for body in [
        new_case(&claims, "open", json!({"amount": 1500, "kind": "car"})),
        new_case(&claims, "approved", json!({"amount": 200, "kind": "home"})),
        new_case(&other, "open", json!({"kind": "car"})),
        new_case(&claims, "open", json!({"amount": 1500, "kind": "home"})),
        new_case(&claims, "approved", json!({"amount": 1500, "kind": "car"})),
    ] {
        cases.push(app.create_case_with(body).await);
    }

    assert_eq!(list(&app, "").await, [5, 4, 3, 2, 1]);
    assert_eq!(
        list(&app, &format!("?form_id={claims}")).await,
        [5, 4, 2, 1]
    );
    assert_eq!(list(&app, &format!("?form_id={other}")).await, [3]);
    assert_eq!(list(&app, "?status=approved").await, [5, 2]);
    assert_eq!(list(&app, "?data.kind=car").await, [5, 3, 1]);
    assert_eq!(list(&app, "?data.kind=%22car%22").await, [5, 3, 1]);
    assert_eq!(list(&app, "?data.amount=1500").await, [5, 4, 1]);
    assert_eq!(list(&app, "?data.kind=car&status=approved").await, [5]);
    assert_eq!(
        list(
            &app,
            &format!("?data.kind=car&form_id={claims}&status=open")
        )
        .await,
        [1]
    );
    assert!(list(&app, "?data.kind=boat").await.is_empty());

    // RFC 3339 in a query string: `+` (of an offset) would read as a blank.
    let pivot = text(&cases[1]["created_at"]).replace('+', "%2B");
    let after = app
        .get(&format!("/cases?created_after={pivot}"), &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(numbers(&after.items()), [5, 4, 3], "strictly after #2");
    let before = app
        .get(&format!("/cases?created_before={pivot}"), &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(numbers(&before.items()), [1], "strictly before #2");

    for bad in [
        "?form_id=nope",
        "?status=open&unknown=1",
        "?data.Not-A-Key=1",
        "?created_after=yesterday",
        "?limit=0",
        "?limit=1001",
        "?cursor=abc",
        "?include_deleted=maybe",
    ] {
        app.get(&format!("/cases{bad}"), &app.admin_key)
            .await
            .expect_error(400, "invalid_query");
    }
}

async fn data_filters_compare_numbers_by_value(app: TestApp) {
    let claims = text(&app.create_claims_form().await["id"]);
    app.create_case(&claims, json!({"amount": 1500})).await;
    // JSON keeps the spelling 1500.0, but it is the same number.
    app.create_case(&claims, json!({"amount": 1500.0})).await;
    assert_eq!(list(&app, "?data.amount=1500").await, [2, 1]);
    assert_eq!(list(&app, "?data.amount=1500.0").await, [2, 1]);
}

async fn the_cursor_walks_every_case_once_newest_first(app: TestApp) {
    let form = text(&app.create_claims_form().await["id"]);
    for i in 0..5 {
        app.create_case(&form, json!({"amount": i})).await;
    }
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = app
            .get(&format!("/cases{query}"), &app.admin_key)
            .await
            .expect_status(200);
        let got = numbers(&page.items());
        pages.push(got.clone());
        seen.extend(got);
        match page.body.get("next_cursor") {
            Some(cursor) => query = format!("?limit=2&cursor={}", text(cursor)),
            None => break,
        }
        assert!(pages.len() < 10, "the cursor does not end: {pages:?}");
    }
    assert_eq!(pages, [vec![5, 4], vec![3, 2], vec![1]]);
    assert_eq!(seen, [5, 4, 3, 2, 1]);

    // An exact multiple of the page size ends without an empty extra page.
    let page = app
        .get("/cases?limit=5", &app.admin_key)
        .await
        .expect_status(200);
    assert_eq!(page.items().len(), 5);
    assert!(page.body.get("next_cursor").is_none(), "{}", page.text);
}

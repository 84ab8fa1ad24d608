//! The few API calls these tests make, with the status they must answer.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::harness::{get, post};

/// Create a form with no required fields; its id.
pub fn create_form(addr: SocketAddr, key: &str, name: &str) -> String {
    let body = json!({"name": name, "fields": [{"key": "note", "type": "text"}]});
    let response = post(addr, "/api/v1/forms", Some(key), &body).expect("create form");
    assert_eq!(response.status, 201, "create form: {}", response.body);
    response.json()["id"].as_str().expect("form id").to_owned()
}

/// Create an inbound hook (`body`: its settings); the path it receives on (`/in/…`).
pub fn create_hook(addr: SocketAddr, key: &str, body: &Value) -> String {
    let response = post(addr, "/api/v1/inbound-hooks", Some(key), body).expect("create hook");
    assert_eq!(response.status, 201, "create hook: {}", response.body);
    response.json()["url_path"]
        .as_str()
        .expect("url_path")
        .to_owned()
}

/// The body of a new case of `form_id`.
pub fn new_case(form_id: &str, note: &str) -> Value {
    json!({"form_id": form_id, "data": {"note": note}})
}

/// Create a case; the case as answered.
pub fn create_case(addr: SocketAddr, key: &str, form_id: &str, note: &str) -> Value {
    let response =
        post(addr, "/api/v1/cases", Some(key), &new_case(form_id, note)).expect("create case");
    assert_eq!(response.status, 201, "create case: {}", response.body);
    response.json()
}

/// Every live case of the key's workspace (at most 1000), newest first.
pub fn list_cases(addr: SocketAddr, key: &str) -> Vec<Value> {
    let response = get(addr, "/api/v1/cases?limit=1000", Some(key)).expect("list cases");
    assert_eq!(response.status, 200, "list cases: {}", response.body);
    let page = response.json();
    assert!(page.get("next_cursor").is_none(), "more than one page");
    page["items"].as_array().expect("items").clone()
}

/// The status `GET /api/v1/forms` answers with this key.
pub fn forms_status(addr: SocketAddr, key: &str) -> u16 {
    get(addr, "/api/v1/forms", Some(key))
        .expect("list forms")
        .status
}

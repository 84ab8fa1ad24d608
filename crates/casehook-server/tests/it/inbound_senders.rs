//! Incoming webhooks from real senders: requests signed exactly as Stripe, GitHub, Shopify,
//! Slack, Standard Webhooks and a generic HMAC sender document it, computed here with
//! `hmac`/`sha2`/`sha1` (and the independent `standardwebhooks` crate), never with casehook's
//! own code. Every preset also meets forgeries (wrong secret, tampered body, stale timestamp,
//! missing header), which must be refused with 401 and change nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use crate::inbound::{cases_of, create_hook, post_json, requests_of, send_in};
use crate::support::{Reply, TestApp, api_tests, text};

api_tests!(
    stripe_payment_intent_succeeded_updates_the_case_once,
    stripe_forgeries_are_refused_and_change_nothing,
    github_issue_opened_creates_a_case_once_per_delivery,
    github_forgeries_are_refused_and_change_nothing,
    shopify_order_created_creates_a_case_once_per_webhook_id,
    shopify_forgeries_are_refused_and_change_nothing,
    slack_slash_command_creates_a_case,
    slack_forgeries_are_refused_and_change_nothing,
    standard_webhooks_create_cases_with_a_given_or_a_generated_secret,
    standard_webhooks_forgeries_are_refused_and_change_nothing,
    generic_hmac_sha512_base64_over_timestamp_and_body_creates_a_case,
    generic_hmac_forgeries_are_refused_and_change_nothing,
    a_rotated_secret_and_its_successor_both_verify_for_the_overlap,
    the_ip_allow_list_checks_the_peer_or_the_client_behind_a_trusted_proxy,
);

/// The senders whose signatures casehook checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Stripe,
    Github,
    Shopify,
    Slack,
    StandardWebhooks,
    Hmac,
}

/// Seconds since 1970, as senders stamp their requests.
fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit in i64")
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// A request's headers, names as the sender writes them.
type Headers = Vec<(String, String)>;

fn header(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// A Standard Webhooks secret (`whsec_` + base64 of the key bytes).
fn whsec(byte: u8) -> String {
    format!("whsec_{}", BASE64.encode([byte; 32]))
}

impl Preset {
    /// The secret the sender issued (or the admin chose), as the hook is given it.
    fn secret(self) -> String {
        match self {
            // Stripe's endpoint secrets look like Standard Webhooks ones but are used as text.
            Self::Stripe => "whsec_3pQn8xJd0VfLbR2tYkW9sZcA7mHgE4uN".to_owned(),
            Self::Github => "gh-hook-secret-5b1f0e9c2d7a4836".to_owned(),
            Self::Shopify => "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".to_owned(),
            Self::Slack => "8f742231b10e8888abcd99yyyzzz85a5".to_owned(),
            Self::StandardWebhooks => whsec(0x42),
            Self::Hmac => "acme-signing-key-6e2d91f0b7c84a35".to_owned(),
        }
    }

    /// A secret of the same form that the hook does not know.
    fn wrong_secret(self) -> String {
        match self {
            Self::StandardWebhooks => whsec(0x43),
            _ => format!("{}x", self.secret()),
        }
    }

    /// The hook's verification entry, with its secret.
    fn verification(self, secret: &str) -> Value {
        match self {
            Self::Stripe => json!({"kind": "stripe", "secret": secret}),
            Self::Github => json!({"kind": "github", "secret": secret}),
            Self::Shopify => json!({"kind": "shopify", "secret": secret}),
            Self::Slack => json!({"kind": "slack", "secret": secret}),
            Self::StandardWebhooks => json!({"kind": "standard_webhooks", "secret": secret}),
            Self::Hmac => json!({
                "kind": "hmac", "header": "X-Acme-Signature", "algorithm": "sha512",
                "encoding": "base64", "prefix": "sha512=", "signed_content": "{timestamp}.{body}",
                "timestamp_header": "X-Acme-Timestamp", "tolerance_secs": 300, "secret": secret
            }),
        }
    }

    /// Whether the scheme signs a timestamp that goes stale.
    fn has_timestamp(self) -> bool {
        matches!(
            self,
            Self::Stripe | Self::Slack | Self::StandardWebhooks | Self::Hmac
        )
    }

    /// The headers the check needs; each is left out in turn by the forgeries.
    fn needed_headers(self) -> &'static [&'static str] {
        match self {
            Self::Stripe => &["Stripe-Signature"],
            Self::Github => &["X-Hub-Signature-256"],
            Self::Shopify => &["X-Shopify-Hmac-Sha256"],
            Self::Slack => &["X-Slack-Signature", "X-Slack-Request-Timestamp"],
            Self::StandardWebhooks => &["webhook-id", "webhook-timestamp", "webhook-signature"],
            Self::Hmac => &["X-Acme-Signature", "X-Acme-Timestamp"],
        }
    }

    /// The headers the sender puts on `body`, signed with `secret` at `ts`; `delivery` is the
    /// sender's delivery id where it sends one.
    fn sign(self, secret: &str, body: &str, ts: i64, delivery: &str) -> Headers {
        let key = secret.as_bytes();
        match self {
            // https://docs.stripe.com/webhooks#verify-manually: HMAC-SHA256 of "{t}.{body}"
            // keyed with the whole endpoint secret string.
            Self::Stripe => {
                let v1 = hex::encode(hmac_sha256(key, format!("{ts}.{body}").as_bytes()));
                vec![
                    header(
                        "User-Agent",
                        "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    ),
                    header("Stripe-Signature", format!("t={ts},v1={v1}")),
                ]
            }
            // GitHub sends the SHA-256 signature and, for old receivers, a SHA-1 one.
            Self::Github => vec![
                header("User-Agent", "GitHub-Hookshot/044aadd"),
                header("X-GitHub-Event", "issues"),
                header("X-GitHub-Delivery", delivery),
                header("X-GitHub-Hook-ID", "292430182"),
                header(
                    "X-Hub-Signature",
                    format!("sha1={}", hex::encode(hmac_sha1(key, body.as_bytes()))),
                ),
                header(
                    "X-Hub-Signature-256",
                    format!("sha256={}", hex::encode(hmac_sha256(key, body.as_bytes()))),
                ),
            ],
            Self::Shopify => vec![
                header("X-Shopify-Topic", "orders/create"),
                header(
                    "X-Shopify-Hmac-Sha256",
                    BASE64.encode(hmac_sha256(key, body.as_bytes())),
                ),
                header("X-Shopify-Shop-Domain", "mugs-and-more.myshopify.com"),
                header("X-Shopify-Api-Version", "2025-01"),
                header("X-Shopify-Webhook-Id", delivery),
                header("X-Shopify-Triggered-At", "2026-03-02T10:15:00.000000Z"),
            ],
            // https://api.slack.com/authentication/verifying-requests-from-slack
            Self::Slack => {
                let base = format!("v0:{ts}:{body}");
                vec![
                    header("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)"),
                    header("X-Slack-Request-Timestamp", ts.to_string()),
                    header(
                        "X-Slack-Signature",
                        format!("v0={}", hex::encode(hmac_sha256(key, base.as_bytes()))),
                    ),
                ]
            }
            Self::StandardWebhooks => {
                let signature = standardwebhooks::Webhook::new(secret)
                    .expect("a whsec_ secret")
                    .sign(delivery, ts, body.as_bytes())
                    .expect("a UTF-8 payload signs");
                vec![
                    header("webhook-id", delivery),
                    header("webhook-timestamp", ts.to_string()),
                    header("webhook-signature", signature),
                ]
            }
            Self::Hmac => {
                let mac = hmac_sha512(key, format!("{ts}.{body}").as_bytes());
                vec![
                    header("X-Acme-Timestamp", ts.to_string()),
                    header("X-Acme-Signature", format!("sha512={}", BASE64.encode(mac))),
                ]
            }
        }
    }
}

/// One sender's hook and a request it sends, as the tests of that sender use them.
#[derive(Debug)]
struct Scenario {
    preset: Preset,
    /// The hook's configuration, without `name`, `form_id` and verifications.
    hook: Value,
    content_type: &'static str,
    body: String,
    /// The body with one value changed after signing.
    tampered: String,
}

fn stripe_event(id: &str, amount: i64) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_772_445_300,
        "type": "payment_intent.succeeded",
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": "req_8Hx2QmLzK1Pqa9", "idempotency_key": "7a6e3c0f-1d2b-4c5a-9e8f-0b1c2d3e4f50"},
        "data": {
            "object": {
                "id": "pi_3PqR7sLkdIwHu7ix0abc1234",
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "gbp",
                "customer": "cus_QxY7bG2mN4pL1s",
                "description": "Order C-1001",
                "payment_method_types": ["card"],
                "status": "succeeded",
                "metadata": {"case_ref": "C-1001"}
            }
        }
    })
}

fn github_issue(number: i64, title: &str) -> Value {
    json!({
        "action": "opened",
        "issue": {
            "url": format!("https://api.github.com/repos/acme/widgets/issues/{number}"),
            "html_url": format!("https://github.com/acme/widgets/issues/{number}"),
            "id": 2_412_000_000_i64 + number,
            "number": number,
            "title": title,
            "state": "open",
            "labels": [{"name": "bug", "color": "d73a4a"}],
            "user": {"login": "octocat", "id": 583_231, "type": "User"},
            "body": "Steps to reproduce:\n1. Open the app\n2. Click \"Save\"",
            "created_at": "2026-03-02T10:15:00Z"
        },
        "repository": {
            "id": 1_296_269,
            "name": "widgets",
            "full_name": "acme/widgets",
            "private": false,
            "owner": {"login": "acme", "id": 9919, "type": "Organization"}
        },
        "sender": {"login": "octocat", "id": 583_231, "type": "User"}
    })
}

fn shopify_order(id: i64, total: &str) -> Value {
    json!({
        "id": id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{id}"),
        "name": "#1001",
        "email": "jon@example.com",
        "created_at": "2026-03-02T10:15:00-05:00",
        "currency": "USD",
        "financial_status": "paid",
        "total_price": total,
        "subtotal_price": "189.65",
        "total_tax": "10.00",
        "order_status_url": "https://mugs-and-more.myshopify.com/690933842/orders/123456abcd/authenticate?key=abcdefg",
        "line_items": [
            {"id": 866_550_311_766_439_020_i64, "title": "Blue mug", "quantity": 2, "price": "94.83", "sku": "MUG-BLUE"}
        ],
        "customer": {"id": 115_310_627_314_723_954_i64, "email": "jon@example.com", "first_name": "Jon", "last_name": "Doe"},
        "shipping_address": {"city": "Ottawa", "country_code": "CA", "zip": "K2P 1L4"}
    })
}

/// A Slack slash command, form-encoded as Slack posts it.
fn slack_command(text: &str) -> String {
    let text = text.replace(' ', "+");
    format!(
        "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&enterprise_id=E0001\
         &enterprise_name=Globular%20Construct%20Inc&channel_id=C2147483705&channel_name=helpdesk\
         &user_id=U2147483697&user_name=Steve&command=%2Fcase&text={text}\
         &response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678\
         &trigger_id=13345224609.738474920.8088930838d88f008e0&api_app_id=A123456"
    )
}

fn invoice_paid(invoice: &str, amount: i64) -> Value {
    json!({
        "type": "invoice.paid",
        "timestamp": "2026-03-02T10:15:00.000Z",
        "data": {"invoice_id": invoice, "customer": "Acme Ltd", "amount": amount, "currency": "eur"}
    })
}

fn ticket_created(id: i64, subject: &str) -> Value {
    json!({
        "event": "ticket.created",
        "ticket": {
            "id": id,
            "subject": subject,
            "priority": "high",
            "requester": {"name": "Ana Silva", "email": "ana@example.com"}
        }
    })
}

fn scenario(preset: Preset) -> Scenario {
    let rules = |rules: &[(&str, &str)]| -> Value {
        rules
            .iter()
            .map(|(path, field)| json!({"path": path, "field": field}))
            .collect()
    };
    match preset {
        Preset::Stripe => Scenario {
            preset,
            hook: json!({
                "action": "update",
                "match": {"external_ref": {"source": "crm", "path": "$.data.object.metadata.case_ref"}},
                "mapping": {"rules": rules(&[
                    ("$.data.object.amount", "amount"),
                    ("$.data.object.status", "payment_status"),
                    ("$.data.object.currency", "currency"),
                ])},
                "idempotency": {"path": "$.id"}
            }),
            content_type: "application/json; charset=utf-8",
            body: stripe_event("evt_3PqR7sLkdIwHu7ix1xyz9876", 2000).to_string(),
            tampered: stripe_event("evt_3PqR7sLkdIwHu7ix1xyz9876", 1).to_string(),
        },
        Preset::Github => Scenario {
            preset,
            hook: json!({"mapping": {"rules": rules(&[
                ("$.issue.title", "title"),
                ("$.issue.html_url", "url"),
                ("$.issue.user.login", "author"),
                ("$.repository.full_name", "origin"),
            ])}}),
            content_type: "application/json",
            body: github_issue(1347, "Save button does nothing").to_string(),
            tampered: github_issue(1347, "Save button does nothing!").to_string(),
        },
        Preset::Shopify => Scenario {
            preset,
            hook: json!({"mapping": {"rules": rules(&[
                ("$.name", "title"),
                ("$.total_price", "amount"),
                ("$.currency", "currency"),
                ("$.financial_status", "payment_status"),
                ("$.email", "author"),
                ("$.order_status_url", "url"),
            ])}}),
            content_type: "application/json",
            body: shopify_order(820_982_911_946_154_508, "199.65").to_string(),
            tampered: shopify_order(820_982_911_946_154_508, "0.01").to_string(),
        },
        Preset::Slack => Scenario {
            preset,
            hook: json!({"mapping": {"rules": rules(&[
                ("$.text", "title"),
                ("$.user_name", "author"),
                ("$.channel_name", "origin"),
            ])}}),
            content_type: "application/x-www-form-urlencoded",
            body: slack_command("Printer on floor 3 is jammed"),
            tampered: slack_command("Printer on floor 4 is jammed"),
        },
        Preset::StandardWebhooks => Scenario {
            preset,
            hook: json!({"mapping": {"rules": rules(&[
                ("$.data.customer", "title"),
                ("$.data.amount", "amount"),
                ("$.data.currency", "currency"),
                ("$.type", "origin"),
            ])}}),
            content_type: "application/json",
            body: invoice_paid("in_1001", 4200).to_string(),
            tampered: invoice_paid("in_1001", 1).to_string(),
        },
        Preset::Hmac => Scenario {
            preset,
            hook: json!({"mapping": {"rules": rules(&[
                ("$.ticket.subject", "title"),
                ("$.ticket.requester.email", "author"),
                ("$.event", "origin"),
            ])}}),
            content_type: "application/json",
            body: ticket_created(8812, "Cannot log in").to_string(),
            tampered: ticket_created(8812, "Cannot log out").to_string(),
        },
    }
}

/// A form every sender writes to.
async fn inbox_form(app: &TestApp) -> String {
    let form = app
        .create_form(json!({
            "name": "Inbox",
            "statuses": ["open", "paid", "closed"],
            "fields": [
                {"key": "title", "type": "text", "required": true},
                {"key": "amount", "type": "number"},
                {"key": "currency", "type": "text"},
                {"key": "payment_status", "type": "text"},
                {"key": "url", "type": "url"},
                {"key": "author", "type": "text"},
                {"key": "origin", "type": "text"}
            ]
        }))
        .await;
    text(&form["id"])
}

/// The case the Stripe events are about, known to the CRM as C-1001.
async fn seed_case(app: &TestApp, form: &str) -> Value {
    app.create_case_with(json!({
        "form_id": form,
        "data": {"title": "Order C-1001", "currency": "gbp"},
        "external_refs": {"crm": "C-1001"}
    }))
    .await
}

/// Create the scenario's hook on `form`, verified with `secret`.
async fn hook_for(app: &TestApp, form: &str, s: &Scenario, secret: &str) -> Value {
    let mut body = s.hook.clone();
    body["name"] = json!(format!("{:?} sender", s.preset));
    body["form_id"] = json!(form);
    body["verifications"] = json!([s.preset.verification(secret)]);
    create_hook(app, body).await
}

/// POST `body` to `path` with the sender's headers.
async fn deliver(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(String, String)],
    body: &str,
) -> Reply {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    send_in(app, path, &headers, Some(content_type), body.to_owned()).await
}

/// What a refused request must leave alone: the form's cases and the whole event feed.
async fn snapshot(app: &TestApp, form: &str) -> (Vec<Value>, Vec<Value>) {
    (
        cases_of(app, form).await,
        app.events(&app.admin_key, "").await,
    )
}

/// Assert a refusal by the sender checks: 401 `access_deny`, logged as a failed verification.
async fn assert_denied(app: &TestApp, hook: &Value, reply: Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text);
    let reply = reply.expect_error(401, "access_deny");
    assert!(
        reply.headers.contains_key("casehook-request-id"),
        "{what}: the refusal names its log entry"
    );
    let log = requests_of(app, hook).await;
    let newest = log.first().unwrap_or_else(|| panic!("{what}: not logged"));
    assert_eq!(newest["verification"], "failed", "{what}: {newest}");
    assert_eq!(newest["status"], 401, "{what}: {newest}");
    assert_eq!(newest["outcome"], "denied", "{what}: {newest}");
    assert!(
        newest["verification_error"].is_string(),
        "{what}: the log says why: {newest}"
    );
    assert!(newest["case_id"].is_null(), "{what}: {newest}");
}

/// Wrong secret, tampered body, stale (and future) timestamp, and each needed header left
/// out: all 401, nothing written, each logged as failed; the genuine request then passes,
/// with the delivery id the forgeries carried.
async fn forgeries_are_refused(app: TestApp, preset: Preset) {
    let form = inbox_form(&app).await;
    seed_case(&app, &form).await;
    let s = scenario(preset);
    let secret = preset.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let now = unix_now();
    let delivery = "7f1c2b3a-9d8e-4f60-8a1b-2c3d4e5f6a7b";
    let genuine = |ts| preset.sign(&secret, &s.body, ts, delivery);
    let mut forgeries: Vec<(String, Headers, &str)> = vec![
        (
            "wrong secret".into(),
            preset.sign(&preset.wrong_secret(), &s.body, now, delivery),
            &s.body,
        ),
        ("tampered body".into(), genuine(now), &s.tampered),
        (
            "garbage signature".into(),
            genuine(now)
                .into_iter()
                .map(|(n, v)| {
                    if n.eq_ignore_ascii_case(preset.needed_headers()[0]) {
                        (n, "v1=deadbeef,t=zz sha256=??".to_owned())
                    } else {
                        (n, v)
                    }
                })
                .collect(),
            &s.body,
        ),
    ];
    if preset.has_timestamp() {
        forgeries.push(("stale timestamp".into(), genuine(now - 3600), &s.body));
        forgeries.push((
            "timestamp in the future".into(),
            genuine(now + 3600),
            &s.body,
        ));
    }
    for missing in preset.needed_headers() {
        let mut headers = genuine(now);
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(missing));
        forgeries.push((format!("missing {missing}"), headers, &s.body));
        let mut blank = genuine(now);
        for (n, v) in &mut blank {
            if n.eq_ignore_ascii_case(missing) {
                v.clear();
            }
        }
        forgeries.push((format!("empty {missing}"), blank, &s.body));
    }
    let before = snapshot(&app, &form).await;
    for (what, headers, body) in &forgeries {
        let what = format!("{preset:?}, {what}");
        let reply = deliver(&app, &path, s.content_type, headers, body).await;
        assert_denied(&app, &hook, reply, &what).await;
        assert!(
            snapshot(&app, &form).await == before,
            "{what}: a refused request changed cases or events"
        );
    }
    let log = requests_of(&app, &hook).await;
    assert_eq!(log.len(), forgeries.len());
    assert!(log.iter().all(|r| r["verification"] == "failed"));
    let reply = deliver(&app, &path, s.content_type, &genuine(unix_now()), &s.body)
        .await
        .expect_status(200);
    assert!(
        !reply.headers.contains_key("idempotent-replayed"),
        "{preset:?}: a refused request does not claim its delivery id"
    );
    assert_eq!(requests_of(&app, &hook).await[0]["verification"], "passed");
}

async fn stripe_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::Stripe).await;
}

async fn github_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::Github).await;
}

async fn shopify_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::Shopify).await;
}

async fn slack_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::Slack).await;
}

async fn standard_webhooks_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::StandardWebhooks).await;
}

async fn generic_hmac_forgeries_are_refused_and_change_nothing(app: TestApp) {
    forgeries_are_refused(app, Preset::Hmac).await;
}

async fn stripe_payment_intent_succeeded_updates_the_case_once(app: TestApp) {
    let form = inbox_form(&app).await;
    let case = seed_case(&app, &form).await;
    let s = scenario(Preset::Stripe);
    let secret = Preset::Stripe.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);

    let signed = Preset::Stripe.sign(&secret, &s.body, unix_now(), "");
    let first = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(first.body["action"], "updated", "{}", first.text);
    assert_eq!(first.body["case"]["id"], case["id"]);
    let updated = app
        .get("/cases/by-ref/crm/C-1001", &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(updated["data"]["amount"], 2000);
    assert_eq!(updated["data"]["payment_status"], "succeeded");
    assert_eq!(
        updated["data"]["title"], "Order C-1001",
        "other fields kept"
    );
    assert_eq!(updated["version"], 2);
    let updates = app.events(&app.admin_key, "&type=case.updated").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["case_id"], case["id"]);

    // Stripe retries the same event (same `id`), signed afresh a little later.
    let signed = Preset::Stripe.sign(&secret, &s.body, unix_now() + 1, "");
    let retry = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(
        retry
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "the retry is answered from the first request"
    );
    assert_eq!(retry.body, first.body);
    let again = app
        .get("/cases/by-ref/crm/C-1001", &app.admin_key)
        .await
        .expect_status(200)
        .body;
    assert_eq!(again, updated, "nothing changed");
    assert_eq!(
        app.events(&app.admin_key, "&type=case.updated").await.len(),
        1
    );
    let log = requests_of(&app, &hook).await;
    assert_eq!(log[0]["outcome"], "duplicate");
    assert_eq!(log[0]["idempotency_key"], "evt_3PqR7sLkdIwHu7ix1xyz9876");
    assert_eq!(log[1]["outcome"], "updated");
    assert_eq!(log[1]["verification"], "passed");
    assert_eq!(log[1]["case_id"], case["id"]);

    // While the endpoint secret is rolled, Stripe signs with both: any `v1` may match.
    let refund = stripe_event("evt_3PqR7sLkdIwHu7ix1refund1", 1500).to_string();
    let t = unix_now();
    let good = hex::encode(hmac_sha256(
        secret.as_bytes(),
        format!("{t}.{refund}").as_bytes(),
    ));
    let stale = hex::encode(hmac_sha256(
        b"whsec_old",
        format!("{t}.{refund}").as_bytes(),
    ));
    let headers = vec![header(
        "Stripe-Signature",
        format!(
            "t={t},v1={stale},v1={good},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
        ),
    )];
    let reply = deliver(&app, &path, s.content_type, &headers, &refund)
        .await
        .expect_status(200);
    assert_eq!(reply.body["action"], "updated");
    let last = app
        .get("/cases/by-ref/crm/C-1001", &app.admin_key)
        .await
        .body;
    assert_eq!(last["data"]["amount"], 1500);
}

async fn github_issue_opened_creates_a_case_once_per_delivery(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::Github);
    let secret = Preset::Github.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let delivery = uuid::Uuid::new_v4().to_string();

    let signed = Preset::Github.sign(&secret, &s.body, 0, &delivery);
    let first = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(first.body["action"], "created", "{}", first.text);
    let case = app
        .get(
            &format!("/cases/{}", text(&first.body["case"]["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["title"], "Save button does nothing");
    assert_eq!(
        case["data"]["url"],
        "https://github.com/acme/widgets/issues/1347"
    );
    assert_eq!(case["data"]["author"], "octocat");
    assert_eq!(case["data"]["origin"], "acme/widgets");
    assert_eq!(case["created_by"]["kind"], "inbound_hook");

    // "Redeliver" in GitHub's settings sends the same delivery id again.
    let redelivery = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert!(redelivery.headers.contains_key("idempotent-replayed"));
    assert_eq!(redelivery.body["case"]["id"], first.body["case"]["id"]);
    assert_eq!(cases_of(&app, &form).await.len(), 1);
    assert_eq!(
        app.events(&app.admin_key, "&type=case.created").await.len(),
        1
    );
    let log = requests_of(&app, &hook).await;
    assert_eq!(log[0]["idempotency_key"], json!(delivery));

    // The next issue is a new delivery.
    let next = github_issue(1348, "Crash on start").to_string();
    let signed = Preset::Github.sign(&secret, &next, 0, &uuid::Uuid::new_v4().to_string());
    let second = deliver(&app, &path, s.content_type, &signed, &next)
        .await
        .expect_status(200);
    assert_eq!(second.body["case"]["number"], 2);
    assert_eq!(cases_of(&app, &form).await.len(), 2);
}

async fn shopify_order_created_creates_a_case_once_per_webhook_id(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::Shopify);
    let secret = Preset::Shopify.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let webhook_id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
    let signed = Preset::Shopify.sign(&secret, &s.body, 0, webhook_id);
    let first = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(first.body["action"], "created", "{}", first.text);
    let case = app
        .get(
            &format!("/cases/{}", text(&first.body["case"]["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["title"], "#1001");
    assert_eq!(
        case["data"]["amount"], 199.65,
        "Shopify's decimal strings become numbers"
    );
    assert_eq!(case["data"]["currency"], "USD");
    assert_eq!(case["data"]["payment_status"], "paid");
    assert_eq!(case["data"]["author"], "jon@example.com");
    let retry = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert!(retry.headers.contains_key("idempotent-replayed"));
    assert_eq!(cases_of(&app, &form).await.len(), 1);
    assert_eq!(
        requests_of(&app, &hook).await[0]["idempotency_key"],
        webhook_id
    );
}

async fn slack_slash_command_creates_a_case(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::Slack);
    let secret = Preset::Slack.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let signed = Preset::Slack.sign(&secret, &s.body, unix_now(), "");
    let reply = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(reply.body["action"], "created", "{}", reply.text);
    let case = app
        .get(
            &format!("/cases/{}", text(&reply.body["case"]["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["title"], "Printer on floor 3 is jammed");
    assert_eq!(case["data"]["author"], "Steve");
    assert_eq!(case["data"]["origin"], "helpdesk");
    // The signature covers the raw body: the same form with its fields reordered is a
    // different body and does not verify.
    let reordered = s.body.split('&').rev().collect::<Vec<_>>().join("&");
    let reply = deliver(&app, &path, s.content_type, &signed, &reordered).await;
    assert_denied(&app, &hook, reply, "Slack, reordered form").await;
    assert_eq!(cases_of(&app, &form).await.len(), 1);
}

async fn standard_webhooks_create_cases_with_a_given_or_a_generated_secret(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::StandardWebhooks);
    let secret = Preset::StandardWebhooks.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let signed = Preset::StandardWebhooks.sign(&secret, &s.body, unix_now(), msg_id);
    let first = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(first.body["action"], "created", "{}", first.text);
    let case = app
        .get(
            &format!("/cases/{}", text(&first.body["case"]["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["title"], "Acme Ltd");
    assert_eq!(case["data"]["amount"], 4200);
    assert_eq!(case["data"]["origin"], "invoice.paid");
    // A retry keeps its webhook-id (signed again at a new time).
    let signed = Preset::StandardWebhooks.sign(&secret, &s.body, unix_now() + 1, msg_id);
    let retry = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert!(retry.headers.contains_key("idempotent-replayed"));
    // Several space-separated signatures (a sender rolling its secret): one match suffices.
    let body = invoice_paid("in_1002", 990).to_string();
    let ts = unix_now();
    let other = standardwebhooks::Webhook::new(&whsec(0x01))
        .expect("a whsec_ secret")
        .sign("msg_2", ts, body.as_bytes())
        .expect("signs");
    let good = standardwebhooks::Webhook::new(&secret)
        .expect("a whsec_ secret")
        .sign("msg_2", ts, body.as_bytes())
        .expect("signs");
    let headers = vec![
        header("webhook-id", "msg_2"),
        header("webhook-timestamp", ts.to_string()),
        header("webhook-signature", format!("{other} {good}")),
    ];
    deliver(&app, &path, s.content_type, &headers, &body)
        .await
        .expect_status(200);
    assert_eq!(cases_of(&app, &form).await.len(), 2);

    // A hook without a given secret gets a generated `whsec_` one that senders can use.
    let generated = create_hook(
        &app,
        json!({"name": "Generated", "form_id": form, "mapping": s.hook["mapping"],
               "verifications": [{"kind": "standard_webhooks"}]}),
    )
    .await;
    let secret = text(&generated["secrets"][0]["secrets"][0]["secret"]);
    assert!(secret.starts_with("whsec_"), "{secret}");
    let path = text(&generated["url_path"]);
    let body = invoice_paid("in_1003", 12).to_string();
    let signed = Preset::StandardWebhooks.sign(&secret, &body, unix_now(), "msg_3");
    let reply = deliver(&app, &path, s.content_type, &signed, &body)
        .await
        .expect_status(200);
    assert_eq!(reply.body["action"], "created");
    let signed = Preset::StandardWebhooks.sign(&whsec(0x42), &body, unix_now(), "msg_4");
    let reply = deliver(&app, &path, s.content_type, &signed, &body).await;
    assert_denied(&app, &generated, reply, "another hook's secret").await;
    assert_eq!(cases_of(&app, &form).await.len(), 3);
}

async fn generic_hmac_sha512_base64_over_timestamp_and_body_creates_a_case(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::Hmac);
    let secret = Preset::Hmac.secret();
    let hook = hook_for(&app, &form, &s, &secret).await;
    let path = text(&hook["url_path"]);
    let ts = unix_now();
    let signed = Preset::Hmac.sign(&secret, &s.body, ts, "");
    let reply = deliver(&app, &path, s.content_type, &signed, &s.body)
        .await
        .expect_status(200);
    assert_eq!(reply.body["action"], "created", "{}", reply.text);
    let case = app
        .get(
            &format!("/cases/{}", text(&reply.body["case"]["id"])),
            &app.admin_key,
        )
        .await
        .expect_status(200)
        .body;
    assert_eq!(case["data"]["title"], "Cannot log in");
    assert_eq!(case["data"]["author"], "ana@example.com");

    // The same MAC without the prefix, in hex, or over the body alone does not verify.
    let mac = hmac_sha512(secret.as_bytes(), format!("{ts}.{}", s.body).as_bytes());
    let body_only = hmac_sha512(secret.as_bytes(), s.body.as_bytes());
    for (what, signature) in [
        ("no prefix", BASE64.encode(&mac)),
        ("hex", format!("sha512={}", hex::encode(&mac))),
        ("body only", format!("sha512={}", BASE64.encode(body_only))),
        (
            "sha256",
            format!(
                "sha512={}",
                BASE64.encode(hmac_sha256(
                    secret.as_bytes(),
                    format!("{ts}.{}", s.body).as_bytes()
                ))
            ),
        ),
    ] {
        let headers = vec![
            header("X-Acme-Timestamp", ts.to_string()),
            header("X-Acme-Signature", signature),
        ];
        let reply = deliver(&app, &path, s.content_type, &headers, &s.body).await;
        assert_denied(&app, &hook, reply, &format!("generic HMAC, {what}")).await;
    }
    // Unpadded base64 is the same signature.
    let headers = vec![
        header("X-Acme-Timestamp", ts.to_string()),
        header(
            "X-Acme-Signature",
            format!("sha512={}", BASE64.encode(&mac).trim_end_matches('=')),
        ),
    ];
    let other = ticket_created(8813, "Printer offline").to_string();
    let headers_other = Preset::Hmac.sign(&secret, &other, ts, "");
    deliver(&app, &path, s.content_type, &headers_other, &other)
        .await
        .expect_status(200);
    let reply = deliver(&app, &path, s.content_type, &headers, &s.body)
        .await
        .expect_status(200);
    assert_eq!(reply.body["action"], "created");
    assert_eq!(cases_of(&app, &form).await.len(), 3);
}

async fn a_rotated_secret_and_its_successor_both_verify_for_the_overlap(app: TestApp) {
    let form = inbox_form(&app).await;
    let s = scenario(Preset::Github);
    let old = Preset::Github.secret();
    let new = "gh-hook-secret-rotated-77c2e1a9";
    let newest = "gh-hook-secret-rotated-again-0d4b";
    let hook = hook_for(&app, &form, &s, &old).await;
    let id = text(&hook["id"]);
    let path = text(&hook["url_path"]);
    let send_signed = |secret: String, n: i64| {
        let app = &app;
        let path = path.clone();
        async move {
            let body = github_issue(n, &format!("Issue {n}")).to_string();
            let signed = Preset::Github.sign(&secret, &body, 0, &uuid::Uuid::new_v4().to_string());
            deliver(app, &path, "application/json", &signed, &body).await
        }
    };
    send_signed(old.clone(), 1).await.expect_status(200);

    let rotated = app
        .post(
            &format!("/inbound-hooks/{id}/verifications/0/rotate"),
            &app.admin_key,
            json!({"secret": new, "overlap_secs": 3600}),
        )
        .await
        .expect_status(200)
        .body;
    let secrets = rotated["verifications"][0]["secrets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(secrets.len(), 2, "{rotated}");
    assert_eq!(secrets[0]["secret"], new, "newest first");
    assert!(secrets[0]["valid_until"].is_null());
    assert_eq!(secrets[1]["secret"], json!(old));
    assert!(secrets[1]["valid_until"].is_string());

    send_signed(old.clone(), 2).await.expect_status(200);
    send_signed(new.to_owned(), 3).await.expect_status(200);
    let reply = send_signed("gh-hook-secret-never-issued".to_owned(), 4).await;
    assert_denied(&app, &hook, reply, "an unknown secret during the overlap").await;

    // Rotating again without overlap ends both earlier secrets at once.
    app.post(
        &format!("/inbound-hooks/{id}/verifications/0/rotate"),
        &app.admin_key,
        json!({"secret": newest, "overlap_secs": 0}),
    )
    .await
    .expect_status(200);
    let reply = send_signed(old.clone(), 5).await;
    assert_denied(&app, &hook, reply, "the first secret after two rotations").await;
    let reply = send_signed(new.to_owned(), 6).await;
    assert_denied(&app, &hook, reply, "the second secret, rotated out at once").await;
    send_signed(newest.to_owned(), 7).await.expect_status(200);
    assert_eq!(cases_of(&app, &form).await.len(), 4);
}

async fn the_ip_allow_list_checks_the_peer_or_the_client_behind_a_trusted_proxy(app: TestApp) {
    let form = inbox_form(&app).await;
    let make = |allow: Value, trusted: Value| {
        let app = &app;
        let form = form.clone();
        async move {
            create_hook(
                app,
                json!({"name": "Allow-listed", "form_id": form,
                       "verifications": [{"kind": "ip_allow_list", "allow": allow, "trusted_proxies": trusted}]}),
            )
            .await
        }
    };
    let body = json!({"title": "From the office"});

    let elsewhere = make(json!(["10.0.0.0/8", "2001:db8::/32"]), json!([])).await;
    let reply = post_json(&app, &text(&elsewhere["url_path"]), body.clone()).await;
    assert_denied(&app, &elsewhere, reply, "127.0.0.1 not on the list").await;
    assert!(cases_of(&app, &form).await.is_empty());

    let local = make(json!(["192.0.2.0/24", "127.0.0.1/32"]), json!([])).await;
    post_json(&app, &text(&local["url_path"]), body.clone())
        .await
        .expect_status(200);
    assert_eq!(requests_of(&app, &local).await[0]["verification"], "passed");

    // Without trusted proxies, X-Forwarded-For is the client's own claim and is ignored.
    let spoofable = make(json!(["203.0.113.0/24"]), json!([])).await;
    let path = text(&spoofable["url_path"]);
    let reply = forwarded(&app, &path, "203.0.113.9").await;
    assert_denied(
        &app,
        &spoofable,
        reply,
        "X-Forwarded-For from an untrusted peer",
    )
    .await;

    // Behind a trusted proxy on 127.0.0.1, the forwarded client is the one checked.
    let proxied = make(json!(["203.0.113.0/24"]), json!(["127.0.0.1/32"])).await;
    let path = text(&proxied["url_path"]);
    forwarded(&app, &path, "203.0.113.9")
        .await
        .expect_status(200);
    // The rightmost untrusted entry is the client; entries to its left prove nothing.
    forwarded(&app, &path, "198.51.100.7, 203.0.113.9")
        .await
        .expect_status(200);
    let reply = forwarded(&app, &path, "203.0.113.9, 198.51.100.7").await;
    assert_denied(
        &app,
        &proxied,
        reply,
        "a client outside the list behind the proxy",
    )
    .await;
    let reply = post_json(&app, &path, body.clone()).await;
    assert_denied(
        &app,
        &proxied,
        reply,
        "the proxy itself, no X-Forwarded-For",
    )
    .await;
    assert_eq!(cases_of(&app, &form).await.len(), 3);
}

/// A JSON post that claims, in `X-Forwarded-For`, to come from `xff`.
async fn forwarded(app: &TestApp, path: &str, xff: &str) -> Reply {
    send_in(
        app,
        path,
        &[("x-forwarded-for", xff)],
        Some("application/json"),
        json!({"title": "From the office"}).to_string(),
    )
    .await
}

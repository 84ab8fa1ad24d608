//! Rendering templates: where values come from ([`Scope`], [`JsonScope`], [`SecretSource`]),
//! how each value becomes text in its context ([`Escape`]), what a missing value does
//! ([`Missing`]), and JSON body templates ([`JsonTemplate`]) whose lone placeholders keep the
//! value's JSON type.
//!
//! Every render returns the secret values it used, so callers can redact them from attempt
//! logs with [`super::redact`].

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::escape::{first_header_forbidden, form_urlencode, percent_encode_path_segment};
use super::{Part, Placeholder, SECRET_ROOT, Template, TemplateError, check_root};

/// A value found for a placeholder, and whether it is secret (to be recorded for redaction).
#[derive(Clone, Debug, PartialEq)]
pub struct Found<'a> {
    pub value: Cow<'a, Value>,
    pub secret: bool,
}

impl<'a> Found<'a> {
    /// An ordinary value borrowed from the context.
    pub fn public(value: &'a Value) -> Self {
        Self {
            value: Cow::Borrowed(value),
            secret: false,
        }
    }

    /// A secret value: rendered like any string, and recorded in `secrets_used`.
    pub fn secret(value: String) -> Self {
        Self {
            value: Cow::Owned(Value::String(value)),
            secret: true,
        }
    }
}

/// Where placeholder values come from. `path` is empty for a bare root (`{data}`).
pub trait Scope {
    fn lookup(&self, root: &str, path: &[String]) -> Option<Found<'_>>;
}

/// Secrets by name, fetched only when a rendered placeholder needs one (decrypting every
/// workspace secret up front would be wasteful and widen their exposure).
pub trait SecretSource {
    fn secret(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> SecretSource for F {
    fn secret(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The usual scope: a JSON object of roots (`{"data": …, "case": …, "event": …}`) plus an
/// optional secret source for `{secret.<name>}`. A `secret` key inside the JSON is never
/// consulted, so a secret can only enter a render through the source, and is always recorded.
#[derive(Clone, Copy)]
pub struct JsonScope<'a> {
    roots: Option<&'a Map<String, Value>>,
    secrets: Option<&'a dyn SecretSource>,
}

impl<'a> JsonScope<'a> {
    /// A scope over `context`'s keys; a non-object context has no values at all.
    pub fn new(context: &'a Value) -> Self {
        Self {
            roots: context.as_object(),
            secrets: None,
        }
    }

    /// Resolve `{secret.<name>}` through `secrets`.
    pub fn with_secrets(mut self, secrets: &'a dyn SecretSource) -> Self {
        self.secrets = Some(secrets);
        self
    }
}

impl fmt::Debug for JsonScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonScope")
            .field("roots", &self.roots.map(|m| m.keys().collect::<Vec<_>>()))
            .field("secrets", &self.secrets.map(|_| "…"))
            .finish()
    }
}

impl Scope for JsonScope<'_> {
    fn lookup(&self, root: &str, path: &[String]) -> Option<Found<'_>> {
        if root == SECRET_ROOT {
            let [name] = path else { return None };
            return self.secrets?.secret(name).map(Found::secret);
        }
        lookup_path(self.roots?.get(root)?, path).map(Found::public)
    }
}

/// Follow `path` into `value`: object keys, and numeric segments as array indexes.
pub(crate) fn lookup_path<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

/// How a value is written into its surrounding text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escape {
    /// As is: a JSON body string (JSON escaping happens when serializing) or plain text.
    #[default]
    None,
    /// One URL path segment: everything but `A-Z a-z 0-9 - . _ ~` is percent-encoded, so a
    /// value cannot add segments; `.` and `..` are refused, as URL parsers resolve them.
    PathSegment,
    /// A query-string name or value, `application/x-www-form-urlencoded` (space as `+`).
    Query,
    /// An HTTP header value: control characters other than tab (CR, LF, NUL, …) are refused,
    /// since they could end the header and inject others.
    Header,
}

/// What a placeholder without a value (absent, or JSON `null`) renders as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Missing {
    /// Refuse to render. The default: a request to `/customers/` instead of
    /// `/customers/{data.id}` could hit the wrong resource.
    #[default]
    Error,
    /// Text: an empty string. A JSON value that is exactly one placeholder: `null`.
    Empty,
}

/// Why a template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("`{placeholder}` has no value")]
    Missing { placeholder: String },
    #[error("the value of `{placeholder}` contains {found}, which may not appear in a header")]
    HeaderInjection {
        placeholder: String,
        found: &'static str,
    },
    #[error("the header template text contains {found}, which may not appear in a header")]
    HeaderLiteral { found: &'static str },
    #[error(
        "the value of `{placeholder}` is `{value}`, which would change the URL path; it cannot be used as a path segment"
    )]
    DotSegment {
        placeholder: String,
        value: &'static str,
    },
    #[error(transparent)]
    Template(#[from] JsonTemplateError),
}

/// Rendered text and the secret values it contains. `Debug` redacts them.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Every distinct, non-empty secret value used, as looked up (before escaping).
    pub secrets_used: Vec<String>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("text", &super::redact(&self.text, &self.secrets_used))
            .field("secrets_used", &self.secrets_used.len())
            .finish()
    }
}

/// A rendered JSON value and the secret values it contains. `Debug` redacts them.
#[derive(Clone, PartialEq)]
pub struct RenderedJson {
    pub value: Value,
    /// Every distinct, non-empty secret value used, as looked up.
    pub secrets_used: Vec<String>,
}

impl fmt::Debug for RenderedJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedJson")
            .field(
                "value",
                &super::redact(&self.value.to_string(), &self.secrets_used),
            )
            .field("secrets_used", &self.secrets_used.len())
            .finish()
    }
}

fn record_secret(secrets: &mut Vec<String>, found: &Found<'_>) {
    if !found.secret {
        return;
    }
    let text = to_text(&found.value);
    // An empty secret cannot be redacted (it "occurs" everywhere) and reveals nothing.
    if !text.is_empty() && !secrets.contains(&text) {
        secrets.push(text);
    }
}

/// Scalars as text: strings raw, numbers and booleans as JSON, null as empty; objects and
/// arrays as compact JSON.
pub(crate) fn to_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn present<'a>(found: Option<Found<'a>>) -> Option<Found<'a>> {
    found.filter(|f| !f.value.is_null())
}

impl Template {
    /// Render into text for one context (`escape`), looking values up in `scope`.
    pub fn render(
        &self,
        scope: &(impl Scope + ?Sized),
        escape: Escape,
        missing: Missing,
    ) -> Result<Rendered, RenderError> {
        let mut text = String::new();
        let mut secrets_used = Vec::new();
        for part in self.parts() {
            match part {
                Part::Literal(literal) => {
                    if escape == Escape::Header
                        && let Some(found) = first_header_forbidden(literal)
                    {
                        return Err(RenderError::HeaderLiteral { found });
                    }
                    text.push_str(literal);
                }
                Part::Placeholder(p) => {
                    let Some(found) = present(scope.lookup(p.root(), p.path())) else {
                        if missing == Missing::Error {
                            return Err(RenderError::Missing {
                                placeholder: p.to_string(),
                            });
                        }
                        continue;
                    };
                    record_secret(&mut secrets_used, &found);
                    text.push_str(&escape_value(p, &to_text(&found.value), escape)?);
                }
            }
        }
        Ok(Rendered { text, secrets_used })
    }
}

impl Template {
    /// Render a URL: placeholder values are percent-encoded as one path segment before the
    /// first `?` of the template text, and as query values after it, so no value can add
    /// path segments, parameters or a fragment.
    pub fn render_url(
        &self,
        scope: &(impl Scope + ?Sized),
        missing: Missing,
    ) -> Result<Rendered, RenderError> {
        let mut text = String::new();
        let mut secrets_used = Vec::new();
        let mut in_query = false;
        for part in self.parts() {
            match part {
                Part::Literal(literal) => {
                    in_query |= literal.contains('?');
                    text.push_str(literal);
                }
                Part::Placeholder(p) => {
                    let Some(found) = present(scope.lookup(p.root(), p.path())) else {
                        if missing == Missing::Error {
                            return Err(RenderError::Missing {
                                placeholder: p.to_string(),
                            });
                        }
                        continue;
                    };
                    record_secret(&mut secrets_used, &found);
                    let escape = if in_query {
                        Escape::Query
                    } else {
                        Escape::PathSegment
                    };
                    text.push_str(&escape_value(p, &to_text(&found.value), escape)?);
                }
            }
        }
        Ok(Rendered { text, secrets_used })
    }
}

fn escape_value(p: &Placeholder, value: &str, escape: Escape) -> Result<String, RenderError> {
    Ok(match escape {
        Escape::None => value.to_owned(),
        Escape::Query => form_urlencode(value),
        Escape::PathSegment => {
            if let Some(dots) = [".", ".."].into_iter().find(|d| *d == value) {
                return Err(RenderError::DotSegment {
                    placeholder: p.to_string(),
                    value: dots,
                });
            }
            percent_encode_path_segment(value)
        }
        Escape::Header => {
            if let Some(found) = first_header_forbidden(value) {
                return Err(RenderError::HeaderInjection {
                    placeholder: p.to_string(),
                    found,
                });
            }
            value.to_owned()
        }
    })
}

/// A template error inside a JSON body template, with where it is (`items[0].name`; empty
/// for the top level).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{error}", if .path.is_empty() { String::new() } else { format!("at `{}`: ", .path) })]
pub struct JsonTemplateError {
    pub path: String,
    pub error: TemplateError,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    /// No placeholder inside: emitted as is (with `{{`/`}}` already unescaped in strings).
    Static(Value),
    /// A string that is exactly one placeholder: takes the value's JSON type.
    Whole(Placeholder),
    /// A string mixing text and placeholders: always a string.
    Text(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A JSON body template: every string value is a template, object keys are not.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonTemplate {
    root: Node,
}

impl JsonTemplate {
    /// Parse every string in `value`; the first bad one is reported with its path.
    pub fn parse(value: &Value) -> Result<Self, JsonTemplateError> {
        parse_node(value, &mut String::new()).map(|root| Self { root })
    }

    /// Every placeholder with the path of the string it sits in.
    pub fn placeholders(&self) -> Vec<(String, &Placeholder)> {
        let mut out = Vec::new();
        collect(&self.root, &mut String::new(), &mut out);
        out
    }

    /// Refuse the first placeholder whose root is not in `allowed`.
    pub fn check_roots(&self, allowed: &[&str]) -> Result<(), JsonTemplateError> {
        self.placeholders().into_iter().try_for_each(|(path, p)| {
            check_root(p, allowed).map_err(|error| JsonTemplateError { path, error })
        })
    }

    /// Render: lone placeholders keep their value's type, other strings render as text
    /// (no escaping: JSON serialization escapes).
    pub fn render(
        &self,
        scope: &(impl Scope + ?Sized),
        missing: Missing,
    ) -> Result<RenderedJson, RenderError> {
        let mut secrets_used = Vec::new();
        let value = render_node(&self.root, scope, missing, &mut secrets_used)?;
        Ok(RenderedJson {
            value,
            secrets_used,
        })
    }
}

/// Parse and render a JSON body template in one go.
pub fn render_json(
    template: &Value,
    scope: &(impl Scope + ?Sized),
    missing: Missing,
) -> Result<RenderedJson, RenderError> {
    JsonTemplate::parse(template)?.render(scope, missing)
}

fn parse_node(value: &Value, path: &mut String) -> Result<Node, JsonTemplateError> {
    Ok(match value {
        Value::String(s) => {
            let template = Template::parse(s).map_err(|error| JsonTemplateError {
                path: path.clone(),
                error,
            })?;
            if let Some(p) = template.single_placeholder() {
                Node::Whole(p.clone())
            } else if let Some(literal) = template.as_literal() {
                Node::Static(Value::String(literal.to_owned()))
            } else {
                Node::Text(template)
            }
        }
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                nodes.push(with_segment(path, &format!("[{i}]"), |p| {
                    parse_node(item, p)
                })?);
            }
            Node::Array(nodes)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (key, item) in map {
                let segment = if path.is_empty() {
                    key.clone()
                } else {
                    format!(".{key}")
                };
                let node = with_segment(path, &segment, |p| parse_node(item, p))?;
                fields.push((key.clone(), node));
            }
            Node::Object(fields)
        }
        scalar => Node::Static(scalar.clone()),
    })
}

/// Run `f` with `segment` appended to `path`, restoring `path` afterwards.
fn with_segment<T>(path: &mut String, segment: &str, f: impl FnOnce(&mut String) -> T) -> T {
    let len = path.len();
    path.push_str(segment);
    let out = f(path);
    path.truncate(len);
    out
}

fn collect<'a>(node: &'a Node, path: &mut String, out: &mut Vec<(String, &'a Placeholder)>) {
    match node {
        Node::Static(_) => {}
        Node::Whole(p) => out.push((path.clone(), p)),
        Node::Text(t) => out.extend(t.placeholders().map(|p| (path.clone(), p))),
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                with_segment(path, &format!("[{i}]"), |p| collect(item, p, out));
            }
        }
        Node::Object(fields) => {
            for (key, item) in fields {
                let segment = if path.is_empty() {
                    key.clone()
                } else {
                    format!(".{key}")
                };
                with_segment(path, &segment, |p| collect(item, p, out));
            }
        }
    }
}

fn render_node(
    node: &Node,
    scope: &(impl Scope + ?Sized),
    missing: Missing,
    secrets: &mut Vec<String>,
) -> Result<Value, RenderError> {
    Ok(match node {
        Node::Static(v) => v.clone(),
        Node::Whole(p) => match present(scope.lookup(p.root(), p.path())) {
            Some(found) => {
                record_secret(secrets, &found);
                found.value.into_owned()
            }
            None if missing == Missing::Error => {
                return Err(RenderError::Missing {
                    placeholder: p.to_string(),
                });
            }
            None => Value::Null,
        },
        Node::Text(t) => {
            let rendered = t.render(scope, Escape::None, missing)?;
            for s in rendered.secrets_used {
                if !secrets.contains(&s) {
                    secrets.push(s);
                }
            }
            Value::String(rendered.text)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(n, scope, missing, secrets))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(fields) => {
            let mut map = Map::with_capacity(fields.len());
            for (key, n) in fields {
                map.insert(key.clone(), render_node(n, scope, missing, secrets)?);
            }
            Value::Object(map)
        }
    })
}

//! casehook's small template language: literal text with `{root.path}` placeholders, as in
//! `https://crm.example/customers/{data.customer_id}?ref={case.number}` or
//! `Bearer {secret.api_key}`.
//!
//! Why our own: single braces clash with Jinja-style engines and with JSON bodies, and we need
//! two things general engines lack: escaping chosen by where the text goes (a URL path
//! segment, a query value, a header, a JSON value) and a record of which secret values were
//! used, so logs can be redacted.
//!
//! - This module: parsing (`Template::parse`) and the save-time checks on placeholders.
//! - `render`: looking values up through a [`Scope`], rendering text and JSON bodies.
//! - `escape`: percent-encoding, form-encoding and redaction helpers.
//!
//! Syntax: `{{` and `}}` are literal braces. A placeholder is a root and optional path
//! segments separated by `.`, each made of `A-Z a-z 0-9 _ -`; a numeric segment indexes an
//! array (`{data.items.0.sku}`). Nothing else is allowed inside braces, not even spaces.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod escape;
mod render;

pub use escape::{REDACTED, form_urlencode, percent_encode_path_segment, redact};
pub use render::{
    Escape, Found, JsonScope, JsonTemplate, JsonTemplateError, Missing, RenderError, Rendered,
    RenderedJson, Scope, SecretSource, render_json,
};
pub(crate) use render::{lookup_path, to_text};

/// The root under which `JsonScope` looks up secrets, and whose values are recorded.
pub const SECRET_ROOT: &str = "secret";

/// Longest piece of template text echoed back in an error message.
const MAX_ECHO_CHARS: usize = 60;

/// Why a template was refused. Positions are byte offsets into the template text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "placeholder opened at byte {position} is never closed: add `}}` (or write `{{{{` for a literal brace)"
    )]
    Unterminated { position: usize },
    #[error("empty placeholder `{{}}` at byte {position}: name a value such as `{{data.field}}`")]
    Empty { position: usize },
    #[error("invalid placeholder `{{{text}}}` at byte {position}: {reason}")]
    Invalid {
        position: usize,
        text: String,
        reason: String,
    },
    #[error("unmatched `}}` at byte {position}: write `}}}}` for a literal brace")]
    UnmatchedClose { position: usize },
    #[error(
        "unknown placeholder `{placeholder}` at byte {position}: `{root}` is not one of {allowed}"
    )]
    UnknownRoot {
        position: usize,
        placeholder: String,
        root: String,
        allowed: String,
    },
}

/// One `{root.path}` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    root: String,
    path: Vec<String>,
    position: usize,
}

impl Placeholder {
    /// Parse the inside of a placeholder (`data.items.0.sku`, without braces). Also the
    /// syntax of field paths elsewhere in the configuration (content field selection).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        parse_placeholder(text, 0)
    }

    /// `data` in `{data.customer_id}`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `["customer_id"]` in `{data.customer_id}`; empty for a bare root such as `{data}`.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Byte offset of the opening brace in the template text (0 from `Placeholder::parse`).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The dotted name without braces: `data.customer_id`.
    pub fn dotted(&self) -> String {
        let mut s = self.root.clone();
        for segment in &self.path {
            s.push('.');
            s.push_str(segment);
        }
        s
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.dotted())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// A parsed template. Serializes as its source text; deserializing parses (and refuses bad
/// syntax with the error's message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parse template text: the first syntax error is reported with its byte position.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(at) = rest.find(['{', '}']) {
            literal.push_str(&rest[..at]);
            let position = source.len() - rest.len() + at;
            let brace = &rest[at..];
            if let Some(after) = brace
                .strip_prefix("{{")
                .or_else(|| brace.strip_prefix("}}"))
            {
                literal.push_str(&brace[..1]);
                rest = after;
                continue;
            }
            if brace.starts_with('}') {
                return Err(TemplateError::UnmatchedClose { position });
            }
            let inner = &brace[1..];
            let Some(close) = inner.find('}') else {
                return Err(TemplateError::Unterminated { position });
            };
            let placeholder = parse_placeholder(&inner[..close], position)?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Placeholder(placeholder));
            rest = &inner[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every placeholder, in order of appearance, for save-time checks (does the form have
    /// this field? may this root be used here?).
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(ph) => Some(ph),
            Part::Literal(_) => None,
        })
    }

    /// The placeholder when the template is exactly one placeholder and nothing else: such a
    /// JSON value keeps the looked-up value's type.
    pub fn single_placeholder(&self) -> Option<&Placeholder> {
        match self.parts.as_slice() {
            [Part::Placeholder(p)] => Some(p),
            _ => None,
        }
    }

    /// The text with braces unescaped, when the template has no placeholder at all.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Refuse the first placeholder whose root is not in `allowed` (such as `{secret.x}` where
    /// secrets may not be used, or a typo like `{dta.x}`).
    pub fn check_roots(&self, allowed: &[&str]) -> Result<(), TemplateError> {
        self.placeholders().try_for_each(|p| check_root(p, allowed))
    }

    fn parts(&self) -> &[Part] {
        &self.parts
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

pub(crate) fn check_root(p: &Placeholder, allowed: &[&str]) -> Result<(), TemplateError> {
    if allowed.contains(&p.root()) {
        return Ok(());
    }
    let allowed = if allowed.is_empty() {
        "(no placeholders are allowed here)".to_owned()
    } else {
        allowed
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(TemplateError::UnknownRoot {
        position: p.position,
        placeholder: p.to_string(),
        root: p.root.clone(),
        allowed,
    })
}

fn parse_placeholder(text: &str, position: usize) -> Result<Placeholder, TemplateError> {
    if text.is_empty() {
        return Err(TemplateError::Empty { position });
    }
    let invalid = |reason: String| TemplateError::Invalid {
        position,
        text: echo(text),
        reason,
    };
    if let Some(c) = text.chars().find(|c| !is_path_char(*c) && *c != '.') {
        let hint = if c == '{' || c.is_whitespace() || c == '"' {
            " (write `{{` and `}}` for literal braces)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "`{}` is not allowed; names use letters, digits, `_` and `-`, separated by `.`{hint}",
            c.escape_debug()
        )));
    }
    let mut segments = text.split('.').map(str::to_owned);
    let root = segments.next().unwrap_or_default();
    let path: Vec<String> = segments.collect();
    if root.is_empty() || path.iter().any(String::is_empty) {
        return Err(invalid(
            "a name is empty: `.` must separate non-empty names".to_owned(),
        ));
    }
    Ok(Placeholder {
        root,
        path,
        position,
    })
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn echo(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO_CHARS {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(MAX_ECHO_CHARS).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests;

//! The "If" of an outgoing webhook: a boolean expression over the event and its case, written
//! in CEL (Common Expression Language), compiled and checked when an endpoint is saved and
//! evaluated for every event the endpoint subscribes to.
//!
//! ```text
//! case.data.amount > 1000 && case.status == "open"
//! "status" in event.changes
//! event.type == "case.updated" && event.changes.status.new == "closed"
//! ```
//!
//! # What an expression sees
//!
//! Two variables and nothing else: `event`, the envelope as delivered (`id`, `type`,
//! `timestamp`, `workspace_id`, `actor`, `resource_type`, `resource_id`, `data`, and `changes`,
//! an object of field key → `{"old", "new"}` that is empty when the event carries none), and
//! `case`, the case as it is now (`id`, `number`, `status`, `data`, `external_refs`,
//! `version`, …), or `null` when the case is gone (guard with `case != null && …`).
//!
//! # Semantics worth knowing
//!
//! - Numbers: JSON integers are CEL `int`s, other numbers `double`s. Comparisons mix them
//!   freely (`1000 == 1000.0` is true), arithmetic does not (`amount + 1.5` fails when
//!   `amount` is an int; write `double(amount) + 1.5`).
//! - A missing key is an error, not `false`: `case.data.amount > 1000` fails with "no such
//!   key" when the case has no amount. Test presence first, `has(case.data.amount) &&
//!   case.data.amount > 1000`, or give a default, `case.data.?amount.orValue(0) > 1000`.
//!   `&&` and `||` forgive an error on one side when the other side decides the result.
//! - Functions: `size`, `contains`, `startsWith`, `endsWith`, `matches` (regular
//!   expressions), the conversions `int`, `uint`, `double`, `string`, `bool`, `bytes`, `dyn`,
//!   `type`, the list macros `all`, `exists`, `exists_one`, `map`, `filter`, and the optional
//!   values `.?key`, `[?key]`, `orValue`, `or`, `value`, `hasValue`, `optional.of`/`none`.
//!   There are no timestamps: compare RFC 3339 UTC strings, which sort as they read.
//!
//! An evaluation error (a missing key, a type mismatch) is not a `false`: the caller records it
//! and does not deliver, so that a broken condition is seen rather than silently filtering.
//!
//! Nothing here does I/O; a [`Condition`] is cheap to clone and may be shared across threads.

mod analyze;
mod runtime;

use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program};
use serde_json::Value;

use crate::form::FormSpec;

/// The longest condition accepted, in bytes: a condition is a filter, not a program.
pub const MAX_SOURCE_BYTES: usize = 4096;

/// How deeply expressions may nest. The interpreter evaluates recursively, and with large
/// frames in unoptimised builds; this bound keeps any accepted condition far from the 2 MiB
/// stack of a worker thread.
pub const MAX_DEPTH: usize = 32;

/// How many list macros (`all`, `exists`, `map`, …) may nest inside one another. Each level
/// multiplies the work by the length of a list, and a condition runs for every event.
pub const MAX_NESTED_MACROS: usize = 2;

/// Why a condition was refused when saved, or why evaluating it failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Nothing but blanks.
    #[error("the condition is empty; write an expression such as `case.status == \"open\"`")]
    Empty,
    /// Longer than [`MAX_SOURCE_BYTES`].
    #[error("the condition is {len} bytes long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    /// The text is not a CEL expression; the position is where the parser gave up.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A name other than `event`, `case`, a macro's own variable or a type name.
    #[error("unknown variable `{name}` at line {line}, column {column}; use `event` or `case`")]
    UnknownVariable {
        name: String,
        line: usize,
        column: usize,
    },
    /// A function the condition environment does not have (or a macro called wrong).
    #[error("unknown function `{name}` at line {line}, column {column}{hint}")]
    UnknownFunction {
        name: String,
        line: usize,
        column: usize,
        /// Empty, or a sentence (starting with "; ") on how to call it.
        hint: String,
    },
    /// Valid CEL that conditions do not allow, such as building a message.
    #[error("{what} is not supported in conditions (line {line}, column {column})")]
    Unsupported {
        what: String,
        line: usize,
        column: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("the condition nests more than {max} levels deep; split it into simpler parts")]
    TooDeep { max: usize },
    /// More than [`MAX_NESTED_MACROS`] list macros inside one another.
    #[error(
        "the condition nests more than {max} list macros (all, exists, exists_one, map, filter) inside one another"
    )]
    TooManyNestedMacros { max: usize },
    /// From [`Condition::check_fields`]: `case.data` keys the form does not have.
    #[error("{}", unknown_fields_message(.keys))]
    UnknownFields { keys: Vec<String> },
    /// Evaluating failed (a missing key, a type mismatch…); the explanation is for people.
    #[error("the condition could not be evaluated: {0}")]
    Evaluation(String),
    /// Evaluating gave something other than a boolean, described.
    #[error("the condition must give true or false, but it gave {0}")]
    NotBoolean(String),
}

fn unknown_fields_message(keys: &[String]) -> String {
    if let [key] = keys {
        return format!("the condition uses `case.data.{key}`, but the form has no field `{key}`");
    }
    let listed: Vec<String> = keys.iter().map(|k| format!("`case.data.{k}`")).collect();
    format!(
        "the condition uses {}, which are not fields of the form",
        listed.join(", ")
    )
}

/// A compiled, checked condition. Cloning shares the compiled program.
#[derive(Clone)]
pub struct Condition {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: String,
    program: Program,
    /// Keys read as `case.data.<key>` (or `case.data["key"]`, `"key" in case.data`, …), in
    /// order of first use, for `check_fields`.
    data_keys: Vec<String>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition")
            .field(&self.inner.source)
            .finish()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source
    }
}

/// The standard CEL environment, built once: it holds only declarations, so every
/// evaluation on every thread can share it.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Condition {
    /// Parse and check a condition: syntax, length, nesting, and that it names no variable
    /// other than `event` and `case` and no function conditions cannot call.
    pub fn compile(source: &str) -> Result<Condition, ConditionError> {
        Self::compile_for(source, analyze::VARIABLES)
    }

    /// Like [`Condition::compile`], for a step of an API-call sequence: `steps` (the earlier
    /// steps' outputs by step name) may be used too. Evaluate with
    /// [`Condition::evaluate_step`].
    pub fn compile_step(source: &str) -> Result<Condition, ConditionError> {
        Self::compile_for(source, analyze::STEP_VARIABLES)
    }

    fn compile_for(
        source: &str,
        variables: &'static [&'static str],
    ) -> Result<Condition, ConditionError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ConditionError::TooLong {
                len: source.len(),
                max: MAX_SOURCE_BYTES,
            });
        }
        if source.trim().is_empty() {
            return Err(ConditionError::Empty);
        }
        let program = env()
            .compile(source)
            .map_err(|e| analyze::syntax_error(&e))?;
        let data_keys = analyze::check(source, &program, variables)?;
        Ok(Condition {
            inner: Arc::new(Compiled {
                source: source.to_owned(),
                program,
                data_keys,
            }),
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The case fields the condition reads through `case.data`, in order of first use.
    pub fn data_keys(&self) -> &[String] {
        &self.inner.data_keys
    }

    /// Refuse `case.data.<key>` references to fields the form does not have (best effort:
    /// keys computed at run time, such as `case.data[event.data.name]`, are not seen).
    pub fn check_fields(&self, form: &FormSpec) -> Result<(), ConditionError> {
        let keys: Vec<String> = self
            .inner
            .data_keys
            .iter()
            .filter(|k| form.field(k).is_none())
            .cloned()
            .collect();
        if keys.is_empty() {
            Ok(())
        } else {
            Err(ConditionError::UnknownFields { keys })
        }
    }

    /// Evaluate against the JSON forms of an event envelope and its case (`None` when the
    /// case is gone: `case` is then `null`). An absent or null `changes` reads as an empty
    /// object. A runtime error or a result other than a boolean is an error.
    pub fn evaluate(&self, event: &Value, case: Option<&Value>) -> Result<bool, ConditionError> {
        self.run(event, case, None)
    }

    /// Evaluate a step condition, with the earlier steps' outputs as `steps`.
    pub fn evaluate_step(
        &self,
        event: &Value,
        case: Option<&Value>,
        steps: &Value,
    ) -> Result<bool, ConditionError> {
        self.run(event, case, Some(steps))
    }

    fn run(
        &self,
        event: &Value,
        case: Option<&Value>,
        steps: Option<&Value>,
    ) -> Result<bool, ConditionError> {
        let mut context = Context::with_env(Arc::clone(env()));
        context.add_variable_as_val("event", runtime::event_val(event));
        context.add_variable_as_val("case", runtime::case_val(case));
        if let Some(steps) = steps {
            context.add_variable_as_val("steps", runtime::case_val(Some(steps)));
        }
        match self.inner.program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBoolean(runtime::describe(&other))),
            Err(e) => Err(ConditionError::Evaluation(runtime::explain(&e))),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

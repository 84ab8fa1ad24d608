//! JSONPath parsing with a bound on what a path may cost to run (see the module above for
//! why), and the reasons a path is refused, in words.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use serde_json_path::JsonPath;

use super::{MAX_DESCENDANTS, MAX_PATH_BYTES, MAX_PATH_NESTING};

/// Parsed paths kept for reuse, at most this many (then the memo starts over).
const MEMO_CAPACITY: usize = 4096;

/// Paths already parsed. A path runs on every request or response its configuration sees,
/// and parsing costs far more than looking it up; the paths come from saved configurations,
/// so the set in use is small. Only paths that parsed are kept.
static MEMO: LazyLock<RwLock<HashMap<Box<str>, Arc<JsonPath>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Why a path was refused.
#[derive(Debug)]
pub(super) enum PathError {
    TooLong(usize),
    TooNested,
    TooManyDescendants,
    RootInside,
    Syntax { at: usize, message: String },
}

impl PathError {
    pub(super) fn sentence(&self, path: &str) -> String {
        let shown = crate::validate::shorten(path);
        match self {
            Self::TooLong(n) => {
                format!("the path is {n} bytes long; at most {MAX_PATH_BYTES} are allowed")
            }
            Self::TooNested => {
                format!("`{shown}` nests brackets more than {MAX_PATH_NESTING} deep; simplify it")
            }
            Self::TooManyDescendants => format!(
                "`{shown}` uses `..` more than {MAX_DESCENDANTS} times; name the levels instead"
            ),
            Self::RootInside => format!(
                "`{shown}` uses `$` inside the path; inside a filter, write `@` for the current item"
            ),
            Self::Syntax { at, message } => {
                let hint = if path.trim_start().starts_with('$') {
                    ""
                } else {
                    "; a JSONPath starts with `$`, as in `$.data.id`"
                };
                format!(
                    "`{shown}` is not a valid JSONPath (at character {}: {message}){hint}",
                    at + 1
                )
            }
        }
    }
}

/// Parse a path after checking what it may cost (or find it parsed before).
pub(super) fn compile_path(path: &str) -> Result<Arc<JsonPath>, PathError> {
    // A poisoned lock only means another thread panicked mid-insert; the map is still whole.
    if let Some(found) = MEMO
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(path)
    {
        return Ok(found.clone());
    }
    let parsed = Arc::new(parse(path)?);
    let mut memo = MEMO
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if memo.len() >= MEMO_CAPACITY {
        memo.clear();
    }
    memo.insert(path.into(), parsed.clone());
    Ok(parsed)
}

fn parse(path: &str) -> Result<JsonPath, PathError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(path.len()));
    }
    check_cost(path)?;
    JsonPath::parse(path).map_err(|e| PathError::Syntax {
        at: e.position(),
        message: e.message().to_owned(),
    })
}

/// Scan outside string literals for what makes a query expensive: deep nesting (the parser
/// and evaluator recurse on it), many `..`, and `$` after the start.
fn check_cost(path: &str) -> Result<(), PathError> {
    let mut depth = 0usize;
    let mut descendants = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous_dot = false;
    for (i, c) in path.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' => {
                depth += 1;
                if depth > MAX_PATH_NESTING {
                    return Err(PathError::TooNested);
                }
            }
            ']' | ')' => depth = depth.saturating_sub(1),
            '$' if i > 0 => return Err(PathError::RootInside),
            '.' if previous_dot => {
                descendants += 1;
                if descendants > MAX_DESCENDANTS {
                    return Err(PathError::TooManyDescendants);
                }
            }
            _ => {}
        }
        // `...` counts once per extra dot, which the parser refuses anyway.
        previous_dot = c == '.' && !previous_dot;
    }
    Ok(())
}

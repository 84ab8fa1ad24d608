//! The `WWW-Authenticate` grammar of RFC 9110 §11.6.1 (formerly RFC 7235 §4.1):
//! a comma-separated list of challenges, each an auth-scheme followed by either a token68
//! or a comma-separated list of `name=value` parameters, where a value is a token or a
//! quoted-string.
//!
//! Because challenges and their parameters share one comma-separated list, an element is a
//! parameter of the current challenge when its first token is followed by `=`, and the
//! start of a new challenge otherwise. Anything that fits neither is an error: the parser
//! never guesses and never panics.

use super::DigestError;

/// One challenge of any scheme, before its parameters are interpreted.
#[derive(Debug)]
pub(super) struct RawChallenge<'a> {
    pub(super) scheme: &'a str,
    /// Names in lower case (they are case-insensitive), values unescaped.
    pub(super) params: Vec<(String, String)>,
    pub(super) token68: Option<&'a str>,
}

/// Splits a header value into its challenges.
pub(super) fn challenges(header: &str) -> Result<Vec<RawChallenge<'_>>, DigestError> {
    let mut lexer = Lexer { s: header, pos: 0 };
    let mut out: Vec<RawChallenge<'_>> = Vec::new();
    loop {
        lexer.skip_separators();
        if lexer.at_end() {
            break;
        }
        let start = lexer.pos;
        let Some(word) = lexer.token() else {
            return Err(lexer.malformed("expected an auth scheme or a parameter name"));
        };
        let after_word = lexer.pos;
        lexer.skip_whitespace();

        if lexer.peek() == Some(b'=') {
            // `name = value`: a further parameter of the current challenge.
            let Some(current) = out.last_mut() else {
                return Err(DigestError::Malformed {
                    at: start,
                    reason: "a parameter comes before any auth scheme",
                });
            };
            if current.token68.is_some() {
                return Err(lexer.malformed("a challenge has both a token68 and parameters"));
            }
            lexer.bump();
            lexer.skip_whitespace();
            let value = lexer.value()?;
            current.params.push((word.to_ascii_lowercase(), value));
            lexer.end_of_element()?;
            continue;
        }

        // A new challenge: the scheme alone, or followed by a space and then either its
        // first parameter or a token68.
        let mut challenge = RawChallenge {
            scheme: word,
            params: Vec::new(),
            token68: None,
        };
        if lexer.at_end() || lexer.peek() == Some(b',') {
            out.push(challenge);
            continue;
        }
        if lexer.pos == after_word {
            return Err(lexer.malformed("expected a space after the auth scheme"));
        }
        let mark = lexer.pos;
        if let Some(name) = lexer.token() {
            lexer.skip_whitespace();
            if lexer.peek() == Some(b'=') {
                lexer.bump();
                lexer.skip_whitespace();
                if !matches!(lexer.peek(), None | Some(b',' | b'=')) {
                    let value = lexer.value()?;
                    challenge.params.push((name.to_ascii_lowercase(), value));
                    lexer.end_of_element()?;
                    out.push(challenge);
                    continue;
                }
            }
        }
        lexer.pos = mark;
        let Some(token68) = lexer.token68() else {
            return Err(lexer.malformed("expected a parameter or a token68 after the scheme"));
        };
        challenge.token68 = Some(token68);
        lexer.end_of_element()?;
        out.push(challenge);
    }
    Ok(out)
}

/// RFC 9110 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token68` characters, before the trailing `=` padding.
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// A control character other than HTAB: never valid inside a header value.
pub(super) fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

struct Lexer<'a> {
    s: &'a str,
    /// A byte offset. Between calls it rests only on ASCII bytes or the end, so slicing
    /// from one resting point to another is always on char boundaries.
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn malformed(&self, reason: &'static str) -> DigestError {
        DigestError::Malformed {
            at: self.pos,
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// Whitespace and the commas of empty list elements (RFC 9110 §5.6.1 allows them).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.bump();
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.bump();
        }
        if self.pos == start {
            None
        } else {
            self.s.get(start..self.pos)
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        self.take_while(is_tchar)
    }

    fn token68(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.take_while(is_token68_char)?;
        while self.peek() == Some(b'=') {
            self.bump();
        }
        self.s.get(start..self.pos)
    }

    /// A parameter value: a token or a quoted-string (returned unescaped).
    fn value(&mut self) -> Result<String, DigestError> {
        if self.peek() == Some(b'"') {
            return self.quoted_string();
        }
        self.token()
            .map(str::to_owned)
            .ok_or_else(|| self.malformed("expected a token or a quoted string as the value"))
    }

    fn quoted_string(&mut self) -> Result<String, DigestError> {
        self.bump(); // the opening quote
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.malformed("unterminated quoted string")),
                Some(b'"') => {
                    self.bump();
                    break;
                }
                Some(b'\\') => {
                    self.bump();
                    match self.peek() {
                        Some(b) if !is_forbidden_control(b) => {
                            bytes.push(b);
                            self.bump();
                        }
                        _ => return Err(self.malformed("invalid escape in a quoted string")),
                    }
                }
                Some(b) if is_forbidden_control(b) => {
                    return Err(self.malformed("control character in a quoted string"));
                }
                Some(b) => {
                    bytes.push(b);
                    self.bump();
                }
            }
        }
        // Only ASCII backslashes were removed from valid UTF-8, so this always succeeds.
        String::from_utf8(bytes).map_err(|_| self.malformed("invalid UTF-8 in a quoted string"))
    }

    /// After an element: optional whitespace, then a comma or the end.
    fn end_of_element(&mut self) -> Result<(), DigestError> {
        self.skip_whitespace();
        match self.peek() {
            None | Some(b',') => Ok(()),
            Some(_) => Err(self.malformed("expected a comma")),
        }
    }
}

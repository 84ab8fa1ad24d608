//! The auth methods of a connection (and of an API-call field's inline `api_config`).
//!
//! Every credential is a template, so a value can be a literal (sealed with the connection)
//! or a reference such as `{secret.crm_token}`. An inline `api_config` lives in the form
//! definition, which is not sealed: there credentials must be secret references
//! ([`AuthMethod::check_no_literal_secrets`]).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{FieldError, FieldErrorCode};
use crate::template::{SECRET_ROOT, Template};

/// Where an API key goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlacement {
    #[default]
    Header,
    Query,
}

/// The OAuth 2.0 grant used to get access tokens.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    #[default]
    ClientCredentials,
    RefreshToken,
}

/// How the OAuth 2.0 client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1, the recommended way).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// The OAuth 1.0a signature method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OAuth1Method {
    #[default]
    #[serde(rename = "HMAC-SHA1")]
    HmacSha1,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

/// How requests prove who sends them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthMethod {
    #[default]
    None,
    Basic {
        #[schema(value_type = String)]
        username: Template,
        #[schema(value_type = String)]
        password: Template,
    },
    Bearer {
        #[schema(value_type = String)]
        token: Template,
    },
    /// An API key in a header (`X-Api-Key: …`) or a query parameter (`?api_key=…`).
    /// `{"type": "header", "key": …, "value": …}` (the API Call field's spelling) also works.
    #[serde(alias = "header")]
    ApiKey {
        #[serde(alias = "key")]
        name: String,
        #[schema(value_type = String)]
        value: Template,
        #[serde(default, rename = "in")]
        placement: KeyPlacement,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        #[serde(default)]
        grant: OAuth2Grant,
        token_url: String,
        #[schema(value_type = String)]
        client_id: Template,
        #[schema(value_type = String)]
        client_secret: Template,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        refresh_token: Option<Template>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
    #[serde(rename = "oauth1")]
    OAuth1 {
        #[schema(value_type = String)]
        consumer_key: Template,
        #[schema(value_type = String)]
        consumer_secret: Template,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        token: Option<Template>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        token_secret: Option<Template>,
        #[serde(default)]
        signature_method: OAuth1Method,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        realm: Option<String>,
    },
    AwsSigv4 {
        #[schema(value_type = String)]
        access_key_id: Template,
        #[schema(value_type = String)]
        secret_access_key: Template,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        session_token: Option<Template>,
        region: String,
        service: String,
    },
    Digest {
        #[schema(value_type = String)]
        username: Template,
        #[schema(value_type = String)]
        password: Template,
    },
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl AuthMethod {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::ApiKey { .. } => "api_key",
            Self::OAuth2 { .. } => "oauth2",
            Self::OAuth1 { .. } => "oauth1",
            Self::AwsSigv4 { .. } => "aws_sigv4",
            Self::Digest { .. } => "digest",
        }
    }

    /// The credentials that must stay secret, by name.
    fn secret_parts(&self) -> Vec<(&'static str, &Template)> {
        match self {
            Self::None => vec![],
            Self::Basic { password, .. } | Self::Digest { password, .. } => {
                vec![("password", password)]
            }
            Self::Bearer { token } => vec![("token", token)],
            Self::ApiKey { value, .. } => vec![("value", value)],
            Self::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => {
                let mut v = vec![("client_secret", client_secret)];
                v.extend(refresh_token.as_ref().map(|t| ("refresh_token", t)));
                v
            }
            Self::OAuth1 {
                consumer_secret,
                token_secret,
                ..
            } => {
                let mut v = vec![("consumer_secret", consumer_secret)];
                v.extend(token_secret.as_ref().map(|t| ("token_secret", t)));
                v
            }
            Self::AwsSigv4 {
                secret_access_key,
                session_token,
                ..
            } => {
                let mut v = vec![("secret_access_key", secret_access_key)];
                v.extend(session_token.as_ref().map(|t| ("session_token", t)));
                v
            }
        }
    }

    /// Every template of the method, secret or not.
    pub fn templates(&self) -> Vec<(&'static str, &Template)> {
        let mut all = self.secret_parts();
        match self {
            Self::Basic { username, .. } | Self::Digest { username, .. } => {
                all.push(("username", username))
            }
            Self::OAuth2 { client_id, .. } => all.push(("client_id", client_id)),
            Self::OAuth1 {
                consumer_key,
                token,
                ..
            } => {
                all.push(("consumer_key", consumer_key));
                all.extend(token.as_ref().map(|t| ("token", t)));
            }
            Self::AwsSigv4 { access_key_id, .. } => all.push(("access_key_id", access_key_id)),
            _ => {}
        }
        all
    }

    /// What the API may show: everything but the secret parts, which show as `"(set)"` or as
    /// the secret they refer to (`{secret.name}` is not itself secret).
    pub fn public_view(&self) -> Value {
        let mut view = serde_json::to_value(self).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut view {
            for (name, template) in self.secret_parts() {
                let shown = if references_secret_only(template) {
                    Value::String(template.as_str().to_owned())
                } else {
                    Value::String("(set)".to_owned())
                };
                map.insert(name.to_owned(), shown);
            }
        }
        view
    }

    /// Refuse what cannot work: empty credentials, placeholders other than secrets, a bad
    /// token URL, region or service.
    pub fn check(&self, field: &str) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let bad = |part: &str, message: String| {
            FieldError::new(
                format!("{field}.{part}"),
                FieldErrorCode::InvalidDefinition,
                message,
            )
        };
        for (name, template) in self.templates() {
            if template.as_str().is_empty() {
                problems.push(bad(name, format!("`{name}` is empty")));
            } else if let Err(e) = template.check_roots(&[SECRET_ROOT]) {
                problems.push(bad(
                    name,
                    format!("{e}; credentials may only use `{{secret.<name>}}`"),
                ));
            }
        }
        match self {
            Self::ApiKey { name, .. }
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                problems.push(bad(
                    "name",
                    "the key's name is letters, digits, `-`, `_` and `.`".to_owned(),
                ));
            }
            Self::OAuth2 {
                grant,
                token_url,
                refresh_token,
                ..
            } => {
                if let Err(m) = check_http_url(token_url) {
                    problems.push(bad("token_url", m));
                }
                if *grant == OAuth2Grant::RefreshToken && refresh_token.is_none() {
                    problems.push(bad(
                        "refresh_token",
                        "the refresh_token grant needs a `refresh_token`".to_owned(),
                    ));
                }
            }
            Self::AwsSigv4 {
                region, service, ..
            } => {
                for (name, value) in [("region", region), ("service", service)] {
                    if value.is_empty()
                        || !value
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    {
                        problems.push(bad(
                            name,
                            format!(
                                "`{name}` is lower-case letters, digits and `-`, like `eu-west-1`"
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        problems
    }

    /// For configuration stored unsealed (an API-call field's inline `api_config`): every
    /// secret part must be a `{secret.<name>}` reference, never the value itself.
    pub fn check_no_literal_secrets(&self, field: &str) -> Vec<FieldError> {
        self.secret_parts()
            .into_iter()
            .filter(|(_, t)| t.placeholders().next().is_none())
            .map(|(name, _)| {
                FieldError::new(
                    format!("{field}.{name}"),
                    FieldErrorCode::InvalidDefinition,
                    format!(
                        "`{name}` must not be written into the form: store it as a workspace secret (POST /api/v1/secrets) and write `{{secret.<name>}}`, or use a connection"
                    ),
                )
            })
            .collect()
    }
}

fn references_secret_only(t: &Template) -> bool {
    t.single_placeholder()
        .is_some_and(|p| p.root() == SECRET_ROOT)
}

/// An absolute `http` or `https` URL without credentials or fragment.
pub(crate) fn check_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}` is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in the auth method, not in the URL".to_owned());
    }
    if url.fragment().is_some() {
        return Err(format!(
            "`{text}` has a fragment (`#…`), which is never sent"
        ));
    }
    Ok(url)
}

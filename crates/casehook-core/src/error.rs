//! Field-level problems, reported all at once: the `details` of a `validation_failed` error.

use serde::{Deserialize, Serialize};

/// Why one field (or the request as a whole, when `field` is empty) was refused. The codes are
/// a public contract (AM System compatible); never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorCode {
    /// A required field is absent.
    FieldRequired,
    /// A field is present but empty (null, "", or an empty list) where a value is needed.
    ValueMissing,
    /// A number field got something that is not a number.
    ValueNotNumeric,
    /// A multi-select or array field got something that is not a list.
    ValueNotArray,
    /// A date or datetime field got something that is not a valid date.
    WrongDate,
    /// A select value (or status) that is not among the allowed options.
    ValueNotAllowed,
    /// A key that is not a field of the form.
    UnknownField,
    /// A value of the wrong JSON type (e.g. a number for a text field).
    WrongType,
    /// A url field that is not an absolute http(s) URL.
    InvalidUrl,
    /// A form definition problem: a duplicated key.
    DuplicateKey,
    /// A form definition problem: a malformed key, option list or section reference.
    InvalidDefinition,
    /// A field whose type change or removal would invalidate data already stored.
    IncompatibleChange,
    /// Event data that does not match the event type's JSON Schema.
    SchemaMismatch,
}

impl FieldErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FieldRequired => "field_required",
            Self::ValueMissing => "value_missing",
            Self::ValueNotNumeric => "value_not_numeric",
            Self::ValueNotArray => "value_not_array",
            Self::WrongDate => "wrong_date",
            Self::ValueNotAllowed => "value_not_allowed",
            Self::UnknownField => "unknown_field",
            Self::WrongType => "wrong_type",
            Self::InvalidUrl => "invalid_url",
            Self::DuplicateKey => "duplicate_key",
            Self::InvalidDefinition => "invalid_definition",
            Self::IncompatibleChange => "incompatible_change",
            Self::SchemaMismatch => "schema_mismatch",
        }
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field key (or a path such as `fields[2].options`); empty for the whole input.
    pub field: String,
    pub code: FieldErrorCode,
    /// A sentence for humans; the code is the contract.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: FieldErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

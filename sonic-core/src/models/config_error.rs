//! Why a model configuration is refused: one typed error for every config of `models`.

/// A model configuration that cannot describe a buildable model, or a config file that cannot
/// be read as one. Each variant names the field and its value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not JSON of the expected layout.
    #[error("not a config of the expected layout")]
    Json {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A list field has no entries.
    #[error("`{field}` is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// Two list fields that go together differ in length.
    #[error("`{field}` has {len} entries, `{other}` has {other_len}")]
    LengthMismatch {
        /// The field.
        field: &'static str,
        /// Its number of entries.
        len: usize,
        /// The field it must match.
        other: &'static str,
        /// That field's number of entries.
        other_len: usize,
    },
    /// A field's value is out of range.
    #[error("`{field}` = {value}: {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// A field asks for something this crate does not implement.
    #[error("`{field}` = {value} is not supported (supported: {supported})")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is supported.
        supported: &'static str,
    },
    /// The scheduler's config is refused.
    #[error("invalid scheduler config")]
    Scheduler {
        /// Why.
        #[source]
        source: crate::sampler::SchedulerError,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field` = `value`.
    pub(crate) fn invalid(
        field: &'static str,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field,
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// An [`ConfigError::Unsupported`] for `field` = `value`.
    pub(crate) fn unsupported(
        field: &'static str,
        value: impl std::fmt::Debug,
        supported: &'static str,
    ) -> Self {
        Self::Unsupported {
            field,
            value: format!("{value:?}"),
            supported,
        }
    }
}

impl From<serde_json::Error> for ConfigError {
    fn from(source: serde_json::Error) -> Self {
        Self::Json { source }
    }
}

//! The `log` import: the plugin's log lines, on the host's `tracing`, with
//! control characters escaped.
//!
//! Knows nothing about the rest of the call.

use super::CallState;
use crate::bindings::psa::billing::log;

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // The plugin's text may quote what a sender wrote: a line break or a
        // terminal escape must not forge a log line or reach a terminal raw.
        let event = escape_controls(&self.log_context);
        let message = escape_controls(&message);
        let event = event.as_ref();
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", event, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", event, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", event, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", event, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", event, "{message}"),
        }
        Ok(())
    }
}

/// `text` with its control characters (line breaks, NUL, ESC...) written
/// as escapes (`\n`, `\u{1b}`).
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_in_log_text_are_escaped() {
        assert_eq!(escape_controls("evt_1"), "evt_1");
        assert_eq!(
            escape_controls("evt_1\nlevel=ERROR forged"),
            "evt_1\\nlevel=ERROR forged"
        );
        assert_eq!(escape_controls("a\u{1b}[31mb\u{0}"), "a\\u{1b}[31mb\\u{0}");
        assert_eq!(escape_controls("Zürich 🙂"), "Zürich 🙂");
    }
}

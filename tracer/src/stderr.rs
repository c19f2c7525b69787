//! Messages on standard error (the start-up line, warnings, errors), each
//! written as one whole line in one write: standard error is unbuffered,
//! and `eprintln!` writes a formatted line in pieces, which, when both
//! streams go to one pipe (`2>&1`), splice into the lines of standard
//! output written meanwhile by the output thread. (The output's text
//! header is written before the start-up line: `Output::start` waits.)

use std::io::Write;

/// Writes `tcptrace: {msg}` and a newline to standard error, at once.
pub fn say(msg: impl std::fmt::Display) {
    line(&mut std::io::stderr().lock(), msg);
}

/// [`say`] to `w`.
pub fn line(w: &mut impl Write, msg: impl std::fmt::Display) {
    let s = format!("tcptrace: {msg}\n");
    // Nothing to be done if standard error is gone.
    let _ = w.write_all(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{
        record::Start,
        sinks::{Mode, Output, OutputSpec},
        views::Columns,
    };

    /// Each write call, as it came.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_message_is_one_write_of_a_whole_line() {
        let mut w = Writes::default();
        line(
            &mut w,
            format_args!("watching {} (hooks: {}); Ctrl-C to stop", "x", "y"),
        );
        let writes = w.0.lock().unwrap();
        assert_eq!(
            *writes,
            [b"tcptrace: watching x (hooks: y); Ctrl-C to stop\n".to_vec()]
        );
    }

    #[test]
    fn the_text_header_is_written_when_start_returns() {
        // What is said on standard error right after the start must come
        // after the header when both streams share a pipe.
        let w = Writes::default();
        let mut out = Output::to_writer(&OutputSpec::stdout(Mode::Text), w.clone()).unwrap();
        out.start(&Start::default(), Columns::States);
        let written: Vec<u8> = w.0.lock().unwrap().concat();
        let text = String::from_utf8(written).unwrap();
        assert!(text.starts_with("TIME(UTC)"), "{text:?}");
        assert!(text.ends_with("PREV_MS\n"), "{text:?}");
        out.close().unwrap();
    }
}

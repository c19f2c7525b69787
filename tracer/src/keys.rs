//! Keys pressed in `top`'s screen: what they mean ([`Key`]), and a thread
//! that reads them from the terminal (crossterm, in raw mode) for a source
//! to push through the pipeline's door as [`crate::pipeline::Input::Key`].
//!
//! Why keys are an input rather than state the screen keeps: what a key
//! changes (sort order, state filter, grouping) is a cut of the engine's
//! flow table, which only the pipeline holds; the view makes that cut
//! from the engine as it does on every refresh, and the screen stays a
//! sink that draws the records it is given. A key is pushed like any other
//! input, so live and replay handle it alike (a replay waits for keys at
//! the end of the recording until `q`), and a recording never holds one.

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `q`, Esc or Ctrl-C: end the run.
    Quit,
    /// `r`, `l`, `a`: sort by retransmits, handshake latency or age.
    Sort(SortBy),
    /// `s`: the next state filter.
    State,
    /// `g`: the next grouping.
    Group,
    /// `p`: freeze the table (or thaw it).
    Pause,
    /// The terminal changed size: draw again.
    Redraw,
}

impl Key {
    /// The key a terminal event means, if any.
    pub fn of(ev: &Event) -> Option<Self> {
        match ev {
            Event::Resize(..) => Some(Self::Redraw),
            Event::Key(k) if k.kind != KeyEventKind::Release => {
                if k.modifiers.contains(KeyModifiers::CONTROL) {
                    return match k.code {
                        KeyCode::Char('c' | 'd') => Some(Self::Quit),
                        KeyCode::Char('l') => Some(Self::Redraw),
                        _ => None,
                    };
                }
                match k.code {
                    KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Self::Quit),
                    KeyCode::Char('r') => Some(Self::Sort(SortBy::Retrans)),
                    KeyCode::Char('l') => Some(Self::Sort(SortBy::Latency)),
                    KeyCode::Char('a') => Some(Self::Sort(SortBy::Age)),
                    KeyCode::Char('s') => Some(Self::State),
                    KeyCode::Char('g') => Some(Self::Group),
                    KeyCode::Char('p' | ' ') => Some(Self::Pause),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// The one-line help the screen shows at its foot.
pub const HELP: &str = "q quit  r/l/a sort retrans/latency/age  s state  g group  p pause";

/// Starts a thread that reads keys from the terminal (which must be in
/// raw mode, as the screen sink puts it) until the receiver is dropped.
pub fn read_terminal() -> std::io::Result<UnboundedReceiver<Key>> {
    let (tx, rx) = unbounded_channel();
    std::thread::Builder::new()
        .name("tcptrace-keys".into())
        .spawn(move || {
            while !tx.is_closed() {
                // Wake now and then to notice that the run is over.
                match event::poll(std::time::Duration::from_millis(200)) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => break,
                }
                let Ok(ev) = event::read() else { break };
                if let Some(k) = Key::of(&ev)
                    && tx.send(k).is_err()
                {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Sort order of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// Most retransmits first.
    Retrans,
    /// Slowest handshake first (flows without one last).
    Latency,
    /// Oldest first.
    Age,
}

impl SortBy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Retrans => "retrans",
            Self::Latency => "latency",
            Self::Age => "age",
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyEvent;

    use super::*;

    fn key(c: KeyCode, m: KeyModifiers) -> Option<Key> {
        Key::of(&Event::Key(KeyEvent::new(c, m)))
    }

    #[test]
    fn keys_mean_what_the_help_line_says() {
        let none = KeyModifiers::NONE;
        assert_eq!(key(KeyCode::Char('q'), none), Some(Key::Quit));
        assert_eq!(key(KeyCode::Esc, none), Some(Key::Quit));
        assert_eq!(
            key(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Quit)
        );
        assert_eq!(
            key(KeyCode::Char('l'), none),
            Some(Key::Sort(SortBy::Latency))
        );
        assert_eq!(key(KeyCode::Char('s'), none), Some(Key::State));
        assert_eq!(key(KeyCode::Char('g'), none), Some(Key::Group));
        assert_eq!(key(KeyCode::Char('p'), none), Some(Key::Pause));
        assert_eq!(key(KeyCode::Char('x'), none), None);
        assert_eq!(Key::of(&Event::Resize(80, 24)), Some(Key::Redraw));
        for k in ["q quit", "s state", "g group", "p pause"] {
            assert!(HELP.contains(k), "{k}");
        }
    }
}

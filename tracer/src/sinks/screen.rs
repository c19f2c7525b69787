//! `top` on a terminal: the alternate screen (so that nothing piles up
//! in the scrollback and the shell's screen comes back at the end), the
//! table fitted to the terminal's height and width ([`super::top_table`]),
//! redrawn in place, with a footer of what is shown of how many and a
//! line of help for the keys. Drawn through ratatui, which writes only the
//! cells that changed, into the bytes of the output's next batch (so that
//! the writer thread still does the writing). The terminal is in raw mode
//! while the screen is up, so that keys arrive one by one
//! ([`crate::keys`] reads them); it is restored when the output closes,
//! also on an error.

use std::{
    io,
    sync::{Arc, Mutex},
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    style::{Modifier, Style},
    text::Line,
    widgets::Paragraph,
};

use super::{
    format::{Clock, ClockFmt},
    top_table::{self, thousands},
};
use crate::{keys::HELP, views::records::TopReport};

/// The bytes ratatui writes, taken out after each frame.
#[derive(Clone, Default)]
struct Bytes(Arc<Mutex<Vec<u8>>>);

impl Bytes {
    fn take_into(&self, out: &mut Vec<u8>) {
        out.append(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl io::Write for Bytes {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// See the module documentation.
pub struct Screen {
    term: Terminal<CrosstermBackend<Bytes>>,
    bytes: Bytes,
    /// The alternate screen is up and the terminal in raw mode.
    shown: bool,
    /// `leave` put the bytes that leave the alternate screen out.
    left: bool,
    /// What the terminal shows may differ from what ratatui believes (a
    /// frame was dropped): the next frame is drawn whole.
    stale: bool,
}

impl Screen {
    /// A screen on the terminal standard output is. Nothing changes on the
    /// terminal until the first frame: a run that fails to start leaves it
    /// as it was, and Ctrl-C before then is a plain SIGINT.
    pub fn open() -> io::Result<Self> {
        let bytes = Bytes::default();
        Ok(Self {
            term: Terminal::new(CrosstermBackend::new(bytes.clone()))?,
            bytes,
            shown: false,
            left: false,
            stale: false,
        })
    }

    /// Draws `t` (with `lost` events said so far) into `out`. The first
    /// time, puts the terminal in raw mode (keys one by one, no echo),
    /// enters the alternate screen and clears it (whatever was printed
    /// before, the start-up line included, is not ours to keep).
    pub fn draw(&mut self, out: &mut Vec<u8>, clock: &Clock, t: &TopReport, lost: u64) {
        if !self.shown {
            // Without raw mode (no terminal to set) keys wait for Enter;
            // the screen still works.
            let _ = enable_raw_mode();
            self.shown = true;
            self.stale = true;
            let _ = execute!(self.term.backend_mut(), EnterAlternateScreen, Hide);
        }
        if std::mem::take(&mut self.stale) {
            let _ = self.term.clear();
        }
        let _ = self.term.draw(|f| {
            let area = f.area();
            let lines = lines(t, clock, area.width.into(), area.height.into(), lost);
            f.render_widget(Paragraph::new(lines), area);
        });
        self.bytes.take_into(out);
    }

    /// A frame never reached the terminal: draw the next one whole.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Leaves the alternate screen (its bytes go to `out`); raw mode ends
    /// when the screen is dropped, once they are written.
    pub fn leave(&mut self, out: &mut Vec<u8>) {
        if self.shown && !self.left {
            self.left = true;
            let _ = execute!(self.term.backend_mut(), Show, LeaveAlternateScreen);
            self.bytes.take_into(out);
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.shown {
            // Not left through the output (an error or a panic unwound
            // past `leave`): leave it here, so the shell is usable.
            if !self.left {
                let _ = execute!(io::stdout(), Show, LeaveAlternateScreen);
            }
            let _ = disable_raw_mode();
        }
    }
}

/// The screen's lines for a `width` x `height` terminal: the census, the
/// namespaces' census lines (if several), what is shown, the table cut to
/// the rows that fit, the footer and the help line.
pub fn lines(
    t: &TopReport,
    clock: &Clock,
    width: usize,
    height: usize,
    lost: u64,
) -> Vec<Line<'static>> {
    let fit = |s: String| -> String { s.chars().take(width).collect() };
    let mut top: Vec<Line> = Vec::new();
    let census = |c: &[(crate::event::TcpState, u64)]| {
        c.iter()
            .map(|(s, n)| format!("{}={}", s.name(), thousands(*n)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    top.push(Line::from(fit(format!(
        "{} sockets: {}",
        clock.time_of_day(t.ts_ns),
        census(&t.census)
    ))));
    if t.census_by_netns.len() > 1 {
        for (ns, c) in t.census_by_netns.iter().take(3) {
            top.push(Line::from(fit(format!("  netns {ns}: {}", census(c)))));
        }
    }
    let states: Vec<&str> = t.states.iter().map(|s| s.name()).collect();
    top.push(Line::styled(
        fit(format!(
            "sort {}  state {}  group {}{}",
            t.sort.name(),
            if states.is_empty() {
                "all".into()
            } else {
                states.join(",")
            },
            t.group.map_or("none", |g| g.name()),
            if t.paused {
                "  [PAUSED: p to go on]"
            } else {
                ""
            }
        )),
        Style::default().add_modifier(Modifier::DIM),
    ));
    let (head, rows) = match t.group {
        Some(_) => top_table::group_lines(t, width),
        None => top_table::flow_lines(t, width),
    };
    // Below the table: the footer and the help line.
    let room = height.saturating_sub(top.len() + 1 + 2);
    let shown = rows.len().min(room);
    let mut lines = top;
    lines.push(Line::styled(
        head,
        Style::default().add_modifier(Modifier::REVERSED),
    ));
    lines.extend(rows.into_iter().take(shown).map(Line::from));
    while lines.len() + 2 < height {
        lines.push(Line::from(""));
    }
    let lost = if lost > 0 {
        format!("; {} events lost", thousands(lost))
    } else {
        String::new()
    };
    lines.push(Line::from(fit(format!(
        "{}{lost}",
        top_table::footer(t, shown)
    ))));
    lines.push(Line::styled(
        fit(HELP.into()),
        Style::default().add_modifier(Modifier::DIM),
    ));
    lines.truncate(height);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        engine::{
            Engine,
            tests::{owner, state, tuple},
        },
        event::TcpState::*,
        views::{
            testing::context,
            top::{GroupBy, SortBy, Top},
        },
    };

    /// 60 flows of long IPv6 endpoints in two namespaces, owned by a
    /// process with a long name.
    fn busy() -> Engine {
        let mut e = Engine::default();
        let o = owner(4_194_303, "a-very-long-nam");
        for i in 0..60u16 {
            let mut t = tuple(40_000 + i, 443);
            t.family = crate::event::Family::V6;
            t.laddr = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1".parse().unwrap();
            t.raddr = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
            t.netns = 4_026_532_000 + u32::from(i % 2);
            let s = u64::from(i) + 1;
            e.process(&state(s, s, t, o, Close, SynSent));
            e.process(&state(s + 100, s, t, o, SynSent, Established));
        }
        e
    }

    #[test]
    fn fits_any_terminal_and_says_what_it_shows() {
        let e = busy();
        for group in [None, Some(GroupBy::Remote)] {
            let mut top = Top::new(SortBy::Retrans, 1, 500, true, true);
            top.group = group;
            let r = top.report(&e, 1_000, &context());
            for (w, h) in [(80, 24), (200, 50), (40, 10), (120, 5)] {
                let lines = lines(&r, &Clock::default(), w, h, 3);
                assert!(lines.len() <= h, "{w}x{h}: {} lines", lines.len());
                for l in &lines {
                    assert!(l.width() <= w, "{w}x{h}: {l:?} is {} wide", l.width());
                }
                let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
                if h >= 10 {
                    assert_eq!(text[h - 1], HELP.chars().take(w).collect::<String>());
                    // Census, 2 namespaces, what is shown, the header;
                    // the footer and help: the rest is rows.
                    let rows = h - 7;
                    let want = match group {
                        None => format!("{rows} of 60 flows; 3 events lost"),
                        Some(_) => "2 of 2 groups by remote of 60 flows; 3 events lost".into(),
                    };
                    assert!(
                        text[h - 2].starts_with(&want[..want.len().min(w)]),
                        "{w}x{h}: {text:#?}"
                    );
                }
            }
        }
    }

    #[test]
    fn addresses_come_last_and_keep_their_port() {
        let e = busy();
        let r = Top::new(SortBy::Retrans, 1, 5, true, false).report(&e, 1_000, &context());
        let (head, rows) = top_table::flow_lines(&r, 80);
        assert!(head.starts_with("    PID COMM"), "{head}");
        assert!(head.trim_end().ends_with("REMOTE"), "{head}");
        assert!(rows[0].ends_with(":443"), "{}", rows[0]);
        assert!(
            rows[0].contains('…'),
            "shortened in the middle: {}",
            rows[0]
        );
        let (_, wide) = top_table::flow_lines(&r, 200);
        assert!(
            wide[0].contains("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:443"),
            "{}",
            wide[0]
        );
        assert!(wide[0].contains("4026532000"), "NETNS: {}", wide[0]);
    }
}

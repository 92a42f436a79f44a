//! Header: target identity, uptime, state, tree counts, agent status and system figures,
//! then the last diagnosis's verdict once there is one, and the limited-mode banner.

use crate::state::{AgentStatus, Screen};
use crate::ui::{fmt, theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

/// `verdict`: the last diagnosis's one line (see `why::verdict_line`), drawn third.
pub fn render(frame: &mut Frame, area: Rect, s: &Screen, verdict: Option<Line<'static>>) {
    let key = |s: &str| Span::styled(s.to_string(), theme::header_key());
    // Narrow terminals get short labels, so the agent's state still fits on the line.
    let narrow = area.width < 110;
    let label = |long: &'static str, short: &'static str| if narrow { short } else { long };
    let mut first = Vec::new();
    if let Some(bar) = &s.view.replay {
        first.push(Span::styled(
            format!(
                "REPLAY {} {}x {} ",
                super::scrub::clock(bar.pos_ms),
                super::scrub::speed(bar.speed),
                if bar.paused { "paused" } else { "playing" }
            ),
            theme::bad(),
        ));
    }
    first.push(Span::styled("lifecycle-top ", theme::title()));
    let target = s.snapshot().and_then(|snap| snap.target_info());
    first.push(key("pid "));
    first.push(Span::raw(s.target_pid().to_string()));
    if let Some(t) = target {
        let cmd = if t.cmdline.is_empty() {
            format!("[{}]", t.name)
        } else {
            t.cmdline.join(" ")
        };
        first.push(Span::raw(format!("  {cmd}")));
    }
    let mut second = Vec::new();
    match (s.target_exit(), target) {
        (Some(exit), _) => {
            let ago = s.view.now_unix_ms.saturating_sub(exit.at_unix_ms) as f64 / 1000.0;
            second.push(Span::styled(
                format!(
                    "target {} {} ago ",
                    fmt::exit(exit.status),
                    fmt::duration_secs(ago)
                ),
                theme::bad(),
            ));
        }
        (None, Some(t)) => {
            second.push(key("up "));
            second.push(Span::raw(format!("{} ", fmt::duration_secs(t.age_secs))));
            second.push(key(label("state ", "")));
            second.push(Span::raw(format!("{} ", t.state.as_char())));
        }
        (None, None) => second.push(Span::styled("attaching… ", theme::dim())),
    }
    let c = s.counts();
    second.push(key(label("threads ", "thr ")));
    second.push(Span::raw(format!("{} ", c.threads)));
    second.push(key(label("children ", "ch ")));
    second.push(Span::raw(format!("{} ", c.children)));
    second.push(key(label("orphans ", "orph ")));
    let orphan_style = if c.orphans > 0 {
        theme::orphan()
    } else {
        Default::default()
    };
    second.push(Span::styled(format!("{} ", c.orphans), orphan_style));
    second.push(key(label("exited ", "gone ")));
    second.push(Span::raw(format!("{}  ", c.exited)));
    second.push(key("agent: "));
    let agent = s.agent_status();
    let agent_style = match &agent {
        AgentStatus::Connected(_) => theme::ok(),
        AgentStatus::Lost(_) => theme::warn(),
        _ => theme::dim(),
    };
    second.push(Span::styled(
        super::agent_panel::status_text(&agent),
        agent_style,
    ));
    if let Some(sys) = s.snapshot().map(|snap| &snap.system) {
        second.push(Span::styled(
            format!(
                "   {} cpus  mem {}/{}  load {:.2}",
                sys.cpus,
                fmt::bytes(sys.mem_total_bytes.saturating_sub(sys.mem_available_bytes)),
                fmt::bytes(sys.mem_total_bytes),
                sys.load_avg[0]
            ),
            theme::dim(),
        ));
    }
    let mut text = vec![Line::from(first), Line::from(second)];
    text.extend(verdict);
    // Limited mode (missing rights): what is missing and the remedy, on one line.
    text.extend(
        crate::access::banner(&s.model.limitations).map(|l| Line::styled(l, theme::warn())),
    );
    frame.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::BOTTOM)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use crate::access::{Limitation, Missing, Reason};
    use crate::session::CoreEvent;
    use crate::state::{fixture, fixture::ev};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn limited_mode_banner_is_one_header_line() {
        let mut d = fixture::dashboard(None);
        d.apply(&ev(CoreEvent::Limitations {
            limitations: vec![Limitation {
                pid: 812,
                name: "worker".into(),
                reason: Reason::NotDumpable,
                missing: vec![Missing::NativeFrames, Missing::WaitTargets],
                remedy: "run lifecycle-top with sudo (CAP_SYS_PTRACE)".into(),
            }],
        }));
        let mut terminal = Terminal::new(TestBackend::new(150, 5)).expect("test terminal");
        terminal
            .draw(|f| super::render(f, f.area(), &d.screen(), None))
            .expect("draw");
        insta::assert_snapshot!(terminal.backend());
    }
}

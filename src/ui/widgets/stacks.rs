//! The stack view pane: one captured [`StackSnapshot`] drawn as text, thread by thread,
//! each stack labelled with its source (python agent / py-spy / native / kernel) so the
//! user knows what it is worth. Scrolls vertically; draws borrowed data, does no I/O.

use crate::stacks::cli::{frame_text, kernel_line};
use crate::stacks::{SourceKind, StackSnapshot};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

fn source_style(s: SourceKind) -> Style {
    match s {
        SourceKind::AgentPython
        | SourceKind::PySpyPython
        | SourceKind::AgentJs
        | SourceKind::Java => Style::new().fg(Color::Green),
        SourceKind::Native => Style::new().fg(Color::Cyan),
        SourceKind::Kernel => Style::new().fg(Color::Magenta),
    }
}

/// The text lines of a snapshot (also the line count for scroll clamping).
pub fn lines(snap: &StackSnapshot) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let mut out = Vec::new();
    for e in &snap.errors {
        out.push(Line::styled(
            format!("! [{}] {}", e.source.label(), e.message),
            Style::new().fg(Color::Yellow),
        ));
    }
    for t in &snap.threads {
        out.push(Line::from(vec![
            Span::styled(
                format!("{} {}", t.tid, t.name),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!("  {}", kernel_line(t)), dim),
        ]));
        for st in &t.stacks {
            let note = st
                .note
                .as_deref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            out.push(Line::styled(
                format!("  [{}]{note}", st.source.label()),
                source_style(st.source),
            ));
            for f in &st.frames {
                // A Java monitor line (`- waiting to lock <0x..> (a Foo)`) sits under its frame.
                if st.source == SourceKind::Java && f.function.starts_with("- ") {
                    out.push(Line::styled(
                        format!("      {}", f.function),
                        Style::new().fg(Color::Yellow),
                    ));
                    continue;
                }
                out.push(Line::raw(format!("    {}", frame_text(f))));
            }
        }
        if let Some(k) = &t.kernel
            && !k.kernel_stack.is_empty()
        {
            out.push(Line::styled(
                "  [kernel]".to_string(),
                source_style(SourceKind::Kernel),
            ));
            for f in &k.kernel_stack {
                out.push(Line::styled(format!("    {f}"), dim));
            }
        }
        for e in &t.errors {
            out.push(Line::styled(
                format!("  ! [{}] {}", e.source.label(), e.message),
                Style::new().fg(Color::Yellow),
            ));
        }
    }
    for t in &snap.tasks {
        out.push(Line::from(vec![
            Span::styled(
                format!("task \"{}\"", t.name),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!("  id {:#x} loop {:#x}", t.id, t.loop_id), dim),
        ]));
        if let Some(a) = &t.awaiting {
            out.push(Line::raw(format!("  awaits {a}")));
        }
        if let Some(c) = &t.created_at {
            out.push(Line::styled(format!("  created at {c}"), dim));
        }
        out.push(Line::styled(
            "  [await chain (agent), innermost first]".to_string(),
            source_style(SourceKind::AgentPython),
        ));
        if t.frames.is_empty() {
            out.push(Line::styled("    (no coroutine frames)".to_string(), dim));
        }
        for f in &t.frames {
            out.push(Line::raw(format!("    {}", frame_text(f))));
        }
    }
    out
}

/// Draw `snap` into `area`, starting `scroll` lines down (clamped to the content).
pub fn render(frame: &mut Frame, area: Rect, snap: &StackSnapshot, scroll: u16) {
    let lines = lines(snap);
    let max = u16::try_from(lines.len().saturating_sub(1)).unwrap_or(u16::MAX);
    let what = match (snap.threads.len(), snap.tasks.len()) {
        (n, 0) => format!("{n} threads"),
        (0, 1) => "1 task".to_string(),
        (0, t) => format!("{t} tasks"),
        (n, t) => format!("{n} threads · {t} tasks"),
    };
    let title = format!(
        " Stacks pid {} · {what} · {:.1} ms ",
        snap.pid,
        snap.capture_us as f64 / 1000.0
    );
    let block = Block::new().borders(Borders::ALL).title(Span::styled(
        title,
        Style::new().add_modifier(Modifier::BOLD),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll.min(max), 0)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunState, WaitPoint};
    use crate::stacks::{Frame as SFrame, KernelView, SourceError, SourceStack, ThreadStacks};
    use ratatui::{Terminal, backend::TestBackend};

    fn fixture() -> StackSnapshot {
        let f = |name: &str, file: Option<&str>, line: Option<u32>| SFrame {
            function: name.into(),
            file: file.map(Into::into),
            line,
            ..SFrame::default()
        };
        let kernel = KernelView {
            state: RunState::Sleeping,
            wait: WaitPoint {
                wchan: Some("futex_wait_queue".into()),
                syscall_nr: Some(202),
                syscall: Some("futex".into()),
                syscall_args: vec![0x5555, 0x80, 0, 0, 0, 0],
            },
            described_args: vec!["futex 0x5555 WAIT".into()],
            user_sp: Some(0x7ffc0000),
            user_pc: Some(0x7f000000),
            cpu_ticks: 3,
            voluntary_ctxt_switches: Some(12),
            nonvoluntary_ctxt_switches: Some(0),
            tracer_pid: 0,
            kernel_stack: vec!["futex_wait_queue+0x60/0x90".into()],
        };
        StackSnapshot {
            pid: 4242,
            taken_at_unix_ms: 0,
            capture_us: 1500,
            errors: vec![],
            threads: vec![ThreadStacks {
                tid: 4243,
                name: "worker".into(),
                kernel: Some(kernel),
                stacks: vec![
                    SourceStack {
                        source: SourceKind::AgentPython,
                        frames: vec![f("wait_forever", Some("app.py"), Some(12))],
                        note: None,
                    },
                    SourceStack {
                        source: SourceKind::Native,
                        frames: vec![
                            SFrame {
                                module: Some("libc.so.6".into()),
                                ..f("__futex_abstimed_wait_common", None, None)
                            },
                            f("blocked_on_mutex", Some("main.rs"), Some(30)),
                        ],
                        note: Some("ptrace-free".into()),
                    },
                ],
                errors: vec![SourceError {
                    source: SourceKind::PySpyPython,
                    message: "not needed".into(),
                }],
            }],
            tasks: Vec::new(),
        }
    }

    fn draw(scroll: u16) -> Terminal<TestBackend> {
        let mut term = Terminal::new(TestBackend::new(70, 12)).expect("terminal");
        let snap = fixture();
        term.draw(|f| render(f, f.area(), &snap, scroll))
            .expect("draw");
        term
    }

    #[test]
    fn stack_pane_shows_sources_and_frames() {
        // The state clamps the scroll with its own count: keep the two in step.
        assert_eq!(
            crate::state::stack_line_count(&fixture()),
            lines(&fixture()).len()
        );
        insta::assert_snapshot!(draw(0).backend());
    }

    #[test]
    fn stack_pane_shows_java_frames_with_their_monitor_lines() {
        // A real dump (tests/fixtures/jvm): the deadlocked thread, joined as a capture would.
        let dump = crate::jvm::parse::parse(include_str!(
            "../../../tests/fixtures/jvm/deadlock_hook.txt"
        ));
        let nid = dump
            .threads
            .iter()
            .find(|t| t.name == "lt-dead-1")
            .and_then(|t| t.nid)
            .expect("lt-dead-1");
        let mut snap = fixture();
        snap.threads[0].tid = nid;
        snap.threads[0].name = "lt-dead-1".into();
        snap.threads[0].stacks.truncate(0);
        snap.threads[0].errors.clear();
        crate::jvm::join_into(Ok(&dump), &mut snap.threads, &mut snap.errors);
        assert_eq!(crate::state::stack_line_count(&snap), lines(&snap).len());
        let mut term = Terminal::new(TestBackend::new(100, 12)).expect("terminal");
        term.draw(|f| render(f, f.area(), &snap, 0)).expect("draw");
        insta::assert_snapshot!(term.backend());
    }

    #[test]
    fn stack_pane_shows_a_task_await_chain_after_the_threads() {
        use crate::stacks::tasks::TaskStack;
        let mut snap = fixture();
        snap.threads.clear();
        let frame = |function: &str, line| SFrame {
            function: function.into(),
            file: Some("app.py".into()),
            line: Some(line),
            ..SFrame::default()
        };
        snap.tasks = vec![
            TaskStack {
                id: 0x7f01,
                loop_id: 0x7e00,
                name: "shipper".into(),
                frames: vec![frame("ship", 12), frame("run", 40)],
                awaiting: Some("task \"packer\" at app.py:12".into()),
                created_at: Some("app.py:35".into()),
            },
            TaskStack {
                id: 0x7f02,
                loop_id: 0x7e00,
                name: "packer".into(),
                frames: Vec::new(),
                awaiting: None,
                created_at: None,
            },
        ];
        assert_eq!(crate::state::stack_line_count(&snap), lines(&snap).len());
        let mut term = Terminal::new(TestBackend::new(70, 12)).expect("terminal");
        term.draw(|f| render(f, f.area(), &snap, 0)).expect("draw");
        insta::assert_snapshot!(term.backend());
    }

    #[test]
    fn stack_pane_scrolls_and_clamps() {
        insta::assert_snapshot!(draw(3).backend());
        // Far past the end: clamped to the last line, never blank.
        let far = format!("{}", draw(500).backend());
        assert!(far.contains("not needed"), "{far}");
    }
}

//! End to end (issue 10, "task stacks in the dashboard"): the real binary in a pty on the
//! demo (a real asyncio app with the agent): Enter on a task opens its await chain, innermost
//! first, and `S` takes the pending tasks' chains beside the threads' stacks.

mod pty_util;

use pty_util::{Session, alive, demo_tree, wait_until};

#[test]
fn enter_on_a_task_shows_its_await_chain_and_big_s_adds_the_pending_tasks() {
    let mut s = Session::start_with(&["demo", "--interval", "100"], 200, 50, &[]);
    let (demo, stubborn, helper) = demo_tree(&s);
    s.wait_for("TRACKED");
    s.wait_for("why (");
    // Threads -> Tree -> Tasks.
    s.press(b"\t");
    s.press(b"\t");
    s.press(b"\r");
    s.wait_for("[await chain (agent), innermost first]");
    s.wait_for("await chain of task");
    let text = s.contents();
    assert!(text.contains("Stacks pid"), "{text}");
    assert!(text.contains("task \""), "{text}");
    // The chain names the demo's own source, not only asyncio internals.
    assert!(text.contains("demo_async.py:"), "{text}");
    s.press(b"\x1b");
    s.wait_gone("[await chain (agent)");
    s.press(b"S");
    s.wait_text("S took threads and tasks", |t| {
        t.contains("and await chains of") && t.contains(" threads · ") && t.contains(" tasks · ")
    });
    s.quit_killing();
    wait_until("the whole demo tree is gone", || {
        !alive(demo) && !alive(stubborn) && !alive(helper)
    });
}

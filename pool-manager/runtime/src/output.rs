//! Where lines of output go: the serial console, or, while a command from
//! the control channel, a tenant or a `repeat` runs, a capture buffer that
//! becomes its answer. The manager's own lines (a server replaced, a loan
//! ended) go the same way, so they reach whoever ran the command that
//! caused them. Characters outside printable ASCII (from a config file,
//! say) are shown escaped, never sent raw.

use alloc::format;
use alloc::string::String;
use tarn_rt::abi::control;
use tarn_rt::println;

/// The capture of the command running now, if its output is captured.
static CAPTURE: spin::Mutex<Option<String>> = spin::Mutex::new(None);

/// `println!` for command and manager output: captured while a captured
/// command runs, the console otherwise.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(&alloc::format!($($arg)*))
    };
}
pub(crate) use say;

/// One line of command output (see [`say!`]). Characters outside printable
/// ASCII (from a config file, say) are shown escaped, never sent raw.
pub fn say_line(text: &str) {
    let escaped = format!("{}", control::Escaped(text));
    let text = escaped.as_str();
    let mut capture = CAPTURE.lock();
    match capture.as_mut() {
        Some(buffer) => {
            buffer.push_str(text);
            buffer.push('\n');
        }
        None => {
            drop(capture);
            println!("{text}");
        }
    }
}

/// Starts capturing output; returns the capture it interrupts (commands
/// nest: a `repeat` inside a control-channel command), for [`end_capture`].
pub fn begin_capture() -> Option<String> {
    CAPTURE.lock().replace(String::new())
}

/// Ends the capture [`begin_capture`] started, restoring `outer`; returns
/// what was captured.
pub fn end_capture(outer: Option<String>) -> String {
    core::mem::replace(&mut *CAPTURE.lock(), outer).unwrap_or_default()
}

/// Whether output is captured now.
pub fn capturing() -> bool {
    CAPTURE.lock().is_some()
}

/// Adds one line to the capture, unescaped (a JSON document); `false` when
/// nothing is captured.
pub fn capture_line(text: &str) -> bool {
    match CAPTURE.lock().as_mut() {
        Some(buffer) => {
            buffer.push_str(text);
            buffer.push('\n');
            true
        }
        None => false,
    }
}

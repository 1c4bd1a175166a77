//! `print!` and `println!` over `DebugWrite`: the text is formatted into a
//! buffer of [`MAX_DEBUG_WRITE`] bytes and written with one `DebugWrite`, so
//! lines of different threads never interleave. Longer text goes out in
//! several writes, split at character boundaries.

use crate::syscall;
use core::fmt::{self, Write};
use tarn_ipc_schema::MAX_DEBUG_WRITE;

/// Collects formatted text and writes it in chunks of at most
/// [`MAX_DEBUG_WRITE`] bytes.
pub struct LineWriter<F: FnMut(&str)> {
    buffer: [u8; MAX_DEBUG_WRITE],
    length: usize,
    sink: F,
}

impl<F: FnMut(&str)> LineWriter<F> {
    /// A writer that hands each chunk to `sink`.
    pub fn new(sink: F) -> Self {
        LineWriter {
            buffer: [0; MAX_DEBUG_WRITE],
            length: 0,
            sink,
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        if self.length > 0 {
            // The buffer only ever receives whole characters of `&str`s.
            let text =
                core::str::from_utf8(&self.buffer[..self.length]).unwrap_or("<invalid utf-8>");
            (self.sink)(text);
            self.length = 0;
        }
    }
}

impl<F: FnMut(&str)> Write for LineWriter<F> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        while !text.is_empty() {
            let room = MAX_DEBUG_WRITE - self.length;
            if text.len() <= room {
                self.buffer[self.length..self.length + text.len()].copy_from_slice(text.as_bytes());
                self.length += text.len();
                return Ok(());
            }
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.buffer[self.length..self.length + cut].copy_from_slice(&text.as_bytes()[..cut]);
            self.length += cut;
            text = &text[cut..];
            self.flush();
        }
        Ok(())
    }
}

/// Formats `args` (and a newline when `newline`) and writes it to the console.
pub fn print_args(args: fmt::Arguments, newline: bool) {
    let mut writer = LineWriter::new(|chunk| {
        // Nothing useful can be done if the console refuses the text.
        let _ = syscall::debug_write(chunk);
    });
    let _ = writer.write_fmt(args);
    if newline {
        let _ = writer.write_str("\n");
    }
    writer.flush();
}

/// Prints to the kernel console (one `DebugWrite` per call, up to 512 bytes).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::print::print_args(format_args!($($arg)*), false)
    };
}

/// Prints a line to the kernel console (one `DebugWrite` per line, up to 512 bytes).
#[macro_export]
macro_rules! println {
    () => {
        $crate::print::print_args(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::print::print_args(format_args!($($arg)*), true)
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn collect(text: &str) -> Vec<String> {
        let mut chunks = Vec::new();
        {
            let mut writer = LineWriter::new(|chunk: &str| chunks.push(String::from(chunk)));
            writer.write_str(text).unwrap();
            writer.flush();
        }
        chunks
    }

    #[test]
    fn short_text_is_one_write() {
        assert_eq!(collect("hello\n"), ["hello\n"]);
    }

    #[test]
    fn long_text_splits_at_512_bytes() {
        let text: String = "x".repeat(1100);
        let chunks = collect(&text);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [512, 512, 76]
        );
    }

    #[test]
    fn splits_never_cut_a_character() {
        let mut text: String = "x".repeat(511);
        text.push('é');
        text.push('y');
        let chunks = collect(&text);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), 511);
        assert_eq!(chunks[1], "éy");
    }
}

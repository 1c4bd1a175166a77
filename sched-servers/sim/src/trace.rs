//! Chrome/Perfetto trace JSON: one track per CPU, one slice per entry that
//! ran, instant marks for preemptions and deadline misses. Open it in
//! <https://ui.perfetto.dev> or `chrome://tracing`.

use std::io::{self, Write};

use crate::report::Report;

/// Microseconds with nanosecond precision, as the trace format wants.
fn micros(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// Escapes a string for JSON.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Writes `report`'s slices and marks as a Chrome trace (JSON object form).
/// The report must come from a scenario with `record_trace` set, or the
/// trace has only its track names.
pub fn write_chrome_trace(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
    writeln!(
        out,
        "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{{\"name\":\"tarn-sim {}\"}}}}",
        escape(&report.policy)
    )?;
    let cpus = report
        .slices
        .iter()
        .map(|s| s.cpu + 1)
        .chain(report.marks.iter().map(|m| m.cpu + 1))
        .max()
        .unwrap_or(0)
        .max(report.cpus);
    for cpu in 0..cpus {
        writeln!(
            out,
            ",{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{cpu},\"args\":{{\"name\":\"CPU {cpu}\"}}}}"
        )?;
        writeln!(
            out,
            ",{{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":{cpu},\"args\":{{\"sort_index\":{cpu}}}}}"
        )?;
    }
    for slice in &report.slices {
        let domain = &report.domains[slice.domain];
        writeln!(
            out,
            ",{{\"name\":\"{} t{}\",\"cat\":\"run\",\"ph\":\"X\",\"pid\":1,\"tid\":{},\"ts\":{},\"dur\":{},\"args\":{{\"domain\":{},\"thread\":{}}}}}",
            escape(&domain.name),
            slice.thread.0,
            slice.cpu,
            micros(slice.start_ns),
            micros(slice.end_ns - slice.start_ns),
            domain.id.0,
            slice.thread.0
        )?;
    }
    for mark in &report.marks {
        writeln!(
            out,
            ",{{\"name\":\"{}\",\"cat\":\"policy\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":{},\"ts\":{}}}",
            escape(&mark.what),
            mark.cpu,
            micros(mark.time_ns)
        )?;
    }
    writeln!(out, "]}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_keep_nanoseconds() {
        assert_eq!(micros(1_234_567), "1234.567");
        assert_eq!(micros(5), "0.005");
    }

    #[test]
    fn escapes_quotes_and_controls() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}

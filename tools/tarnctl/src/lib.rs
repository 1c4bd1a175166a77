//! The control channel's host side: sends one console command line as a
//! `tarn_ipc_schema::control` frame and collects the answer.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};
use tarn_ipc_schema::control::{self, ControlReply, ControlRequest, MAX_FRAME};

/// What a command answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Whether it succeeded (no `error:` line).
    pub ok: bool,
    /// Its output.
    pub output: String,
}

/// Translates the tool's `--json` to the console's long forms: `list` and
/// `cpupool-list` take `-l`, `top` takes `--json`.
pub fn command_line(words: &[String], json: bool) -> String {
    let mut words: Vec<String> = words.to_vec();
    if json {
        match words.first().map(String::as_str) {
            Some("list" | "cpupool-list") => words.push("-l".into()),
            Some("top") => words.push("--json".into()),
            _ => {}
        }
    }
    words.join(" ")
}

/// Sends `line` as request `id` on `stream` and reads frames until its
/// `Done` (or `timeout` passes, or the stream ends).
pub fn run<S: Read + Write>(
    stream: &mut S,
    id: u32,
    line: &str,
    timeout: Duration,
) -> io::Result<Answer> {
    let mut buffer = [0u8; MAX_FRAME];
    let frame = control::encode(&ControlRequest::Run { id, line }, &mut buffer)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "command too long"))?;
    stream.write_all(frame)?;
    stream.flush()?;
    let deadline = Instant::now() + timeout;
    let mut output = String::new();
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "channel closed",
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        frame.push(byte[0]);
        if byte[0] != 0 {
            if frame.len() > MAX_FRAME {
                frame.clear();
            }
            continue;
        }
        let mut whole = std::mem::take(&mut frame);
        match control::decode::<ControlReply>(&mut whole) {
            Some(ControlReply::Output { id: got, text }) if got == id || got == 0 => {
                output.push_str(text)
            }
            Some(ControlReply::Done { id: got, ok }) if got == id || got == 0 => {
                return Ok(Answer { ok, output })
            }
            // Another request's answer, or noise before the first frame.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A fake machine: records what was written, answers with canned frames.
    struct Fake {
        written: Vec<u8>,
        answer: VecDeque<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.answer.pop_front() {
                Some(b) => {
                    out[0] = b;
                    Ok(1)
                }
                None => Ok(0),
            }
        }
    }

    impl Write for Fake {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame(reply: &ControlReply) -> Vec<u8> {
        let mut buffer = [0u8; MAX_FRAME];
        control::encode(reply, &mut buffer).unwrap().to_vec()
    }

    #[test]
    fn a_request_goes_out_and_its_answer_is_collected() {
        let mut answer = vec![0x55, 0x13]; // noise: skipped at the first 0
        answer.push(0);
        answer.extend(frame(&ControlReply::Output { id: 9, text: "[{" }));
        answer.extend(frame(&ControlReply::Output {
            id: 8,
            text: "other",
        }));
        answer.extend(frame(&ControlReply::Output {
            id: 9,
            text: "}]\n",
        }));
        answer.extend(frame(&ControlReply::Done { id: 9, ok: true }));
        let mut fake = Fake {
            written: Vec::new(),
            answer: answer.into(),
        };
        let got = run(&mut fake, 9, "list -l", Duration::from_secs(5)).unwrap();
        assert_eq!(
            got,
            Answer {
                ok: true,
                output: "[{}]\n".into()
            }
        );
        let mut sent = fake.written.clone();
        assert_eq!(
            control::decode::<ControlRequest>(&mut sent),
            Some(ControlRequest::Run {
                id: 9,
                line: "list -l"
            })
        );
    }

    #[test]
    fn json_means_the_long_forms() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&words(&["list"]), true), "list -l");
        assert_eq!(
            command_line(&words(&["cpupool-list"]), true),
            "cpupool-list -l"
        );
        assert_eq!(
            command_line(&words(&["top", "-d", "500"]), true),
            "top -d 500 --json"
        );
        assert_eq!(command_line(&words(&["info"]), true), "info");
        assert_eq!(command_line(&words(&["list"]), false), "list");
    }
}

//! The control channel's host side: sends one console command line as a
//! `tarn_ipc_schema::control` frame and collects the answer. Frames are
//! read with the channel's [`FrameReader`] (a 0 before every frame ends
//! whatever a previous client left half-written), replies to other
//! requests are skipped, id 0 included (the manager's answer to such
//! leftover garbage), and the text is escaped once more before it is
//! printed.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};
use tarn_ipc_schema::control::{
    self, ControlReply, ControlRequest, Escaped, FrameReader, Received, MAX_FRAME,
};

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

/// Sends `line` as request `id` (not 0) on `stream` and reads frames until
/// its `Done` (or `timeout` passes, or the stream ends). The output comes
/// back escaped: printable ASCII and line breaks only.
pub fn run<S: Read + Write>(
    stream: &mut S,
    id: u32,
    line: &str,
    timeout: Duration,
) -> io::Result<Answer> {
    if id == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "request id 0 is the manager's id for garbled frames",
        ));
    }
    let mut buffer = [0u8; MAX_FRAME];
    let frame = control::encode(&ControlRequest::Run { id, line }, &mut buffer)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "command too long"))?;
    exchange(stream, id, frame, timeout)
}

/// Sends policy server `elf` as policy `name` (`tarnctl load-policy`), in
/// pieces of [`control::MAX_POLICY_CHUNK`] bytes as request `id`, each
/// waiting for its answer; stops at the first refusal. The answer is the
/// last piece's (or the refusal).
pub fn load_policy<S: Read + Write>(
    stream: &mut S,
    id: u32,
    name: &str,
    elf: &[u8],
    timeout: Duration,
) -> io::Result<Answer> {
    let total = u32::try_from(elf.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    if elf.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty file"));
    }
    let mut answer = Answer {
        ok: false,
        output: String::new(),
    };
    for (index, chunk) in elf.chunks(control::MAX_POLICY_CHUNK).enumerate() {
        let offset = u32::try_from(index * control::MAX_POLICY_CHUNK)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        let request = ControlRequest::LoadPolicy {
            id,
            name,
            total,
            offset,
            chunk,
        };
        let mut buffer = [0u8; MAX_FRAME];
        let frame = control::encode(&request, &mut buffer)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        answer = exchange(stream, id, frame, timeout)?;
        if !answer.ok {
            break;
        }
    }
    Ok(answer)
}

/// Writes `frame` (request `id`) and collects the answer to it.
fn exchange<S: Read + Write>(
    stream: &mut S,
    id: u32,
    frame: &[u8],
    timeout: Duration,
) -> io::Result<Answer> {
    stream.write_all(frame)?;
    stream.flush()?;
    let deadline = Instant::now() + timeout;
    let mut output = String::new();
    let mut reader = FrameReader::new();
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
        let Some(Received::Frame(frame)) = reader.push(byte[0]) else {
            continue;
        };
        match control::decode::<ControlReply>(frame) {
            Some(ControlReply::Output { id: got, text }) if got == id => {
                output.push_str(&Escaped(text).to_string())
            }
            Some(ControlReply::Done { id: got, ok }) if got == id => {
                return Ok(Answer { ok, output })
            }
            // Another request's answer, the answer to garbage (id 0), or
            // noise before the first frame.
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
    fn a_policy_goes_out_in_pieces_and_stops_at_a_refusal() {
        let elf: Vec<u8> = (0..1300u32).map(|i| i as u8).collect();
        let mut answer = Vec::new();
        answer.extend(frame(&ControlReply::Done { id: 4, ok: true }));
        answer.extend(frame(&ControlReply::Done { id: 4, ok: true }));
        answer.extend(frame(&ControlReply::Output {
            id: 4,
            text: "policy p loaded (1300 bytes)\n",
        }));
        answer.extend(frame(&ControlReply::Done { id: 4, ok: true }));
        let mut fake = Fake {
            written: Vec::new(),
            answer: answer.into(),
        };
        let got = load_policy(&mut fake, 4, "p", &elf, Duration::from_secs(5)).unwrap();
        assert!(got.ok && got.output == "policy p loaded (1300 bytes)\n");
        // Three pieces, in order, that put the file back together.
        let mut rebuilt = Vec::new();
        for mut frame in fake
            .written
            .split(|&b| b == 0)
            .filter(|f| !f.is_empty())
            .map(<[u8]>::to_vec)
        {
            frame.push(0);
            match control::decode::<ControlRequest>(&mut frame) {
                Some(ControlRequest::LoadPolicy {
                    id: 4,
                    name: "p",
                    total: 1300,
                    offset,
                    chunk,
                }) => {
                    assert_eq!(offset as usize, rebuilt.len());
                    rebuilt.extend_from_slice(chunk);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(rebuilt, elf);
        // A refusal ends the load at once.
        let mut fake = Fake {
            written: Vec::new(),
            answer: frame(&ControlReply::Done { id: 5, ok: false }).into(),
        };
        let got = load_policy(&mut fake, 5, "p", &elf, Duration::from_secs(5)).unwrap();
        assert!(!got.ok);
        assert_eq!(fake.written.iter().filter(|&&b| b == 0).count(), 2);
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

    /// Issue 10: after a client left half a frame, the next client's
    /// request must come through and only its own answer count (the
    /// manager's id-0 answer to the leftover garbage is skipped); text with
    /// escape sequences is printed escaped.
    #[test]
    fn leftovers_of_an_earlier_client_do_not_reach_this_one() {
        // What the line carries back: the tail of a reply to the earlier
        // client, the manager's answer to the garbage, then ours.
        let mut earlier = frame(&ControlReply::Output {
            id: 5,
            text: "earlier output",
        });
        let mut answer = earlier.split_off(earlier.len() / 2);
        answer.extend(frame(&ControlReply::Output {
            id: 0,
            text: "error: control: garbled or oversized frame\n",
        }));
        answer.extend(frame(&ControlReply::Done { id: 0, ok: false }));
        answer.extend(frame(&ControlReply::Output {
            id: 9,
            text: "name \x1b[2Jx\n",
        }));
        answer.extend(frame(&ControlReply::Done { id: 9, ok: true }));
        let mut fake = Fake {
            written: Vec::new(),
            answer: answer.into(),
        };
        let got = run(&mut fake, 9, "list", Duration::from_secs(5)).unwrap();
        assert_eq!(
            got,
            Answer {
                ok: true,
                output: "name \\x1b[2Jx\n".into()
            }
        );
        // Our request starts with a 0: it ends any half frame on the line.
        assert_eq!(fake.written[0], 0);
        assert!(run(&mut fake, 0, "list", Duration::from_secs(5)).is_err());
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

//! The config archive a boot can carry (`-initrd`): a cpio archive in the
//! "newc" format (`find . -name '*.cfg' | cpio -o -H newc`, or `cargo xtask
//! run --config DIR`), holding `pools/*.cfg`, `pools/auto/*.cfg`,
//! `domains/*.cfg` and `domains/auto/*.cfg`. Only regular files matter;
//! names are taken without a leading `./`.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The magic of a newc header.
const MAGIC: &[u8; 6] = b"070701";
/// Header length: the magic and 13 eight-digit hexadecimal fields.
const HEADER: usize = 110;
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";
/// `c_mode` bits of a regular file.
const REGULAR: u32 = 0o100000;
const TYPE_MASK: u32 = 0o170000;

/// One file of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its path, without a leading `./`.
    pub name: &'a str,
    /// Its bytes.
    pub data: &'a [u8],
}

/// Why an archive could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// A header at this offset is not a newc header.
    BadHeader(usize),
    /// The archive ends inside the entry at this offset.
    Truncated(usize),
    /// A name at this offset is not UTF-8 text.
    BadName(usize),
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveError::BadHeader(at) => {
                write!(f, "not a cpio (newc) archive: bad header at byte {at}")
            }
            ArchiveError::Truncated(at) => write!(f, "archive cut short in the entry at byte {at}"),
            ArchiveError::BadName(at) => write!(f, "entry name at byte {at} is not text"),
        }
    }
}

fn hex_field(bytes: &[u8]) -> Option<u32> {
    let text = core::str::from_utf8(bytes).ok()?;
    u32::from_str_radix(text, 16).ok()
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The regular files of a newc archive, in archive order.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ArchiveError> {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let header = bytes
            .get(at..at + HEADER)
            .ok_or(ArchiveError::Truncated(at))?;
        if &header[..6] != MAGIC {
            return Err(ArchiveError::BadHeader(at));
        }
        let field = |i: usize| hex_field(&header[6 + 8 * i..14 + 8 * i]);
        let (Some(mode), Some(size), Some(name_size)) = (field(1), field(6), field(11)) else {
            return Err(ArchiveError::BadHeader(at));
        };
        let name_start = at + HEADER;
        let name_end = name_start
            .checked_add(name_size as usize)
            .ok_or(ArchiveError::Truncated(at))?;
        let raw_name = bytes
            .get(name_start..name_end)
            .ok_or(ArchiveError::Truncated(at))?;
        // The name is NUL-terminated.
        let raw_name = raw_name.strip_suffix(&[0]).unwrap_or(raw_name);
        let name = core::str::from_utf8(raw_name).map_err(|_| ArchiveError::BadName(at))?;
        let data_start = align4(name_end);
        let data_end = data_start
            .checked_add(size as usize)
            .ok_or(ArchiveError::Truncated(at))?;
        if name == TRAILER {
            return Ok(entries);
        }
        let data = bytes
            .get(data_start..data_end)
            .ok_or(ArchiveError::Truncated(at))?;
        if mode & TYPE_MASK == REGULAR {
            entries.push(Entry {
                name: name.strip_prefix("./").unwrap_or(name),
                data,
            });
        }
        at = align4(data_end);
    }
}

/// A newc archive of `files` (path, bytes): regular files, mode 0644.
pub fn write(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(MAGIC);
        for value in fields {
            out.extend_from_slice(alloc::format!("{value:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, data)) in files.iter().enumerate() {
        entry(name, REGULAR | 0o644, data, i as u32 + 1);
    }
    entry(TRAILER, 0, &[], 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn written_archives_read_back() {
        let files = vec![
            ("pools/auto/p.cfg".to_string(), b"name = \"p\"\n".to_vec()),
            (
                "domains/d.cfg".to_string(),
                b"name=\"d\"\nimage=\"spin\"".to_vec(),
            ),
            ("empty.cfg".to_string(), Vec::new()),
        ];
        let bytes = write(&files);
        assert_eq!(bytes.len() % 4, 0);
        let entries = read(&bytes).unwrap();
        assert_eq!(entries.len(), 3);
        for (entry, (name, data)) in entries.iter().zip(&files) {
            assert_eq!(entry.name, name);
            assert_eq!(entry.data, &data[..]);
        }
    }

    /// What `cpio -o -H newc` writes for `./a.cfg` (contents "x\n"), a
    /// directory `./pools`, and the trailer.
    #[test]
    fn reads_what_cpio_writes_and_skips_directories() {
        let mut bytes = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            bytes.extend_from_slice(b"070701");
            // ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
            // devminor, rdevmajor, rdevminor, namesize, check.
            let fields = [
                1,
                mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                8,
                0,
                0,
                name.len() as u32 + 1,
                0,
            ];
            for v in fields {
                bytes.extend_from_slice(alloc::format!("{v:08x}").as_bytes());
            }
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            bytes.extend_from_slice(data);
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
        };
        push("./pools", 0o040755, b"");
        push("./a.cfg", 0o100644, b"x\n");
        push(TRAILER, 0, b"");
        let entries = read(&bytes).unwrap();
        assert_eq!(
            entries,
            vec![Entry {
                name: "a.cfg",
                data: b"x\n"
            }]
        );
    }

    #[test]
    fn damaged_archives_are_refused_not_misread() {
        let bytes = write(&[("a.cfg".to_string(), b"hello".to_vec())]);
        assert_eq!(read(&bytes[..50]), Err(ArchiveError::Truncated(0)));
        assert_eq!(read(b"not an archive at all, clearly not one, no no no no no no no no no no no no no no no no no no no no no no no no"), Err(ArchiveError::BadHeader(0)));
        // No trailer: cut short after the first entry.
        let first = align4(align4(HEADER + 6) + 5);
        assert_eq!(read(&bytes[..first]), Err(ArchiveError::Truncated(first)));
        // Seeded garbage never panics.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            let mut garbage = bytes.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed % garbage.len() as u64) as usize;
                garbage[i] = (seed >> 32) as u8;
            }
            let _ = read(&garbage);
        }
    }
}

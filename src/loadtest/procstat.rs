//! The server's CPU time and resident memory, read from `/proc/PID/stat` and
//! `/proc/PID/status`, so a load test can say what a request or a delivery cost the
//! server without the server's cooperation (it may be nginx, not Switchboard).

use std::path::PathBuf;

/// Why a process could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The `/proc` file could not be read (no such process, or not Linux).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file did not have the expected shape.
    #[error("unexpected contents in {path}")]
    Parse {
        /// The file.
        path: PathBuf,
    },
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU time so far, in seconds.
    pub cpu_secs: f64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Reads the CPU time and resident memory of process `pid`.
pub fn sample(pid: u32) -> Result<ProcSample, ProcError> {
    let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = read(&stat_path)?;
    let ticks = parse_stat_ticks(&stat).ok_or(ProcError::Parse { path: stat_path })?;
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = read(&status_path)?;
    let rss_bytes = parse_status_rss(&status).ok_or(ProcError::Parse { path: status_path })?;
    let per_sec = rustix::param::clock_ticks_per_second().max(1);
    Ok(ProcSample {
        cpu_secs: ticks as f64 / per_sec as f64,
        rss_bytes,
    })
}

fn read(path: &PathBuf) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.clone(),
        source,
    })
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may contain spaces or parentheses itself, so the
/// fields are counted from the last `)`: `utime` and `stime` are fields 14 and 15.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in bytes from the text of `/proc/PID/status` (the kernel writes kB).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_hostile_command_name() {
        let line = "1234 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 200 300";
        assert_eq!(parse_stat_ticks(line), Some(300));
        assert_eq!(parse_stat_ticks("1234 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t    2048 kB\nThreads: 1\n";
        assert_eq!(parse_status_rss(status), Some(2048 * 1024));
        assert_eq!(parse_status_rss("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        // Burn a little CPU so the counter has moved off zero on any machine.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let s = sample(std::process::id()).expect("sample own pid");
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        assert!(s.cpu_secs > 0.0, "{s:?}");
        assert!(matches!(sample(u32::MAX), Err(ProcError::Read { .. })));
    }
}

//! CPU time of processes, for benchmarks that say where the time went.

/// CPU seconds used so far by the processes whose name starts with `comm` (this process: `self`).
pub fn cpu_seconds(comm: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let read = |path: &std::path::Path| -> Option<(String, f64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((name, (utime + stime) / ticks))
    };
    if comm == "self" {
        return read(std::path::Path::new("/proc/self/stat")).map_or(0.0, |(_, s)| s);
    }
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| read(&e.path().join("stat")))
        .filter(|(name, _)| name.starts_with(comm))
        .map(|(_, s)| s)
        .sum()
}

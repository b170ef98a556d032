//! Redis key layout. A deployment's jobs are split into partitions; each partition's keys
//! (its jobs, its queues' lists and sets, its idempotency keys, its job-event stream) share one
//! hash tag, its *home*, so every script touches one cluster slot, and partitions spread over
//! a cluster's shards. Partition 0's home is `{prefix}`: a deployment of one partition has the
//! layout every earlier version had, and one that grows keeps its jobs where they are.
//! Deployment-wide keys (workers, breakers, rate limits, the application stream) stay in
//! partition 0's home.

/// Which partition a job lives in.
pub(crate) type Partition = u16;

/// At most this many partitions per deployment.
pub const MAX_PARTITIONS: u16 = 1024;

/// Redis Cluster has this many hash slots.
const SLOTS: u32 = 16_384;

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `{prefix}`, braces included: partition 0's home, and the deployment-wide keys'.
    pub prefix: String,
    /// Each partition's hash tag, braces included.
    homes: Vec<String>,
}

impl Keys {
    /// The layout of a deployment of `partitions` partitions as it would be laid out afresh.
    #[cfg(test)]
    pub fn new(prefix: &str, partitions: u16) -> Self {
        let homes = home_tags(prefix, partitions.max(1));
        Self::with_homes(prefix, homes)
    }

    /// The layout with the partitions' hash tags as the deployment recorded them.
    pub fn with_homes(prefix: &str, homes: Vec<String>) -> Self {
        Self {
            prefix: format!("{{{prefix}}}"),
            homes,
        }
    }

    /// Where the deployment records its partitions' hash tags (partition 0's home).
    pub fn partition_registry(prefix: &str) -> String {
        format!("{{{prefix}}}:partitions")
    }

    pub fn partitions(&self) -> Partition {
        self.homes.len() as Partition
    }

    pub fn all(&self) -> impl Iterator<Item = Partition> + use<> {
        0..self.partitions()
    }

    /// Partition `p`'s hash tag: what its scripts get as their prefix.
    pub fn home(&self, p: Partition) -> &str {
        &self.homes[usize::from(p) % self.homes.len()]
    }

    pub fn job(&self, p: Partition, id: &str) -> String {
        format!("{}:job:{id}", self.home(p))
    }
    pub fn queue(&self, p: Partition, queue: &str, part: &str) -> String {
        format!("{}:q:{queue}:{part}", self.home(p))
    }
    pub fn job_events(&self, p: Partition) -> String {
        format!("{}:events", self.home(p))
    }
    /// Present while partition `p`'s slot is being moved between cluster nodes: every engine
    /// script declares it and refuses to run (`FENCED`) while it exists.
    pub fn fence(&self, p: Partition) -> String {
        format!("{}:fence", self.home(p))
    }
    /// Where a stream's trim marks live: the hash beside it, in its home.
    pub fn trimmed_marks(&self, stream_key: &str) -> String {
        let home = stream_key
            .find('}')
            .map_or(self.prefix.as_str(), |end| &stream_key[..=end]);
        format!("{home}:trimmed")
    }
    pub fn queues(&self, p: Partition) -> String {
        format!("{}:queues", self.home(p))
    }
    pub fn app_events(&self) -> String {
        format!("{}:app-events", self.prefix)
    }
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }
    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.prefix)
    }
    pub fn breaker(&self, name: &str) -> String {
        format!("{}:breaker:{name}", self.prefix)
    }
    pub fn rate_limit(&self, name: &str) -> String {
        format!("{}:rate:{name}", self.prefix)
    }
    pub fn breakers(&self) -> String {
        format!("{}:breakers", self.prefix)
    }

    /// The partition a routing key (a limit key, an idempotency key, a job id) maps to: the
    /// same one in every process and every version, so a key's jobs always meet.
    pub fn partition_of(&self, routing_key: &str) -> Partition {
        if self.homes.len() == 1 {
            return 0;
        }
        (fnv1a(routing_key.as_bytes()) % self.homes.len() as u64) as Partition
    }
}

/// Partition 0 is `{prefix}`; partition `p` gets the tag `{prefix:p.s}` with the smallest `s`
/// whose slot lies `p/n` of the slot space after partition 0's. On a cluster whose slots are
/// split evenly among its primaries (as `redis-cli --cluster create` splits them), `n`
/// partitions, `n` a multiple of the primaries, then spread evenly over them. The tags depend
/// on `n`, so a deployment records the ones it uses (`Engine::connect`) and keeps them when it
/// grows.
pub(crate) fn home_tags(inner: &str, n: u16) -> Vec<String> {
    let prefix = format!("{{{inner}}}");
    let first = u32::from(slot_of(inner.as_bytes()));
    let mut homes = Vec::with_capacity(usize::from(n));
    homes.push(prefix);
    for p in 1..u32::from(n) {
        let target = ((first + (p * SLOTS).div_ceil(u32::from(n))) % SLOTS) as u16;
        let mut tag = String::new();
        // 16,384 slots: an exact hit takes about that many tries (a millisecond), and the
        // search is bounded so a bad hash could never hang start-up.
        for s in 0..(SLOTS * 64) {
            tag = format!("{inner}:{p}.{s}");
            if slot_of(tag.as_bytes()) == target {
                break;
            }
        }
        homes.push(format!("{{{tag}}}"));
    }
    homes
}

/// Redis Cluster's hash slot of a hash tag's content: CRC16 (XMODEM) mod 16,384.
pub(crate) fn slot_of(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"123456789"), 12739);
        assert_eq!(slot_of(b"steadfast"), slot_of(b"steadfast"));
    }

    #[test]
    fn one_partition_is_the_old_layout() {
        let keys = Keys::new("steadfast", 1);
        assert_eq!(keys.home(0), "{steadfast}");
        assert_eq!(keys.job(0, "J"), "{steadfast}:job:J");
        assert_eq!(keys.partition_of("anything"), 0);
    }

    #[test]
    fn partitions_lie_evenly_apart_in_slot_space() {
        let keys = Keys::new("steadfast", 6);
        let first = u32::from(slot_of(b"steadfast"));
        for p in 0..6u32 {
            let home = keys.home(p as u16);
            let slot = u32::from(slot_of(&home.as_bytes()[1..home.len() - 1]));
            assert_eq!(slot, (first + (p * SLOTS).div_ceil(6)) % SLOTS, "{home}");
        }
        // With three primaries of equal ranges, each holds two partitions.
        let mut per_primary = [0; 3];
        for p in 0..6u16 {
            let home = keys.home(p);
            let slot = u32::from(slot_of(&home.as_bytes()[1..home.len() - 1]));
            per_primary[(slot * 3 / SLOTS) as usize] += 1;
        }
        assert_eq!(per_primary, [2, 2, 2]);
    }

    #[test]
    fn routing_is_stable_and_spreads() {
        let keys = Keys::new("t", 4);
        assert_eq!(
            keys.partition_of("sensor:boiler"),
            keys.partition_of("sensor:boiler")
        );
        let mut seen = [0u32; 4];
        for i in 0..4000 {
            seen[usize::from(keys.partition_of(&format!("job-{i}")))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn trim_marks_live_beside_their_stream() {
        let keys = Keys::new("t", 3);
        let stream = keys.job_events(2);
        assert_eq!(
            keys.trimmed_marks(&stream),
            format!("{}:trimmed", keys.home(2))
        );
    }
}

//! The event streams: cursors, consumer groups, trimming and the hard cap.

use std::time::Duration;

use queue::{EventStream, JobEvent, NewJob, QueueError};

use super::common::TestQueue;

#[tokio::test]
async fn a_follower_resumes_from_its_cursor_without_gap_or_repeat() {
    let t = TestQueue::one_partition("streams-follow").await;
    let mut follower = t
        .engine
        .follow(EventStream::Jobs, "$")
        .await
        .expect("follow");
    let first = t.push_n("q", 3).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.extend(
            follower
                .next_batch(10, Duration::from_millis(50))
                .await
                .expect("read"),
        );
    }
    let cursor = follower.cursor().to_owned();
    drop(follower);
    // Events appended while nobody listens.
    let second = t.push_n("q", 2).await;
    let mut resumed = t
        .engine
        .follow(EventStream::Jobs, cursor)
        .await
        .expect("follow");
    let mut later = Vec::new();
    while later.len() < 2 {
        later.extend(
            resumed
                .next_batch(10, Duration::from_millis(50))
                .await
                .expect("read"),
        );
    }
    let ids = |entries: &[queue::StreamEntry]| -> Vec<String> {
        entries
            .iter()
            .filter_map(JobEvent::from_entry)
            .map(|e| e.job_id)
            .collect()
    };
    assert_eq!(ids(&seen), first);
    assert_eq!(ids(&later), second);
    assert!(
        resumed
            .next_batch(10, Duration::from_millis(5))
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn a_cursor_older_than_the_trimmed_part_is_expired() {
    let t = TestQueue::with_config("streams-expired", |c| c.resume_window = Duration::ZERO).await;
    t.push_n("q", 2).await;
    let entries = t
        .engine
        .read_stream(EventStream::Jobs, "0-0", 10)
        .await
        .expect("read");
    let old_cursor = entries[0].id.clone();
    t.push_n("q", 2).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(t.engine.trim_job_events().await.expect("trim") > 0);
    let err = t
        .engine
        .read_stream(EventStream::Jobs, &old_cursor, 10)
        .await
        .expect_err("expired");
    assert!(matches!(err, QueueError::CursorExpired(_)), "{err}");
    // The current position is always valid.
    let now = t
        .engine
        .stream_position(EventStream::Jobs)
        .await
        .expect("pos");
    assert!(
        t.engine
            .read_stream(EventStream::Jobs, &now, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn the_stream_refuses_pushes_at_its_cap_until_the_consumer_catches_up() {
    let t = TestQueue::with_config("streams-cap", |c| {
        c.partitions = 1;
        c.stream_cap = 50;
        c.resume_window = Duration::from_secs(3600);
    })
    .await;
    let mut consumer = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    consumer.ensure_group().await.expect("group");
    t.push_n("q", 50).await;
    let err = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()))
        .await
        .expect_err("at the cap");
    assert!(matches!(err, QueueError::StreamFull { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(
        t.engine
            .metrics()
            .stream_full_refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the refusal is counted for the metrics endpoint"
    );
    assert_eq!(
        t.engine.stats("q").await.expect("stats").pushed_total,
        50,
        "the refused job was not half-created"
    );
    // The consumer reads and commits part of the backlog: the trim may drop only that part.
    let read = consumer
        .read(30, Duration::from_millis(10))
        .await
        .expect("read");
    consumer.ack(&read).await.expect("ack");
    let pushed = t
        .engine
        .push(NewJob::raw("q", "q", "{}".into()))
        .await
        .expect("accepted again");
    assert!(!pushed.duplicate);
    // Nothing the consumer has not committed was dropped.
    let rest = consumer
        .read(100, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(rest.len(), 21, "20 unread + the new push");
    let seq = |id: &str| -> (u64, u64) {
        let (ms, n) = id.split_once('-').expect("stream id");
        (ms.parse().expect("ms"), n.parse().expect("seq"))
    };
    assert!(
        seq(&rest[0].id) > seq(&read[29].id),
        "nothing before the committed part comes back"
    );
}

#[tokio::test]
async fn group_progress_counts_what_is_unread_and_unacknowledged_per_group() {
    let t = TestQueue::one_partition("streams-progress").await;
    let progress = || t.engine.group_progress(EventStream::Jobs, "recorder");
    assert_eq!(progress().await.expect("no stream yet"), None);
    let mut first = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    first.ensure_group().await.expect("group");
    t.push_n("q", 5).await;
    let seen = progress().await.expect("progress").expect("the group");
    assert_eq!((seen.lag, seen.pending), (Some(5), 0));
    assert!(seen.consumers.is_empty(), "{seen:?}");

    let read = first
        .read(3, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(read.len(), 3);
    let mut second = t.engine.consumer(EventStream::Jobs, "recorder", "r2");
    assert_eq!(
        second
            .read(10, Duration::from_millis(10))
            .await
            .expect("read")
            .len(),
        2
    );
    let seen = progress().await.expect("progress").expect("the group");
    assert_eq!((seen.lag, seen.pending), (Some(0), 5));
    assert_eq!(seen.consumers, ["r1", "r2"]);

    first.ack(&read).await.expect("ack");
    let seen = progress().await.expect("progress").expect("the group");
    assert_eq!(
        seen.pending, 2,
        "acknowledged entries are no longer pending"
    );
    assert_eq!(
        t.engine
            .group_progress(EventStream::Jobs, "another")
            .await
            .expect("progress"),
        None,
        "a group nobody created"
    );
}

#[tokio::test]
async fn a_consumer_gets_back_what_it_never_acknowledged_after_a_restart() {
    let t = TestQueue::one_partition("streams-pending").await;
    let mut consumer = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    consumer.ensure_group().await.expect("group");
    consumer.ensure_group().await.expect("idempotent");
    t.push_n("q", 4).await;
    let got = consumer
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(got.len(), 4);
    consumer.ack(&got[..1]).await.expect("ack");
    drop(consumer);
    let mut restarted = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    let again = restarted
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(
        again.iter().map(|e| &e.id).collect::<Vec<_>>(),
        got[1..].iter().map(|e| &e.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_batch_that_failed_to_commit_comes_back_at_once_when_asked() {
    let t = TestQueue::one_partition("streams-reread").await;
    // The claim period is long: only `reread_pending` can bring the batch back in this test.
    let mut consumer = t.engine.consumer(EventStream::Jobs, "recorder", "r1");
    consumer.ensure_group().await.expect("group");
    t.push_n("q", 3).await;
    let failed = consumer
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(failed.len(), 3);
    t.push_n("q", 1).await;
    let newer = consumer
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(newer.len(), 1, "without asking, the next read moves on");
    consumer.reread_pending();
    let again = consumer
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    let ids =
        |entries: &[queue::StreamEntry]| entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), [ids(&failed), ids(&newer)].concat());
}

#[tokio::test]
async fn application_events_use_the_same_reader_api() {
    let t = TestQueue::new("streams-app").await;
    let mut consumer = t.engine.consumer(EventStream::App, "notifier", "n1");
    consumer.ensure_group().await.expect("group");
    let id = t
        .engine
        .publish_app_event(&[("type", "alert_opened"), ("alert", "42")])
        .await
        .expect("publish");
    let read = consumer
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, id);
    assert_eq!(
        read[0].fields.get("type").map(String::as_str),
        Some("alert_opened")
    );
    assert!(read[0].fields.contains_key("ts"));
}

#[tokio::test]
async fn entries_of_a_consumer_that_died_are_taken_over() {
    let t = TestQueue::one_partition("streams-claim").await;
    let mut doomed = t.engine.consumer(EventStream::Jobs, "recorder", "r-dead");
    doomed.ensure_group().await.expect("group");
    t.push_n("q", 3).await;
    let taken = doomed
        .read(10, Duration::from_millis(10))
        .await
        .expect("read");
    assert_eq!(taken.len(), 3);
    drop(doomed); // dies without acknowledging
    let mut survivor = t
        .engine
        .consumer(EventStream::Jobs, "recorder", "r-alive")
        .claim_after(Duration::from_millis(30));
    assert!(
        survivor
            .read(10, Duration::from_millis(5))
            .await
            .expect("read")
            .is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(40)).await;
    let claimed = survivor
        .read(10, Duration::from_millis(5))
        .await
        .expect("read");
    assert_eq!(
        claimed.iter().map(|e| &e.id).collect::<Vec<_>>(),
        taken.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    survivor.ack(&claimed).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Nothing pins the stream any more: a trim may drop everything behind the group.
    let mut conn = t.sync_conn();
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(t.key("events"))
        .arg("recorder")
        .query(&mut conn)
        .expect("xpending");
    assert_eq!(pending.first(), Some(&redis::Value::Int(0)));
}

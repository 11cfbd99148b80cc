//! Fault injection for the journal, no root needed: crashes that keep only part of the unsynced
//! writes, a torn last record, a flipped bit, and segment deletion and compaction.

use super::*;
use bytes::Bytes;
use warren_protocol::ShortStr;

fn publish(id: u64, queues: Vec<u32>, body_len: usize) -> Record {
    Record::Publish {
        id,
        queues,
        delivered: false,
        exchange: ShortStr::empty(),
        routing_key: "q".into(),
        header: crate::store::record::header_bytes(&warren_protocol::ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: body_len as u64,
            properties: Default::default(),
        }),
        body: Bytes::from(vec![id as u8; body_len]),
    }
}

/// Writes `records` into segment 1 of `dir` directly, returning each record's end offset.
fn write_segment(dir: &Path, segment: u64, records: &[Record]) -> Vec<usize> {
    let mut out = BytesMut::new();
    let mut ends = Vec::new();
    for r in records {
        r.encode(&mut out);
        ends.push(out.len());
    }
    std::fs::write(segment_path(dir, segment), &out).expect("write segment");
    ends
}

fn live_ids(dir: &Path) -> Vec<u64> {
    replay(dir)
        .expect("replays")
        .messages
        .keys()
        .copied()
        .collect()
}

#[test]
fn a_crash_that_keeps_any_prefix_of_the_unsynced_writes_loses_nothing_synced() {
    let records: Vec<Record> = (1..=20).map(|id| publish(id, vec![1], 100)).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let ends = write_segment(dir.path(), 1, &records);
    let full = std::fs::read(segment_path(dir.path(), 1)).expect("read");
    // Records 1..=10 were synced (their confirms may have gone out); the rest were not.
    let synced = ends[9];
    for keep in (synced..=full.len()).step_by(37).chain([full.len()]) {
        std::fs::write(segment_path(dir.path(), 1), &full[..keep]).expect("crash image");
        let ids = live_ids(dir.path());
        let whole = ends.iter().filter(|e| **e <= keep).count() as u64;
        assert_eq!(ids, (1..=whole).collect::<Vec<_>>(), "keeping {keep} bytes");
        assert!(
            ids.len() >= 10,
            "a synced record was lost when keeping {keep} bytes"
        );
        let len = std::fs::metadata(segment_path(dir.path(), 1))
            .expect("meta")
            .len();
        assert_eq!(
            len as usize,
            ends[whole as usize - 1],
            "the torn tail is cut off the file"
        );
    }
}

#[test]
fn a_torn_last_record_is_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ends = write_segment(
        dir.path(),
        1,
        &[publish(1, vec![1], 10), publish(2, vec![1], 5000)],
    );
    let full = std::fs::read(segment_path(dir.path(), 1)).expect("read");
    std::fs::write(segment_path(dir.path(), 1), &full[..ends[1] - 100]).expect("torn");
    assert_eq!(live_ids(dir.path()), vec![1]);
    assert_eq!(
        std::fs::metadata(segment_path(dir.path(), 1))
            .expect("meta")
            .len() as usize,
        ends[0]
    );
}

#[test]
fn a_flipped_bit_in_the_middle_stops_recovery_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let records: Vec<Record> = (1..=5).map(|id| publish(id, vec![1], 64)).collect();
    let ends = write_segment(dir.path(), 1, &records);
    let mut bytes = std::fs::read(segment_path(dir.path(), 1)).expect("read");
    bytes[ends[1] + 30] ^= 0x04; // inside record 3, with records 4 and 5 intact after it
    std::fs::write(segment_path(dir.path(), 1), &bytes).expect("flip");
    match replay(dir.path()) {
        Err(StoreError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, segment_path(dir.path(), 1));
            assert_eq!(offset as usize, ends[1]);
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("recovery accepted a corrupted journal"),
    }
    // The file was not truncated: nothing is silently dropped.
    assert_eq!(
        std::fs::read(segment_path(dir.path(), 1))
            .expect("read")
            .len(),
        bytes.len()
    );
}

#[test]
fn a_flipped_bit_in_an_older_segment_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ends = write_segment(
        dir.path(),
        1,
        &[publish(1, vec![1], 64), publish(2, vec![1], 64)],
    );
    write_segment(dir.path(), 2, &[publish(3, vec![1], 64)]);
    let mut bytes = std::fs::read(segment_path(dir.path(), 1)).expect("read");
    bytes[ends[1] - 3] ^= 0x80;
    std::fs::write(segment_path(dir.path(), 1), &bytes).expect("flip");
    assert!(matches!(
        replay(dir.path()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn settles_and_deliveries_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_segment(
        dir.path(),
        1,
        &[
            publish(1, vec![1, 2], 8),
            publish(2, vec![1], 8),
            Record::Settle { id: 1, queue: 1 },
            Record::Delivered { id: 1, queue: 2 },
            Record::Settle { id: 2, queue: 1 },
        ],
    );
    let replayed = replay(dir.path()).expect("replays");
    let (_, loc) = replayed
        .messages
        .get(&1)
        .expect("message 1 lives in queue 2");
    assert_eq!(loc.queues, vec![2]);
    assert_eq!(loc.delivered, vec![2]);
    assert!(
        !replayed.messages.contains_key(&2),
        "message 2 was settled everywhere"
    );
}

/// Waits until the writer synced `seq`.
/// Appends a publish of `body_len` bytes to queue 1 for each id; the last append's sequence.
fn publish_to_queue_1(
    journal: &Journal,
    ids: std::ops::RangeInclusive<u64>,
    body_len: usize,
) -> u64 {
    ids.map(|id| {
        journal.append(
            &publish(id, vec![1], body_len),
            Effect::Publish {
                id,
                queues: vec![1],
            },
        )
    })
    .last()
    .unwrap_or(0)
}

/// Appends a settle in queue 1 for each id; the last append's sequence.
fn settle_in_queue_1(journal: &Journal, ids: std::ops::RangeInclusive<u64>) -> u64 {
    ids.map(|id| {
        journal.append(
            &Record::Settle { id, queue: 1 },
            Effect::Settle { id, queue: 1 },
        )
    })
    .last()
    .unwrap_or(0)
}

fn wait_synced(journal: &Journal, seq: u64) {
    let rx = journal.synced();
    for _ in 0..500 {
        if *rx.borrow() >= seq {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("journal never synced {seq}");
}

#[test]
fn settled_segments_are_deleted_and_an_old_live_message_is_copied_forward() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal =
        Journal::start_with_segment_size(dir.path(), HashMap::new(), Vec::new(), 16 * 1024)
            .expect("starts");
    let mut last = publish_to_queue_1(&journal, 1..=200, 1000);
    wait_synced(&journal, last);
    let segments_full = replay(dir.path()).expect("replays").segments.len();
    assert!(
        segments_full > 5,
        "200 KB over 16 KB segments: {segments_full}"
    );
    // Every message but the very first is consumed: that one must not pin the log.
    last = settle_in_queue_1(&journal, 2..=200);
    wait_synced(&journal, last);
    // The oldest segment must stay unchanged for a while (it is not being drained) before the
    // writer copies its last message forward.
    for _ in 0..=STAGNANT_BATCHES {
        last = journal.append(
            &Record::Delivered { id: 1, queue: 1 },
            Effect::Delivered { id: 1, queue: 1 },
        );
        wait_synced(&journal, last);
    }
    journal.stop();
    let replayed = replay(dir.path()).expect("replays");
    assert!(
        replayed.segments.len() <= 3,
        "settled segments were deleted, left: {:?}",
        replayed.segments
    );
    assert_eq!(
        replayed.messages.keys().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let (_, loc) = &replayed.messages[&1];
    assert_eq!(
        loc.body_len, 1000,
        "replay keeps the body length, not the body"
    );
    assert_eq!(
        loc.delivered.len(),
        STAGNANT_BATCHES as usize + 1,
        "every delivery survives compaction (quorum queues' delivery counts)"
    );
    let live: HashMap<u64, Location> = replayed
        .messages
        .into_iter()
        .map(|(id, (_, l))| (id, l))
        .collect();
    let journal = Journal::start(dir.path(), live, replayed.segments).expect("restarts");
    let read = journal
        .read(1)
        .expect("the copied-forward message reads back");
    assert!(matches!(read, Record::Publish { body, .. } if body.len() == 1000 && body[0] == 1));
}

/// A record read back right after it was appended (before its batch is on disk) waits for the
/// writer's signal instead of polling, and an id the journal never had answers `None` at once.
#[test]
fn a_record_on_its_way_to_disk_reads_back_and_a_missing_one_is_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::start(dir.path(), HashMap::new(), Vec::new()).expect("starts");
    for id in 1..=50u64 {
        journal.append(
            &publish(id, vec![1], 300),
            Effect::Publish {
                id,
                queues: vec![1],
            },
        );
        let read = journal.read(id).expect("an appended record reads back");
        assert!(
            matches!(read, Record::Publish { id: got, ref body, .. } if got == id && body.len() == 300),
            "record {id}"
        );
    }
    let started = std::time::Instant::now();
    assert!(journal.read(999).is_none(), "never appended");
    let settled = journal.append(
        &Record::Settle { id: 7, queue: 1 },
        Effect::Settle { id: 7, queue: 1 },
    );
    wait_synced(&journal, settled);
    assert!(
        journal.read(7).is_none(),
        "settled everywhere: gone from the index"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "answered without polling for seconds: {:?}",
        started.elapsed()
    );
    journal.stop();
    assert!(
        journal.read(1000).is_none(),
        "a stopped journal does not block readers"
    );
}

fn fsyncs(journal: &Journal) -> u64 {
    journal.stats().fsync_micros.snapshot().1.iter().sum()
}

/// Segments past the first are zero-filled ahead of use and renamed into place; replay reads
/// their zero tails as unused space, and no `.prealloc` file outlives a restart.
#[test]
fn zero_filled_segments_replay_with_their_unused_tails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let size = 16 * 1024;
    let journal = Journal::start_with_segment_size(dir.path(), HashMap::new(), Vec::new(), size)
        .expect("starts");
    let last = publish_to_queue_1(&journal, 1..=100, 1000);
    wait_synced(&journal, last);
    journal.stop();
    let preallocated = std::fs::read_dir(dir.path())
        .expect("lists")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter(|e| e.metadata().is_ok_and(|m| m.len() == size))
        .count();
    assert!(
        preallocated >= 3,
        "full-size zero-filled segments: {preallocated}"
    );
    assert_eq!(live_ids(dir.path()), (1..=100).collect::<Vec<_>>());
    std::fs::write(prealloc_path(dir.path(), 99), b"\0\0").expect("a leftover");
    let replayed = replay(dir.path()).expect("replays");
    let live = replayed
        .messages
        .into_iter()
        .map(|(id, (_, l))| (id, l))
        .collect();
    let journal = Journal::start_with_segment_size(dir.path(), live, replayed.segments, size)
        .expect("restarts");
    assert!(!prealloc_path(dir.path(), 99).exists(), "leftover removed");
    let read = journal.read(100).expect("reads back");
    assert!(matches!(read, Record::Publish { id: 100, .. }));
}

/// A crash image of a zero-filled segment: records, a torn one, then zeros. The torn record is
/// cut off; everything before it replays.
#[test]
fn a_torn_record_before_a_zero_tail_is_cut_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let records: Vec<Record> = (1..=3).map(|id| publish(id, vec![1], 500)).collect();
    let ends = write_segment(dir.path(), 1, &records);
    let mut bytes = std::fs::read(segment_path(dir.path(), 1)).expect("read");
    bytes.truncate(ends[2] - 100);
    bytes.resize(64 * 1024, 0);
    std::fs::write(segment_path(dir.path(), 1), &bytes).expect("crash image");
    assert_eq!(live_ids(dir.path()), vec![1, 2]);
}

/// Settles wait in the submitter (no writer wakeup each), go out within SETTLE_DELAY or in
/// front of the next publish, and a batch of nothing but settles costs no fdatasync.
#[test]
fn settles_are_held_briefly_and_cost_no_sync_of_their_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::start(dir.path(), HashMap::new(), Vec::new()).expect("starts");
    let mut last = publish_to_queue_1(&journal, 1..=10, 100);
    wait_synced(&journal, last);
    let synced_before = fsyncs(&journal);
    let started = std::time::Instant::now();
    last = settle_in_queue_1(&journal, 1..=5);
    wait_synced(&journal, last);
    assert!(
        started.elapsed() >= SETTLE_DELAY - std::time::Duration::from_millis(2),
        "settles were held: {:?}",
        started.elapsed()
    );
    assert_eq!(
        fsyncs(&journal),
        synced_before,
        "settles alone are not synced"
    );
    assert!(journal.read(3).is_none(), "settled: gone from the index");
    // Held settles go out in front of the next publish (its sync covers them), at once.
    journal.append(
        &Record::Settle { id: 6, queue: 1 },
        Effect::Settle { id: 6, queue: 1 },
    );
    let started = std::time::Instant::now();
    let publish_seq = journal.append(
        &publish(11, vec![1], 100),
        Effect::Publish {
            id: 11,
            queues: vec![1],
        },
    );
    wait_synced(&journal, publish_seq);
    assert!(
        journal.read(6).is_none(),
        "settle 6 applied with the publish"
    );
    assert!(started.elapsed() < SETTLE_DELAY * 10);
    journal.stop();
    assert_eq!(
        live_ids(dir.path()),
        vec![7, 8, 9, 10, 11],
        "a clean stop writes and syncs every settle"
    );
}

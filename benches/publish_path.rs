//! The hot path of one publish, measured without actors or sockets so the numbers
//! show the work itself: validate and serialise once (`parse_build`), match the
//! client index (`match`), and push into an outbox then render SSE frames
//! (`encode`); `end_to_end` chains all three for a 100-event batch. `aggregation`
//! shows what issue 10 asks of the proxy's filter index: matching 100 000 filters
//! pinned to distinct calls costs about what 100 do, and a filter shared by 10 000
//! clients costs what one shared by 10 does, before the per-client push.
//!
//! Run: `cargo bench --bench publish_path`. Compare ratios between cases; absolute
//! times depend on the machine (a shared 2-core VM when these were first taken).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use switchboard::account::AccountIdx;
use switchboard::actors::proxy::upstreams::Upstreams;
use switchboard::cursor::Cursor;
use switchboard::event::{parse_body, Event, Limits, SharedEvent};
use switchboard::filter::{Filter, ScopeGrant, SubscriptionIndex};
use switchboard::outbox::{self, Drain, MatchedSubs, Outbox, Resume};
use switchboard::wire::{sse_frame, write_event};

const LIMITS: Limits = Limits {
    max_batch: 1000,
    max_event_bytes: 64 * 1024,
};

fn body(events: usize) -> Vec<u8> {
    let items: Vec<String> = (0..events)
        .map(|i| {
            format!(
                r#"{{"type":"gather.end","call_sid":"CA{:032x}","data":{{"digits":"{}","from":"+14155550100","duration":{}}}}}"#,
                i % 20,
                i,
                i % 120
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn build(body: &[u8]) -> Vec<SharedEvent> {
    parse_body(body, false, LIMITS)
        .expect("valid body")
        .into_iter()
        .map(|draft| {
            Arc::new(Event::build(
                AccountIdx(0),
                "AC0",
                draft,
                "2026-11-26T00:00:00.000Z",
            ))
        })
        .collect()
}

/// `n` subscriptions of one account, shaped like production: most clients watch one
/// call (a `call_sid=` pin, indexed) or their own custom event types, so the number of
/// matches per event stays the same as `n` grows and the curve shows the index's cost.
fn index(n: usize) -> SubscriptionIndex<u64> {
    let mut index = SubscriptionIndex::new();
    for i in 0..n {
        let call = format!("call_sid=CA{i:032x}");
        let (types, wheres): (String, Vec<&str>) = match i % 4 {
            0 => ("call.*".into(), vec![&call]),
            1 => ("gather.end".into(), vec![&call, "data.duration>60"]),
            2 => (format!("app{i}.*"), vec![]),
            _ => ("*.end".into(), vec![&call]),
        };
        let filter =
            Filter::parse(Some(&types), &wheres, None, ScopeGrant::All).expect("valid filter");
        index.insert(0, i as u64, Arc::new(filter));
    }
    index
}

fn parse_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_build");
    for n in [1usize, 100] {
        let body = body(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("events", n), &body, |b, body| {
            b.iter(|| build(body))
        });
    }
    group.finish();
}

/// Times matching `events` against `index`, one event at a time.
fn bench_matches<K: Copy + Eq + std::hash::Hash + Ord>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    index: &SubscriptionIndex<K>,
    events: &[SharedEvent],
) {
    let mut out = Vec::new();
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function(id, |b| {
        b.iter(|| {
            let mut hits = 0;
            for event in events {
                out.clear();
                index.matches(0, &event.fields(), &mut out);
                hits += out.len();
            }
            hits
        })
    });
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    group.noise_threshold(0.05);
    let events = build(&body(100));
    for n in [100usize, 1_000, 10_000, 100_000] {
        let index = index(n);
        bench_matches(
            &mut group,
            BenchmarkId::new("subscriptions", n),
            &index,
            &events,
        );
    }
    group.finish();
}

fn aggregation(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregation");
    group.noise_threshold(0.05);
    let events = build(&body(100));
    // Filters pinned to distinct calls, the events' twenty calls among them.
    for n in [100usize, 100_000] {
        let mut index = SubscriptionIndex::new();
        for i in 0..n {
            let call = format!("call_sid=CA{i:032x}");
            let filter = Filter::parse(Some("gather.*"), &[&call], None, ScopeGrant::All)
                .expect("valid filter");
            index.insert(0, i as u32, Arc::new(filter));
        }
        bench_matches(
            &mut group,
            BenchmarkId::new("pinned_calls", n),
            &index,
            &events,
        );
    }
    // One filter held by `n` clients: matched once, its members handed on whole.
    for n in [10usize, 10_000] {
        let filter = Arc::new(
            Filter::parse(
                Some("gather.*"),
                &["data.duration>10"],
                None,
                ScopeGrant::All,
            )
            .expect("valid filter"),
        );
        let mut upstreams = Upstreams::default();
        let mut index = SubscriptionIndex::new();
        for client in 0..n as u64 {
            let (key, registration) = upstreams.hold(AccountIdx(0), &filter, client << 32);
            if registration.is_some() {
                index.insert(0, key, filter.clone());
            }
        }
        let (mut matched, mut gathered) = (Vec::new(), Vec::new());
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(BenchmarkId::new("shared_filter_clients", n), |b| {
            b.iter(|| {
                let mut members = 0;
                for event in &events {
                    matched.clear();
                    index.matches(0, &event.fields(), &mut matched);
                    members += upstreams.members_of(&matched, &mut gathered).len();
                }
                members
            })
        });
    }
    group.finish();
}

fn outbox() -> Arc<Outbox> {
    Outbox::new(outbox::Limits {
        max_events: 10_000,
        max_age: Duration::from_secs(300),
    })
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let events = build(&body(100));
    let sid: Arc<str> = Arc::from("SU0123456789abcdef0123456789abcdef");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("push_drain_render_100", |b| {
        b.iter_batched(
            outbox,
            |outbox| {
                let (conn, _) = outbox.attach(Resume::Pending);
                let now = Instant::now();
                for event in &events {
                    outbox.push(event.clone(), MatchedSubs::from_iter([sid.clone()]), now);
                }
                render(&outbox, conn)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn render(outbox: &Outbox, conn: u64) -> usize {
    let Drain::Events { entries, .. } = outbox.drain(conn, Instant::now(), usize::MAX) else {
        unreachable!("one connection")
    };
    let mut chunk = BytesMut::new();
    let mut json = BytesMut::new();
    for entry in &entries {
        json.clear();
        write_event(&mut json, entry);
        let cursor = Cursor {
            account_tag: 1,
            epoch: outbox.epoch(),
            seq: entry.seq,
        }
        .encode();
        sse_frame(&mut chunk, Some(&cursor), &json);
    }
    chunk.len()
}

fn end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("end_to_end");
    let body = body(100);
    let index = index(1_000);
    let sids: Vec<Arc<str>> = (0..1_000)
        .map(|k| Arc::from(format!("SU{k:032x}")))
        .collect();
    group.throughput(Throughput::Elements(100));
    group.bench_function("publish_match_encode_100_events_1000_subs", |b| {
        b.iter_batched(
            outbox,
            |outbox| {
                let (conn, _) = outbox.attach(Resume::Pending);
                let now = Instant::now();
                let mut out = Vec::new();
                for event in build(&body) {
                    out.clear();
                    index.matches(0, &event.fields(), &mut out);
                    if !out.is_empty() {
                        let subs: MatchedSubs =
                            out.iter().map(|&k| sids[k as usize].clone()).collect();
                        outbox.push(event, subs, now);
                    }
                }
                render(&outbox, conn)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parse_build, matching, aggregation, encode, end_to_end
}
criterion_main!(benches);

//! Fan-out through the media model, without sockets: one `TrackProducer` writes groups
//! of 30 frames and N `TrackConsumer`s (N = 1, 10, 100), each in its own task, read
//! every frame. The producer yields after each frame, so consumers wake per frame as
//! they do behind a live publisher. Throughput is frames delivered: frames × N.
//!
//! `cargo bench -p moq-core --bench fanout`; numbers are in bench/README.md.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use moq_core::{CacheConfig, Frame, TrackProducer, model::cache::Cache};
use tokio::sync::mpsc;

/// Frames per group.
const FRAMES: usize = 30;

/// Payload size of every frame: a 1 Mbit/s, 30 fps delta frame.
const SIZE: usize = 4096;

fn fanout(c: &mut Criterion) {
    let mut bench = c.benchmark_group("fanout");
    for consumers in [1usize, 10, 100] {
        bench.throughput(Throughput::Elements((FRAMES * consumers) as u64));
        bench.bench_function(BenchmarkId::new("current_thread", consumers), |b| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a tokio runtime");
            // Keep a few groups cached, as a relay would: bounded memory however long it runs.
            let cache = Cache::new(CacheConfig {
                capacity: Some((4 * FRAMES * SIZE) as u64),
                duration: None,
            });
            let track = TrackProducer::new("video", cache);
            let (done_tx, mut done) = mpsc::unbounded_channel::<usize>();
            let readers: Vec<_> = (0..consumers)
                .map(|_| {
                    let mut consumer = track.consume();
                    let done = done_tx.clone();
                    runtime.spawn(async move {
                        while let Ok(Some(mut group)) = consumer.next_group().await {
                            let mut read = 0;
                            while let Ok(Some(frame)) = group.next_frame().await {
                                read += black_box(frame.payload.len());
                            }
                            if done.send(read).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            let payload = Bytes::from(vec![0u8; SIZE]);
            let mut sequence = 0u64;
            b.iter(|| {
                runtime.block_on(async {
                    let mut group = track.create_group(sequence).expect("a new group");
                    sequence += 1;
                    for i in 0..FRAMES {
                        group.write(Frame {
                            timestamp: i as u64,
                            payload: payload.clone(),
                        });
                        tokio::task::yield_now().await;
                    }
                    group.finish();
                    for _ in 0..consumers {
                        let read = done.recv().await.expect("the readers are running");
                        assert_eq!(read, FRAMES * SIZE, "a reader missed frames");
                    }
                })
            });
            drop(track);
            runtime.block_on(async {
                for reader in readers {
                    let _ = reader.await;
                }
            });
        });
    }
    bench.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
